"""Step1X-Edit's token layout through ComfyUI core's qwen_image text path, with core's own (real) Qwen2.5 tokenizer:
the chat template, the image placement, the 217-position prefix drop and the 640-token pad and mask."""
from __future__ import annotations

import pytest
import torch

from lato_core.text.qwen_prompt import QWEN25_CHAT_HEAD, RELEASE_PREFIX_DROP, STEP1X_PREFIX, step1x_llama_template
from tests.tiny_sd15 import pack_node_module

pytestmark = pytest.mark.comfy
VISION_START, IMAGE_PAD, IM_START = 151652, 151655, 151644


@pytest.fixture(scope="module")
def clip_text():
    return pack_node_module("lato_clip_text")


class CoreTokenizerClip:
    """core's QwenImageTokenizer behind CLIP's tokenize(); encode_from_tokens returns what core's qwen_image
    encoder returns in shape and cut (its template_end rule), with each position's token id as its feature."""

    def __init__(self):
        from comfy.text_encoders.qwen_image import QwenImageTokenizer
        self.tokenizer = QwenImageTokenizer()
        self.cond_stage_model = torch.nn.Identity()   # no vision tower: nothing to put in raster order

    def tokenize(self, text, **kwargs):
        return self.tokenizer.tokenize_with_weights(text, **kwargs)

    def encode_from_tokens(self, tokens, return_dict=False):
        pairs = tokens["qwen25_7b"][0]
        ids = [p[0] if isinstance(p[0], int) else -1 for p in pairs]   # -1: the image embedding
        starts = [i for i, t in enumerate(ids) if t == IM_START][:2]
        end = starts[1] + 3 if ids[starts[1] + 1: starts[1] + 3] == [872, 198] else starts[1]
        return {"cond": torch.tensor(ids[end:], dtype=torch.float32)[None, :, None].expand(1, -1, 4)}


def test_template_places_the_image_and_the_release_drop_keeps_the_prefix_colon(clip_text):
    clip = CoreTokenizerClip()
    image = torch.rand(1, 64, 64, 3)
    tokens = clip.tokenize("make her smile", llama_template=step1x_llama_template(), images=[image])
    pairs = tokens["qwen25_7b"][0]
    ids = [p[0] if isinstance(p[0], int) else None for p in pairs]
    decode = clip.tokenizer.qwen25_7b.tokenizer.decode
    # the release's 217 dropped positions are exactly the chat head and the Step1X prefix without its last ':'
    assert decode(ids[:RELEASE_PREFIX_DROP + 1]) == QWEN25_CHAT_HEAD + STEP1X_PREFIX
    assert decode(ids[RELEASE_PREFIX_DROP: RELEASE_PREFIX_DROP + 1]) == ":"
    image_at = ids.index(None)
    assert pairs[image_at][0]["type"] == "image" and ids[image_at - 1] == VISION_START
    assert decode(ids[RELEASE_PREFIX_DROP: image_at]) == ":Picture 1: <|vision_start|>"   # as the chat template joins them
    assert decode(ids[image_at + 1:]) == "<|vision_end|>make her smile<|im_end|>\n<|im_start|>assistant\n"
    assert clip_text.head_length(clip) == len(clip.tokenizer.qwen25_7b.tokenizer(QWEN25_CHAT_HEAD)["input_ids"])


def test_encode_with_clip_drops_to_the_release_position_and_pads_to_640(clip_text):
    clip = CoreTokenizerClip()
    crops = torch.rand(2, 64, 48, 3)
    hidden, mask = clip_text.encode_with_clip(clip, "make her smile", crops)
    assert hidden.shape == (2, 640, 4) and mask.shape == (2, 640) and mask.dtype == torch.long
    colon = clip.tokenizer.qwen25_7b.tokenizer(":")["input_ids"][0]
    assert hidden[0, 0, 0] == colon   # the kept sequence starts at the prefix's last token, as in the release
    full = clip.tokenize("make her smile", llama_template=step1x_llama_template(), images=[crops[:1]])
    kept = len(full["qwen25_7b"][0]) - RELEASE_PREFIX_DROP
    assert int(mask[0].sum()) == kept and not hidden[0, kept:].any() and torch.equal(mask[0], mask[1])
    long = clip_text.encode_with_clip(clip, "smile " * 700, crops[:1])[1]
    assert int(long.sum()) == 640   # cut, not overflowing


def test_a_clip_that_is_not_qwen_image_is_refused_with_the_fix(clip_text):
    from comfy.sd1_clip import SD1Tokenizer

    from lato_core.errors import FaceEditError

    class StableDiffusionClip(CoreTokenizerClip):   # a CLIPLoader left on type stable_diffusion
        def __init__(self):
            self.tokenizer = SD1Tokenizer()
            self.cond_stage_model = torch.nn.Identity()

    with pytest.raises(FaceEditError, match="type qwen_image"):
        clip_text.encode_with_clip(StableDiffusionClip(), "make her smile", torch.rand(1, 64, 48, 3))
