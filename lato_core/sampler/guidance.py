"""Classifier-free guidance modes: which DiT branches a step needs, and how their velocities combine.

A branch is (text, geometry): text "cond" = instruction, "uncond" = empty prompt; geometry "cond" = the target
landmark tokens, "null" = learned null tokens if given, else no landmark tokens. All branches of a step run as ONE
batched forward (a branch without landmarks keeps its tokens but marks them invisible, which the DiT treats
exactly like leaving them out); if text lengths differ between branches they run one by one instead.
Velocities are combined in fp32.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Protocol, Union

import torch

TextInput = Union[tuple[torch.Tensor, torch.Tensor], Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                  object]   # or anything with .tokens(t) and .pooled


@dataclass(frozen=True)
class Branch:
    text: str       # "cond" | "uncond"
    geometry: str   # "cond" | "null"


COND = Branch("cond", "cond")            # v_c  (instruction, landmarks)
UNCOND_TEXT = Branch("uncond", "cond")   # v_u  (empty prompt, landmarks)
UNCOND_ALL = Branch("uncond", "null")    # v_uu (empty prompt, null / no landmarks)


@dataclass
class LandmarkCondition:
    """Quantized landmark tokens for the DiT. Missing landmarks: visible False (the DiT drops them)."""
    tokens: torch.Tensor                          # (B or 1, L, landmark_dim)
    xy: torch.Tensor                              # (B or 1, L, 2) pixels (x, y) on the canvas
    visible: torch.Tensor | None = None           # (B or 1, L) bool
    canvas_hw: tuple[float, float] = (512.0, 512.0)
    release_height_only_scaling: bool = False


class Guidance(Protocol):
    def branches(self) -> tuple[Branch, ...]: ...
    def combine(self, v: Mapping[Branch, torch.Tensor]) -> torch.Tensor: ...


@dataclass(frozen=True)
class NoGuidance:
    """One conditional pass: v = v_c."""
    def branches(self) -> tuple[Branch, ...]:
        return (COND,)

    def combine(self, v):
        return v[COND]


@dataclass(frozen=True)
class ReleaseCFG:
    """The release: v = v_u + w (v_c - v_u); both branches carry the source image and the same landmarks.
    w = 1 runs the conditional pass only."""
    scale: float = 4.0

    def branches(self) -> tuple[Branch, ...]:
        return (COND,) if self.scale == 1 else (COND, UNCOND_TEXT)

    def combine(self, v):
        if self.scale == 1:
            return v[COND]
        return v[UNCOND_TEXT] + self.scale * (v[COND] - v[UNCOND_TEXT])


@dataclass(frozen=True)
class LandmarkAwareCFG:
    """The paper's landmark-aware CFG with separate text and geometry scales (nested, geometry outermost):

        v = v_uu + w_g (v_u - v_uu) + w_t (v_c - v_u)

    v_c = (instruction, landmarks), v_u = (empty prompt, landmarks), v_uu = (empty prompt, null geometry).
    Null geometry = `null_tokens` (learned unconditional tokens, in token space before landmark_in, placed at
    the same positions and visibility as the real tokens) when a checkpoint provides them, else no landmark tokens.
    Reductions: w_g = 1 -> the release formula v_u + w_t (v_c - v_u); null geometry == landmarks -> same;
    w_t = w_g = w -> v_uu + w (v_c - v_uu), the paper's single "CFG scale for landmark condition" (Table 5, w=4)
    with its unconditional branch dropping text and landmarks together. Only the branches needed are run.
    """
    text_scale: float = 4.0
    geometry_scale: float = 4.0
    null_tokens: torch.Tensor | None = None   # (landmark_dim,), (L, landmark_dim) or (1, L, landmark_dim)

    def branches(self) -> tuple[Branch, ...]:
        w_t, w_g = self.text_scale, self.geometry_scale
        if w_g == 1:
            return ReleaseCFG(w_t).branches()
        if w_t == w_g:
            return (COND, UNCOND_ALL)
        return (COND, UNCOND_TEXT, UNCOND_ALL)

    def combine(self, v):
        w_t, w_g = self.text_scale, self.geometry_scale
        if w_g == 1:
            return ReleaseCFG(w_t).combine(v)
        if w_t == w_g:
            return v[UNCOND_ALL] + w_t * (v[COND] - v[UNCOND_ALL])
        return v[UNCOND_ALL] + w_g * (v[UNCOND_TEXT] - v[UNCOND_ALL]) + w_t * (v[COND] - v[UNCOND_TEXT])


MODES = ("release", "landmark_aware", "none")


def make_guidance(mode: str, scale: float = 4.0, geometry_scale: float = 4.0,
                  null_tokens: torch.Tensor | None = None) -> Guidance:
    """One of MODES."""
    if mode == "release":
        return ReleaseCFG(scale)
    if mode == "landmark_aware":
        return LandmarkAwareCFG(scale, geometry_scale, null_tokens)
    if mode == "none":
        return NoGuidance()
    raise ValueError(f"unknown guidance mode {mode!r}: use 'release', 'landmark_aware' or 'none'")


def resolve_text(text: TextInput, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(txt, y) at flow time t from: a (txt, y) pair; a callable t -> (txt, y); or an object with .tokens(t) and
    .pooled (lato_core.text.TextConditioning), since the connector's tokens depend on t."""
    if hasattr(text, "tokens") and hasattr(text, "pooled"):
        return text.tokens(t), text.pooled
    return text(t) if callable(text) else text


