"""Text path: Qwen2.5-VL hidden states -> Step1X-Edit connector tokens and pooled vector."""
from .connector import ConnectorConfig, Qwen2Connector, load_connector
from .encode import (TextConditioning, clear_text_cache, encode_hidden, encode_text, free_text_encoder)
from .qwen_prompt import RELEASE_PREFIX_DROP, STEP1X_PREFIX, build_qwen_inputs, prefix_drop

__all__ = [
    "ConnectorConfig",
    "Qwen2Connector",
    "RELEASE_PREFIX_DROP",
    "STEP1X_PREFIX",
    "TextConditioning",
    "build_qwen_inputs",
    "clear_text_cache",
    "encode_hidden",
    "encode_text",
    "free_text_encoder",
    "load_connector",
    "prefix_drop",
]
