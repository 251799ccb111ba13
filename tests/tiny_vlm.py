"""The one tiny random Qwen VLM (model + tokenizer + processor in a folder) and the sample face the VLM tests use.

The folder is written with save_pretrained, so VlmPredictor loads it through its real loading code. The
tokenizer is byte-level with no merges (any text round-trips) plus the special tokens the chat template
needs; the chat template below is a minimal Qwen-style one written for these tests.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lato_core.face.landmarks import FaceLandmarks

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>")
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'text' %}{{ c['text'] }}{% else %}<|vision_start|><|image_pad|><|vision_end|>{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# 68 points dlib measured on skimage's astronaut (512 x 512), rounded.
ASTRONAUT_68 = np.array([
    [179, 104], [180, 116], [181, 127], [182, 139], [185, 150], [191, 160], [200, 168], [209, 176], [220, 178],
    [232, 177], [243, 171], [253, 163], [260, 154], [265, 143], [268, 131], [270, 120], [272, 108], [186, 94],
    [192, 88], [200, 87], [208, 89], [216, 92], [236, 93], [244, 91], [252, 91], [260, 92], [265, 99],
    [226, 102], [225, 111], [225, 119], [225, 127], [214, 131], [219, 133], [224, 134], [229, 133], [234, 132],
    [195, 101], [200, 98], [207, 98], [212, 104], [206, 104], [199, 104], [237, 106], [243, 100], [250, 100],
    [255, 105], [250, 107], [244, 107], [201, 139], [209, 139], [218, 139], [224, 141], [230, 140], [238, 140],
    [246, 141], [238, 151], [229, 155], [222, 156], [216, 155], [208, 150], [204, 141], [218, 143], [223, 144],
    [230, 143], [243, 142], [229, 150], [223, 151], [217, 150]], dtype=np.float64)


def sample_face(size: int = 512, scale: float = 2.8) -> FaceLandmarks:
    """The astronaut's landmarks enlarged about their centroid and centred on a size x size canvas, like a
    face crop (inter-ocular distance ~ 120 px at 512)."""
    pts = (ASTRONAUT_68 - ASTRONAUT_68.mean(axis=0)) * scale + 256.0
    return FaceLandmarks(points=(pts + 0.5) * size / 512 - 0.5, image_size=(size, size), backend="test")


def build_tiny_vlm(folder: Path, family: str = "qwen2_5_vl", seed: int = 0) -> Path:
    """Write a random tiny model of `family` ('qwen2_5_vl' or 'qwen3_vl') with its tokenizer and processor."""
    import torch
    import transformers as tf
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer = tf.PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                           chat_template=CHAT_TEMPLATE)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], bos_token_id=None)
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64)
    tokens = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    if family == "qwen2_5_vl":   # head dim 16: mrope sections sum to 8
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
        config = tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision | {"fullatt_block_indexes": [1]}, **tokens)
        model_cls, processor_cls, video_cls, patch = (tf.Qwen2_5_VLForConditionalGeneration, tf.Qwen2_5_VLProcessor,
                                                      tf.Qwen2VLVideoProcessor, 14)
    elif family == "qwen3_vl":
        text |= {"head_dim": 16, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                                     "mrope_section": [4, 2, 2], "mrope_interleaved": True}}
        vision |= {"deepstack_visual_indexes": [1], "num_position_embeddings": 64}
        config = tf.Qwen3VLConfig(text_config=text, vision_config=vision, **tokens)
        model_cls, processor_cls, video_cls, patch = (tf.Qwen3VLForConditionalGeneration, tf.Qwen3VLProcessor,
                                                      tf.Qwen3VLVideoProcessor, 16)
    else:
        raise ValueError(f"unknown family {family}")
    torch.manual_seed(seed)
    model_cls(config).eval().save_pretrained(folder)
    processor = processor_cls(image_processor=tf.Qwen2VLImageProcessor(patch_size=patch), tokenizer=tokenizer,
                              video_processor=video_cls(), chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(folder)
    return Path(folder)
