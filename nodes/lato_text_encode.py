"""LaTo Text Encode: instruction + source crop -> the release's CFG pair as core CONDITIONING (Qwen2.5-VL hidden
states with their mask; the model's own connector turns them into text tokens at every step)."""
from lato_core.engine.text_encoder import encode_hidden_pair

from .common import CATEGORY
from .lato_loaders import LATO_TEXT_ENCODER


class FaceEditLaToTextEncode:
    DESCRIPTION = ("Encodes the edit instruction with the source crop through Qwen2.5-VL in Step1X-Edit's chat "
                   "template (prefix dropped, padded to 640 tokens with a mask). Give either core's CLIP loaded "
                   "as qwen_image (qwen_2.5_vl_7b*.safetensors, shared with Qwen-Image) or the pack's Qwen folder "
                   "loader. Encodings are cached: a new seed or cfg does not run the 7B model again.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "crops": ("IMAGE", {"tooltip": "The source face crops (Face Crop); one encoding per crop."}),
            "instruction": ("STRING", {"multiline": True, "default": "turn her head 30 degrees left and smile slightly",
                                       "tooltip": "The edit, in words; the geometry comes from the landmark tokens."}),
        }, "optional": {
            "clip": ("CLIP", {"tooltip": "Core CLIPLoader with type qwen_image (qwen_2.5_vl_7b.safetensors or "
                                         "its fp8_scaled variant, in models/text_encoders/)."}),
            "text_encoder": (LATO_TEXT_ENCODER, {"tooltip": "Or: a Qwen2.5-VL-Instruct folder from the LaTo Text "
                                                            "Encoder Loader."}),
        }}

    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    OUTPUT_TOOLTIPS = ("The instruction, for the sampler's positive input.",
                       "The empty prompt with the same image: the release's unconditional branch.")
    FUNCTION = "encode"
    CATEGORY = f"{CATEGORY}/lato"

    def encode(self, crops, instruction, clip=None, text_encoder=None):
        import comfy.model_management as mm

        from .lato_clip_text import encode_with_clip

        if clip is not None:
            pairs = [encode_with_clip(clip, text, crops) for text in (instruction, "")]
        else:
            pairs = encode_hidden_pair(text_encoder, instruction, crops, mm.text_encoder_device(),
                                       mm.text_encoder_offload_device())
        return tuple([[hidden, {"attention_mask": mask}]] for hidden, mask in pairs)


NODES = {"FaceEditLaToTextEncode": (FaceEditLaToTextEncode, "LaTo Text Encode")}
