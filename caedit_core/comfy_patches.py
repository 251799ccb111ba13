"""Pure-torch callables behind CA-Edit's ComfyUI patches (nodes/caedit.py installs them on a MODEL clone()).

What ComfyUI hands them (0.3.75, comfy/ldm/modules/attention.py and openaimodel.py):
- attn2 *replace* patch: fn(q, k, v, extra_options), q = Z W^Q, k, v = context W^K, W^V, all (B, N, heads * d);
  extra_options carries n_heads, cond_or_uncond, activations_shape (B, C, h, w) and every transformer_options key.
- DIFFUSION_MODEL wrapper: fn(executor, x, timesteps, context, y, control, transformer_options, **kw) around the
  UNet forward; x is the scaled input (in_channels wide), timesteps the model's t.
- output_block_patch: fn(h, hsp, transformer_options) -> (h, hsp) before each output block concatenates its skip.
The wrapper computes everything per call (pooled text, batch-expanded image tokens and mask, reference-net
residuals) and passes it down in transformer_options[CAEDIT_KEY]; the patches only read it.

Choices (documented here, used identically by training):
- f_txt^pool (Eq. 3) is the context's *last* token: CLIP's text model is causal, so its last position has seen the
  whole prompt like the EOS pooling token, and it is the only summary a UNet patch can see.
- The score predictor's Z is q (= Z W^Q, width inner_dim): the replace patch never sees Z itself.
- Unconditional (negative) CFG entries get zero image tokens ("zeros", IP-Adapter's image drop; then K_vis = V_vis = 0
  and the visual term vanishes) unless uncond_image="same".
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .ca2 import CA2Attention, ca2_attention, mask_to_tokens
from .stfg import _layer_grid

CAEDIT_KEY = "caedit"


def pooled_text_token(context: torch.Tensor) -> torch.Tensor:
    """(B, Nt, C) text context -> (B, C), the last token (see module doc)."""
    return context[:, -1]


def expand_to_batch(per_image: torch.Tensor, batch: int, cond_or_uncond: list[int] | None,
                    uncond_zero: bool = False) -> torch.Tensor:
    """Per-image tensor (Bi, ...) -> (batch, ...) for a UNet batch made of len(cond_or_uncond) chunks of equal size
    (ComfyUI concatenates cond / uncond chunks). Bi must be 1 or divide the chunk size. Uncond chunks (1) become
    zeros when uncond_zero."""
    chunks = list(cond_or_uncond) if cond_or_uncond else [0]
    if batch % len(chunks):
        raise ValueError(f"batch {batch} does not split into {len(chunks)} chunks")
    size = batch // len(chunks)
    if size % per_image.shape[0]:
        raise ValueError(f"{per_image.shape[0]} images do not divide a chunk of {size}")
    chunk = per_image.repeat(size // per_image.shape[0], *([1] * (per_image.ndim - 1)))
    parts = [torch.zeros_like(chunk) if (uncond_zero and c == 1) else chunk for c in chunks]
    return torch.cat(parts, dim=0)


@dataclass
class CA2Call:
    """What one UNet call's CA2 layers need, already expanded to the call's batch."""
    image_tokens: torch.Tensor   # (B, Nv, clip_dim)
    pooled_text: torch.Tensor    # (B, Ct)
    mask: torch.Tensor           # (B, H, W), 1 = edit, any resolution (pooled per layer)
    latent_hw: tuple[int, int]   # latent grid the layer grids are fractions of
    strength: float = 1.0


def ca2_layer_forward(module: CA2Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                      call: CA2Call, want_text_attn: bool = False):
    """One CA2 cross-attention (Eq. 2-6) for projected q, k, v; computed in float32 (fp16 logits overflow)."""
    dtype = q.dtype
    weight = module.to_k_vis.weight
    qf, kf, vf = (t.to(torch.float32) for t in (q, k, v))
    tokens = call.image_tokens.to(device=weight.device, dtype=weight.dtype)
    k_vis, v_vis = (t.float() for t in module.visual_kv(tokens))
    gh, gw = _layer_grid(q.shape[1], *call.latent_hw)
    mask = mask_to_tokens(call.mask.to(q.device), gh, gw)
    score = module.score_predictor(q.to(weight.dtype), call.pooled_text.to(weight.device, weight.dtype)).float()
    c = module.config
    out = ca2_attention(qf, kf, vf, k_vis, v_vis, score, mask, heads, c.softmax_over, c.vis_scale * call.strength,
                        return_text_attn=want_text_attn)
    if want_text_attn:
        return out[0].to(dtype), out[1]
    return out.to(dtype)


def plain_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, want_text_attn: bool = False):
    """Softmax attention; with want_text_attn also the head-averaged probabilities (B, Nq, Nk), float32."""
    b, nq, inner = q.shape
    qh, kh, vh = (t.reshape(b, -1, heads, inner // heads).transpose(1, 2) for t in (q, k, v))
    if not want_text_attn:
        return F.scaled_dot_product_attention(qh, kh, vh).transpose(1, 2).reshape(b, nq, inner)
    probs = (qh.float() @ kh.float().transpose(-1, -2) / math.sqrt(inner // heads)).softmax(-1)
    out = (probs @ vh.float()).transpose(1, 2).reshape(b, nq, inner).to(q.dtype)
    return out, probs.mean(dim=1)


class TextAttentionRecorder:
    """Collects, while active, the head-averaged text attention of the positive (cond) rows, one entry per layer
    call, detached and float32: what STFG's boundary region is computed from (Eq. 11)."""

    def __init__(self):
        self.active = False
        self.maps: list[torch.Tensor] = []

    def start(self) -> None:
        self.active, self.maps = True, []

    def stop(self) -> list[torch.Tensor]:
        self.active = False
        return self.maps

    def add(self, text_attn: torch.Tensor, cond_or_uncond: list[int] | None) -> None:
        chunks = list(cond_or_uncond) if cond_or_uncond else [0]
        if 0 not in chunks:
            return
        size = text_attn.shape[0] // len(chunks)
        first = chunks.index(0) * size
        self.maps.append(text_attn[first:first + size].detach().float())


