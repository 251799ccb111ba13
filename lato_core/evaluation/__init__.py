"""Evaluation runner: (photo, instruction) cases through an edit engine, measured with lato_core.metrics."""
from .cases import DEFAULT_TABLE, Case, load_cases, load_photo
from .runner import COLUMNS, ENGINE_NAMES, get_engine, register_engine, run_evaluation

__all__ = ["COLUMNS", "Case", "DEFAULT_TABLE", "ENGINE_NAMES", "get_engine", "load_cases", "load_photo",
           "register_engine", "run_evaluation"]
