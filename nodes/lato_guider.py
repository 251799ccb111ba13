"""LaTo Landmark-Aware Guider: the paper's CFG with separate text and geometry scales, for SamplerCustomAdvanced."""
from .common import CATEGORY


class FaceEditLaToLandmarkAwareGuider:
    DESCRIPTION = ("The LaTo paper's landmark-aware guidance: v = v_uu + geometry (v_u - v_uu) + text (v_c - v_u), "
                   "where v_uu drops the landmarks too. The branches run in one batched forward, two of them when "
                   "geometry = 1 (the release's CFG) or text = geometry (the paper's single scale, Table 5: 4.0).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The LaTo model (LaTo Model Loader, optionally through LoraLoaderModelOnly)."}),
            "positive": ("CONDITIONING", {"tooltip": "From LaTo Edit Conditioning."}),
            "negative": ("CONDITIONING", {"tooltip": "From LaTo Edit Conditioning."}),
            "text_scale": ("FLOAT", {"default": 4.0, "min": 0.0, "max": 20.0, "step": 0.1,
                                     "tooltip": "How strongly the instruction is followed (the release's cfg)."}),
            "geometry_scale": ("FLOAT", {"default": 4.0, "min": 0.0, "max": 20.0, "step": 0.1,
                                         "tooltip": "How strongly the target landmarks are followed; 1 = release."}),
        }}

    RETURN_TYPES = ("GUIDER",)
    OUTPUT_TOOLTIPS = ("For SamplerCustomAdvanced.",)
    FUNCTION = "get_guider"
    CATEGORY = f"{CATEGORY}/lato"

    def get_guider(self, model, positive, negative, text_scale, geometry_scale):
        from .lato_native_model import LandmarkAwareGuider

        return (LandmarkAwareGuider(model, positive, negative, text_scale, geometry_scale),)


NODES = {"FaceEditLaToLandmarkAwareGuider": (FaceEditLaToLandmarkAwareGuider, "LaTo Landmark-Aware Guider")}
