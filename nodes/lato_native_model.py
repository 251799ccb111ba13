"""LaTo as a native ComfyUI model: the lato_core DiT and connector built from comfy.ops, in a model_base.BaseModel
(FLUX latent format, the release's shifted flow schedule) and a ModelPatcher, so core samplers, schedulers,
latent previews, LoRA loaders and the memory manager work on it. Not a node file: the loader node uses it.

Conditioning the model reads (model_base extra_conds): c_crossattn = Qwen2.5-VL hidden states (B, L, 3584) with
attention_mask (B, L); reference_latents = [source latent] (core ReferenceLatent); lato_landmarks = the target
landmark tokens (LaTo Landmark Conditioning). The connector runs inside forward, since its tokens depend on t.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict

import torch

import comfy.conds
import comfy.latent_formats
import comfy.model_base
import comfy.model_management as mm
import comfy.model_patcher
import comfy.samplers
import comfy.ops
import comfy.supported_models_base
import comfy.utils
from lato_core.dit.config import DiTConfig
from lato_core.dit.loading import NULL_TOKENS_KEY, strip_wrapper_prefix, validate_keys
from lato_core.dit.model import Step1XEditDiT
from lato_core.engine.files import inspect_lato_file
from lato_core.errors import FaceEditError, ModelFileError
from lato_core.sampler.guidance import COND, UNCOND_ALL, UNCOND_TEXT, LandmarkAwareCFG
from lato_core.sampler.packing import grid_hw_for_latent, pack_latents, unpack_latents
from lato_core.sampler.schedule import mu_for_tokens
from lato_core.text.connector import ConnectorConfig, Qwen2Connector

LANDMARK_KEY = "lato_landmarks"
WEIGHT_DTYPES = {"default": None, "fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
RELEASE_SHIFT = mu_for_tokens(1024)   # mu of a 512 x 512 crop; core's ModelSamplingFlux sets it per size
# LoRA targets the release's merge never touches: ComfyUI's LoRA loader skips them here, with a warning.
RELEASE_IGNORED_LORA = ("diffusion_model.final_layer.", "diffusion_model.connector.")
log = logging.getLogger(__name__)


class LandmarkCond:
    """Target landmark tokens riding on the conditioning, kept as they are (no cast of the pixel positions to
    bf16). Conds of one canvas batch together, so every guidance branch runs in one forward."""

    def __init__(self, tokens: torch.Tensor, xy: torch.Tensor, visible: torch.Tensor,
                 canvas_hw: tuple[float, float], release_height_only_scaling: bool = False):
        self.tokens, self.xy, self.visible = tokens, xy.float(), visible.bool()
        self.canvas_hw = tuple(float(v) for v in canvas_hw)
        self.release_height_only_scaling = bool(release_height_only_scaling)

    def like(self, **changes) -> "LandmarkCond":
        fields = dict(tokens=self.tokens, xy=self.xy, visible=self.visible, canvas_hw=self.canvas_hw,
                      release_height_only_scaling=self.release_height_only_scaling)
        return LandmarkCond(**{**fields, **changes})

    def without_landmarks(self, null_tokens: torch.Tensor | None = None) -> "LandmarkCond":
        """The unconditional geometry: learned null tokens at the same positions when the model has them, else
        every point invisible, which the DiT treats exactly as no landmark tokens."""
        if null_tokens is not None:
            return self.like(tokens=null_tokens.to(self.tokens).expand(self.tokens.shape).contiguous())
        return self.like(visible=torch.zeros_like(self.visible))

    def dit_kwargs(self, batch: int, device, dtype) -> dict:
        repeat = lambda t: comfy.utils.repeat_to_batch_size(t.to(device), batch)
        return {"landmark_tokens": repeat(self.tokens).to(dtype), "landmark_xy": repeat(self.xy),
                "landmark_visible": repeat(self.visible), "landmark_canvas_hw": self.canvas_hw,
                "release_height_only_scaling": self.release_height_only_scaling}


class CONDLandmarks(comfy.conds.CONDRegular):
    """The conditioning entry for LandmarkCond: repeated to the batch, concatenated across branches."""

    def process_cond(self, batch_size, **kwargs):
        c = self.cond
        repeat = lambda t: comfy.utils.repeat_to_batch_size(t, batch_size)
        return self._copy_with(c.like(tokens=repeat(c.tokens), xy=repeat(c.xy), visible=repeat(c.visible)))

    def can_concat(self, other):
        a, b = self.cond, other.cond
        return a.tokens.shape[1:] == b.tokens.shape[1:] and a.canvas_hw == b.canvas_hw and \
            a.release_height_only_scaling == b.release_height_only_scaling

    def concat(self, others):
        parts = [self.cond] + [o.cond for o in others]
        return self.cond.like(**{name: torch.cat([getattr(p, name) for p in parts])
                                 for name in ("tokens", "xy", "visible")})

    def size(self):
        return list(self.cond.tokens.size())


def landmark_cond(tokens, release_height_only_scaling: bool = False) -> LandmarkCond:
    """engine.run.LandmarkTokens (the LaTo Landmark Tokens node's output) -> what rides on the conditioning."""
    return LandmarkCond(tokens.codes, tokens.xy, tokens.visible, tokens.canvas_hw, release_height_only_scaling)


class LaToDiffusionModel(Step1XEditDiT):
    """The DiT (its keys stay the BFL ones under diffusion_model., as core's LoRA key map expects) plus the
    connector; forward(x, t, context, ...) -> velocity (B, 16, h, w)."""

    def __init__(self, dit: dict, connector: dict, null_tokens_shape=None, dtype=None, device=None,
                 operations=None, **_):
        operations = operations or comfy.ops.disable_weight_init
        with torch.device("meta"):   # weights arrive by assignment in load_model_weights: no second copy
            super().__init__(DiTConfig(**{**dit, "axes_dim": tuple(dit["axes_dim"])}), operations)
            self.connector = Qwen2Connector(ConnectorConfig(**connector), operations)
            # learned unconditional landmark tokens (the paper's landmark-aware CFG), when the checkpoint has them
            self.landmark_null_tokens = None if null_tokens_shape is None else \
                torch.nn.Parameter(torch.empty(null_tokens_shape), requires_grad=False)

    def forward(self, x, timestep, context, attention_mask=None, ref_latents=None, lato_landmarks=None,
                transformer_options={}, control=None, **kwargs):
        compute = x.dtype
        self.compute_dtype = self.connector.compute_dtype = compute   # weights may be stored in fp8
        grid_hw = grid_hw_for_latent(x)
        if attention_mask is None:
            attention_mask = torch.ones(context.shape[:2], device=x.device)
        context = context.to(compute)
        txt = self.connector.tokens(context, timestep, attention_mask)
        y = self.connector.pooled(context, attention_mask)
        source = None
        if ref_latents:
            source = pack_latents(comfy.utils.repeat_to_batch_size(ref_latents[0].to(x), x.shape[0]))
        landmark = {} if lato_landmarks is None else lato_landmarks.dit_kwargs(x.shape[0], x.device, compute)
        out = super().forward(pack_latents(x), source, timestep, txt, y, grid_hw=grid_hw, **landmark)
        return unpack_latents(out.to(compute), grid_hw)


class LaToModelConfig(comfy.supported_models_base.BASE):
    unet_config = {}
    unet_extra_config = {}
    sampling_settings = {"shift": RELEASE_SHIFT}
    latent_format = comfy.latent_formats.Flux
    memory_usage_factor = 3.1   # as core's FLUX: the same blocks at the same width
    supported_inference_dtypes = [torch.bfloat16, torch.float16, torch.float32]


def check_text_width(cross_attn: torch.Tensor, width: int) -> None:
    """The connector reads Qwen2.5-VL hidden states of one width (3584 for the 7B); anything else is a wrong encoder."""
    if cross_attn.shape[-1] != width:
        raise FaceEditError(f"LaTo's connector reads {width}-wide Qwen2.5-VL hidden states, but this conditioning is "
                            f"{cross_attn.shape[-1]} wide: encode with LaTo Text Encode, from core's Load CLIP with "
                            f"type qwen_image (qwen_2.5_vl_7b*.safetensors) or the LaTo Text Encoder Loader")


class LaToModel(comfy.model_base.BaseModel):
    def __init__(self, model_config, device=None):
        super().__init__(model_config, comfy.model_base.ModelType.FLUX, device=device, unet_model=LaToDiffusionModel)
        self.memory_usage_factor_conds = ("ref_latents",)

    def extra_conds(self, **kwargs):
        out = super().extra_conds(**kwargs)
        cross_attn = kwargs.get("cross_attn")
        if cross_attn is not None:
            check_text_width(cross_attn, self.diffusion_model.connector.config.in_dim)
            out["c_crossattn"] = comfy.conds.CONDRegular(cross_attn)
        mask = kwargs.get("attention_mask")
        if mask is not None:
            out["attention_mask"] = comfy.conds.CONDRegular(mask)
        refs = kwargs.get("reference_latents")
        if refs is not None:
            out["ref_latents"] = comfy.conds.CONDList([self.process_latent_in(r) for r in refs])
        landmarks = kwargs.get(LANDMARK_KEY)
        if landmarks is not None:
            out[LANDMARK_KEY] = CONDLandmarks(landmarks)
        return out

    def extra_conds_shapes(self, **kwargs):
        refs = kwargs.get("reference_latents")
        return {} if refs is None else {"ref_latents": [1, 16, sum(math.prod(r.size()[2:]) for r in refs)]}

    def load_model_weights(self, sd, unet_prefix=""):
        """Strict (the file was checked against the config before), by assignment, Linear weights in the storage
        dtype and everything else (norm scales, connector scale) in the compute dtype."""
        storage = self.model_config.unet_config.get("dtype") or torch.float32
        compute = self.manual_cast_dtype or storage
        linears = {f"{name}.weight" for name, m in self.diffusion_model.named_modules()
                   if isinstance(m, torch.nn.Linear)}
        state = {}
        for key, value in sd.items():
            key = key[len(unet_prefix):] if key.startswith(unet_prefix) else key
            state[key] = value.to(storage if key in linears else compute)
        self.diffusion_model.load_state_dict(state, strict=True, assign=True)
        self.diffusion_model.requires_grad_(False)
        return self


class LaToModelPatcher(comfy.model_patcher.ModelPatcher):
    """Skips LoRA patches on final_layer.* and connector.*, as the release's merge does, saying which."""

    def add_patches(self, patches, strength_patch=1.0, strength_model=1.0):
        ignored = sorted(str(k) for k in patches if _key(k).startswith(RELEASE_IGNORED_LORA))
        if ignored:
            log.warning("LaTo: skipped %d LoRA keys the release ignores too (final_layer.*, connector.*): %s",
                        len(ignored), ", ".join(ignored[:8]))
        kept = {k: v for k, v in patches.items() if not _key(k).startswith(RELEASE_IGNORED_LORA)}
        return super().add_patches(kept, strength_patch, strength_model)


def _key(key) -> str:
    return key[0] if isinstance(key, tuple) else key


def _state(path: str, adapter_path: str | None) -> tuple[dict, DiTConfig, ConnectorConfig, list[str]]:
    """The checked state dict (the file's own keys, landmark_in from the adapter file) and configs of a LaTo file."""
    spec = inspect_lato_file(path, adapter_path)
    raw = {strip_wrapper_prefix(k): v for k, v in comfy.utils.load_torch_file(path, safe_load=True).items()}
    notes = []
    if spec.adapter is not None:
        raw = {k: v for k, v in raw.items() if not k.startswith("landmark_in.")}
        raw.update({f"landmark_in.{k}": v for k, v in spec.adapter.items()})
        notes.append(f"landmark_in from {os.path.basename(spec.adapter_name)}")
    validate_keys(path, {k: tuple(v.shape) for k, v in raw.items()}, spec.dit)
    return raw, spec.dit, spec.connector, notes


def load_lato_patcher(path: str, adapter_path: str | None = None, weight_dtype: str = "default"
                      ) -> comfy.model_patcher.ModelPatcher:
    """lato.safetensors (+ landmark_in.pth) -> a ModelPatcher core samplers and LoRA loaders take."""
    if weight_dtype not in WEIGHT_DTYPES:
        raise ModelFileError(f"weight_dtype must be one of {list(WEIGHT_DTYPES)}, not {weight_dtype!r}")
    state, dit_config, connector_config, notes = _state(path, adapter_path)
    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    params = sum(v.numel() for v in state.values())
    supported = LaToModelConfig.supported_inference_dtypes
    storage = WEIGHT_DTYPES[weight_dtype] or mm.unet_dtype(model_params=params, supported_dtypes=supported,
                                                           weight_dtype=comfy.utils.weight_dtype(state))
    manual_cast = mm.unet_manual_cast(storage, load_device, supported)
    null_shape = list(state[NULL_TOKENS_KEY].shape) if NULL_TOKENS_KEY in state else None
    if null_shape is not None:
        notes.append("learned null landmark tokens for the landmark-aware guider")
    config = LaToModelConfig({"dit": asdict(dit_config), "connector": asdict(connector_config),
                              "null_tokens_shape": null_shape})
    config.set_inference_dtype(storage, manual_cast)
    model = LaToModel(config, device=offload_device)
    model.load_model_weights(state, "")
    log.info("LaTo: %s", "; ".join(notes) or "landmark_in inside the checkpoint")
    return LaToModelPatcher(model, load_device=load_device, offload_device=offload_device)


BRANCH_CONDS = {COND: "positive", UNCOND_TEXT: "negative", UNCOND_ALL: "null"}


class LandmarkAwareGuider(comfy.samplers.CFGGuider):
    """lato_core's LandmarkAwareCFG (which branches, and how they combine) over core's batched cond call, in denoised
    space (the combination is linear, so it is the same in velocity space): c = positive, u = negative,
    uu = negative with its landmarks left out. Only the branches the scales need are run."""

    def __init__(self, model_patcher, positive, negative, text_scale: float, geometry_scale: float):
        super().__init__(model_patcher)
        self.guidance = LandmarkAwareCFG(float(text_scale), float(geometry_scale))
        learned = getattr(model_patcher.model.diffusion_model, "landmark_null_tokens", None)
        learned = None if learned is None else learned.detach().cpu()
        null = [[cond, {**options, LANDMARK_KEY: options[LANDMARK_KEY].without_landmarks(learned)}
                 if LANDMARK_KEY in options else options] for cond, options in negative]
        self.inner_set_conds({"positive": positive, "negative": negative, "null": null})

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        branches = self.guidance.branches()
        out = comfy.samplers.calc_cond_batch(self.inner_model, [self.conds[BRANCH_CONDS[b]] for b in branches],
                                             x, timestep, model_options)
        return self.guidance.combine(dict(zip(branches, out)))