def _geometry(landmarks: LandmarkCondition | None, geometry: str, null_tokens: torch.Tensor | None):
    """(tokens, xy, visible) for one branch, or Nones without landmarks."""
    if landmarks is None:
        return None, None, None
    tokens, xy = landmarks.tokens, landmarks.xy
    visible = landmarks.visible
    if visible is None:
        visible = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
    if geometry == "cond":
        return tokens, xy, visible
    if null_tokens is not None:
        if null_tokens.shape[-1] != tokens.shape[-1]:
            raise ValueError(f"null landmark tokens are {null_tokens.shape[-1]} wide, landmark tokens "
                             f"{tokens.shape[-1]}")
        return null_tokens.to(tokens).expand(tokens.shape), xy, visible
    return tokens, xy, torch.zeros_like(visible, dtype=torch.bool)   # all invisible = left out


def guided_velocity(model, guidance: Guidance, x: torch.Tensor, source: torch.Tensor | None, t: float,
                    text: Mapping[str, tuple[torch.Tensor, torch.Tensor]], landmarks: LandmarkCondition | None,
                    grid_hw: tuple[int, int]) -> torch.Tensor:
    """Guided velocity (B, N, C) in fp32 at flow time t. text: {"cond": (txt, y), "uncond": (txt, y)}."""
    batch = x.shape[0]
    null_tokens = getattr(guidance, "null_tokens", None)
    inputs = []
    for branch in guidance.branches():
        if branch.text not in text or text[branch.text] is None:
            raise ValueError(f"{type(guidance).__name__} needs the {branch.text}itional text encoding "
                             "(the empty prompt for 'uncond')")
        txt, y = text[branch.text]
        tokens, xy, visible = _geometry(landmarks, branch.geometry, null_tokens)
        parts = [x, source, txt, y, tokens, xy, visible]
        inputs.append([None if p is None else p.expand(batch, *p.shape[1:]) for p in parts])

    same_text = all(i[2].shape == inputs[0][2].shape for i in inputs)
    groups = [inputs] if same_text else [[i] for i in inputs]
    outputs = []
    for group in groups:
        cat = [None if parts[0] is None else torch.cat(parts) for parts in zip(*group)]
        x_in, src_in, txt_in, y_in, tok_in, xy_in, vis_in = cat
        timesteps = torch.full((x_in.shape[0],), float(t), dtype=torch.float32, device=x.device)
        kwargs = {}
        if landmarks is not None:
            kwargs = dict(landmark_tokens=tok_in, landmark_xy=xy_in, landmark_visible=vis_in,
                          landmark_canvas_hw=landmarks.canvas_hw,
                          release_height_only_scaling=landmarks.release_height_only_scaling)
        out = model(x_in, src_in, timesteps, txt_in, y_in, grid_hw=grid_hw, **kwargs)
        outputs.extend(out.float().split(batch))
    return guidance.combine(dict(zip(guidance.branches(), outputs)))