class Attn2Patch:
    """attn2 replace patch: CA2 when this layer has a CA2 module and the call carries a CA2Call, else plain attention;
    records the text attention into `recorder` when one is attached and active."""

    def __init__(self, module: CA2Attention | None = None, recorder: TextAttentionRecorder | None = None):
        self.module, self.recorder = module, recorder

    def with_recorder(self, recorder: TextAttentionRecorder) -> "Attn2Patch":
        return Attn2Patch(self.module, recorder)

    def __deepcopy__(self, memo):
        """ModelPatcher.clone() deep-copies model_options: share the weights instead (a copy made under
        inference_mode would also turn them into inference tensors)."""
        return Attn2Patch(self.module, self.recorder)

    def __call__(self, q, k, v, extra_options):
        heads = extra_options["n_heads"]
        record = self.recorder is not None and self.recorder.active
        call = extra_options.get(CAEDIT_KEY, {}).get("ca2_call")
        if self.module is not None and call is not None and call.strength != 0:
            result = ca2_layer_forward(self.module, q, k, v, heads, call, record)
        else:
            result = plain_attention(q, k, v, heads, record)
        if not record:
            return result
        out, text_attn = result
        self.recorder.add(text_attn, extra_options.get("cond_or_uncond"))
        return out


def refnet_output_block_patch(h: torch.Tensor, hsp: torch.Tensor, transformer_options: dict):
    """Adds the reference net's residuals (BrushNet / ControlNet wiring): output block i gets the residual of the
    skip it pops (input block n-1-i), and output block 0 also gets the middle residual on h."""
    residuals = transformer_options.get(CAEDIT_KEY, {}).get("residuals")
    if residuals is None:
        return h, hsp
    down, mid = residuals
    index = transformer_options["block"][1]
    if index == 0 and mid is not None:
        h = h + mid.to(h.dtype)
    return h, hsp + down[len(down) - 1 - index].to(hsp.dtype)


class GradSafeParameters:
    """Normal (autograd-usable) copies of a module's inference-mode parameters and buffers.

    ComfyUI loads models inside torch.inference_mode(), so their weights are inference tensors, and autograd refuses
    to save them for backward (checked in ComfyUI 0.3.75: every Linear/Conv/GroupNorm of a loaded UNet). `swapped()`
    puts the copies into the modules' parameter/buffer tables for the duration of a gradient pass and restores the
    originals after; nothing outside that block sees them. Costs one copy of the affected weights while alive."""

    def __init__(self, module: torch.nn.Module):
        self.entries = []
        with torch.inference_mode(False), torch.no_grad():
            for owner in module.modules():
                for table in (owner._parameters, owner._buffers):
                    for name, tensor in table.items():
                        if tensor is not None and tensor.is_inference():
                            self.entries.append((table, name, tensor.clone()))

    def __len__(self) -> int:
        return len(self.entries)

    @contextmanager
    def swapped(self):
        originals = [(table, name, table[name]) for table, name, _ in self.entries]
        try:
            for table, name, copy in self.entries:
                table[name] = copy
            yield self
        finally:
            for table, name, original in originals:
                table[name] = original


