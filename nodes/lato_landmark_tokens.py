"""LaTo Landmark Tokens: target landmarks -> the tokenizer's 68 codebook tokens with their pixel positions."""
from lato_core.engine.run import tokenize_landmarks

from .common import CATEGORY, LANDMARKS
from .lato_loaders import LATO_TOKENIZER

LATO_LANDMARK_TOKENS = "LATO_LANDMARK_TOKENS"


class FaceEditLaToLandmarkTokens:
    DESCRIPTION = ("Quantizes target landmarks (from the Landmark Predictor, the editor or a reference photo) "
                   "into LaTo's landmark tokens: one codebook token per point, placed at its position on the "
                   "crop. Hidden points (visibility 0) are left out of the DiT's sequence.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "tokenizer": (LATO_TOKENIZER, {"tooltip": "From the LaTo landmark tokenizer loader."}),
            "landmarks": (LANDMARKS, {"tooltip": "Target landmarks on the face crop."}),
        }}

    RETURN_TYPES = (LATO_LANDMARK_TOKENS,)
    RETURN_NAMES = ("landmark_tokens",)
    OUTPUT_TOOLTIPS = ("For LaTo Edit Conditioning.",)
    FUNCTION = "tokenize"
    CATEGORY = f"{CATEGORY}/lato"

    def tokenize(self, tokenizer, landmarks):
        return (tokenize_landmarks(tokenizer, landmarks),)


NODES = {"FaceEditLaToLandmarkTokens": (FaceEditLaToLandmarkTokens, "LaTo Landmark Tokens")}
