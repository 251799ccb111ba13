"""The one strict check every weight loader uses: wrapper prefixes off, then missing / unexpected / wrong-shape
keys reported together in one ModelFileError that names the file and says what to do.
"""
from __future__ import annotations

from typing import Iterable, Mapping, TypeVar

from .errors import ModelFileError

V = TypeVar("V")
LIST_LIMIT = 12
# Prefixes that ComfyUI, LDM and diffusers-style saves wrap around a model's own keys.
COMMON_WRAPPERS = ("model.diffusion_model.", "diffusion_model.")


def strip_prefixes(state: Mapping[str, V], prefixes: Iterable[str] = COMMON_WRAPPERS) -> dict[str, V]:
    """Remove the first prefix that ALL keys carry (a wrapped save); keys of an unwrapped file stay as they are."""
    prefixes = tuple(prefixes)
    for prefix in prefixes:
        if state and all(key.startswith(prefix) for key in state):
            return {key[len(prefix):]: value for key, value in state.items()}
    return dict(state)


def strip_key(key: str, prefixes: Iterable[str] = COMMON_WRAPPERS) -> str:
    """One key without the first wrapper prefix it carries (files whose keys are wrapped unevenly)."""
    for prefix in prefixes:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def listing(title: str, items: list[str], limit: int = LIST_LIMIT) -> str:
    shown = "\n    ".join(items[:limit])
    more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"  {title} ({len(items)}):\n    {shown}{more}"


def layout_problems(found: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Readable lines for every missing, unexpected and mis-shaped key; empty when the layout matches."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    misshaped = sorted(f"{key}: file {list(found[key])}, expected {list(expected[key])}"
                       for key in set(expected) & set(found) if tuple(found[key]) != tuple(expected[key]))
    return [listing(title, items) for title, items in
            (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped)) if items]


def check_layout(name: str, found: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]],
                 what: str, fix: str, extra: Iterable[str] = ()) -> None:
    """Raise one ModelFileError when `found` (key -> shape) is not exactly `expected`.

    what: the layout in words ("the LaTo landmark tokenizer (channels 128->512)"); fix: the file to use instead.
    extra: further problem lines the caller knows of (e.g. non-float tensors).
    """
    problems = layout_problems(found, expected) + list(extra)
    if problems:
        raise ModelFileError("\n".join([f"{name} does not match {what}:", *problems, fix]))


def shapes_of(state: Mapping[str, object]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state.items()}
