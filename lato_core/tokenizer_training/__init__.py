"""Training the LaTo landmark tokenizer on landmark sets made offline (detected faces + the predictor)."""
from .data import Augmentation, base_faces, landmark_sets
from .train import TrainConfig, TrainResult, evaluate, save_tokenizer, train_tokenizer

__all__ = ["Augmentation", "TrainConfig", "TrainResult", "base_faces", "evaluate", "landmark_sets",
           "save_tokenizer", "train_tokenizer"]