class CAEditUNetWrapper:
    """DIFFUSION_MODEL wrapper: builds the call's CA2Call (and, with a reference net, its residuals) and passes them
    down in transformer_options[CAEDIT_KEY]. Per-image inputs: image_tokens (Bi, Nv, C), mask (Bm, H, W) 1 = edit,
    condition (Bc, 5, h, w) = [masked source latent, mask] for the reference net."""

    def __init__(self, image_tokens: torch.Tensor, mask: torch.Tensor, strength: float = 1.0, ca2: bool = True,
                 refnet=None, condition: torch.Tensor | None = None, refnet_scale: float = 1.0,
                 uncond_zero: bool = True, ca2_in_refnet: bool = False):
        self.image_tokens, self.mask, self.strength = image_tokens, mask, strength
        self.ca2, self.refnet, self.condition = ca2, refnet, condition
        self.refnet_scale, self.uncond_zero, self.ca2_in_refnet = refnet_scale, uncond_zero, ca2_in_refnet

    def call_for(self, x: torch.Tensor, context: torch.Tensor, cond_or_uncond) -> CA2Call:
        b = x.shape[0]
        return CA2Call(image_tokens=expand_to_batch(self.image_tokens.to(x.device), b, cond_or_uncond, self.uncond_zero),
                       pooled_text=pooled_text_token(context), latent_hw=tuple(x.shape[-2:]),
                       mask=expand_to_batch(self.mask.to(x.device).float(), b, cond_or_uncond), strength=self.strength)

    def __call__(self, executor, x, timesteps, context, y=None, control=None, transformer_options=None, **kwargs):
        options = dict(transformer_options or {})
        cou = options.get("cond_or_uncond")
        call = self.call_for(x, context, cou) if self.ca2 else None
        info = {"ca2_call": None if self.ca2_in_refnet else call}
        if self.refnet is not None and self.refnet_scale != 0:
            weight = next(self.refnet.parameters())
            condition = expand_to_batch(self.condition.to(x.device), x.shape[0], cou)
            down, mid = self.refnet(x[:, :4].to(weight.dtype), timesteps, context.to(weight.dtype),
                                    condition.to(weight.dtype), call if self.ca2_in_refnet else None,
                                    self.refnet_scale)
            info["residuals"] = (down, mid)
        options[CAEDIT_KEY] = info
        return executor(x, timesteps, context, y, control, options, **kwargs)


class STFGStepper:
    """The STFG part of the guider, per sampling run (ComfyUI-free): boundary region from the text attention the
    recorder collected in the latest pass (the first guided step makes one no-grad recording pass), then
    stfg_guidance with a pass through `predict` on grad-safe copies of `model`'s inference-mode weights.
    mask (Bm, H, W) 1 = edit; sigma_range = (high, low) where guidance applies."""

    def __init__(self, mask: torch.Tensor, strength: float, radius: float = 0.5, rule: str = "masked",
                 sigma_range: tuple[float, float] = (float("inf"), 0.0), recorder: TextAttentionRecorder | None = None):
        self.mask, self.strength, self.radius, self.rule, self.sigma_range = mask, strength, radius, rule, sigma_range
        self.recorder = recorder or TextAttentionRecorder()
        self.reset()

    def reset(self, source: torch.Tensor | None = None) -> None:
        self.source, self.maps, self.safe, self.last_loss, self.last_boundary = source, None, None, None, None

    def recorded(self, predict, x, timestep):
        self.recorder.start()
        try:
            return predict(x, timestep)
        finally:
            self.maps = self.recorder.stop()

    def boundary(self, shape) -> torch.Tensor:
        from .blend import latent_mask
        from .stfg import boundary_region, mean_text_attention

        b, _, h, w = shape
        m = latent_mask(self.mask, h, w)[:, 0]
        region = boundary_region(mean_text_attention(self.maps, h, w), m.to(self.maps[0].device), self.rule) \
            if self.maps else torch.zeros_like(m)
        return region.expand(b, h, w) if region.shape[0] == 1 else region

    def __call__(self, x: torch.Tensor, timestep: torch.Tensor, predict, model: torch.nn.Module) -> torch.Tensor:
        from .stfg import stfg_guidance

        sigma = float(timestep.reshape(-1)[0])
        high, low = self.sigma_range
        if self.strength == 0 or self.source is None or not (low <= sigma <= high):
            return predict(x, timestep)
        if not self.maps:
            self.recorded(predict, x, timestep)
        boundary = self.boundary(x.shape).to(x.device)
        if self.safe is None:
            self.safe = GradSafeParameters(model)

        def denoise(z):  # inside stfg_guidance: inference_mode(False) + enable_grad; timestep cloned to a normal tensor
            with self.safe.swapped():
                return self.recorded(predict, z, timestep.clone())

        guided, self.last_loss = stfg_guidance(x, timestep, denoise, self.source, boundary, self.strength,
                                               radius=self.radius, return_loss=True)
        self.last_boundary = boundary
        return guided
