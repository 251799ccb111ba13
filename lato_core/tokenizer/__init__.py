"""LaTo landmark tokenizer: 68 points -> 68 codebook tokens (VQ-VAE), loadable from the release file."""
from .config import TokenizerConfig
from .loading import (expected_shapes, infer_config, load_tokenizer,
                      points_to_tokens_input, read_header, tokens_input_to_points)
from .model import LandmarkTokenizer, TokenizerOutput
from .quantizer import QuantizerOutput, VectorQuantizer

__all__ = [
    "LandmarkTokenizer", "QuantizerOutput", "TokenizerConfig", "TokenizerOutput",
    "VectorQuantizer", "expected_shapes", "infer_config", "load_tokenizer", "points_to_tokens_input",
    "read_header", "tokens_input_to_points",
]
