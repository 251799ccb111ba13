"""ComfyUI patch adapters of CA-Edit: they install caedit_core's math on a MODEL clone() (nodes/caedit_*.py call
them). ComfyUI is imported inside functions only.

What ComfyUI hands them (0.3.75, comfy/ldm/modules/attention.py and openaimodel.py):
- attn2 *replace* patch: fn(q, k, v, extra_options), q = Z W^Q, k, v = context W^K, W^V, all (B, N, heads * d);
  extra_options carries n_heads, attn_precision, cond_or_uncond, activations_shape and every transformer_options key.
- DIFFUSION_MODEL wrapper: fn(executor, x, timesteps, context, y, control, transformer_options, **kw) around the
  UNet forward; x is the scaled input (in_channels wide), timesteps the model's t.
- output_block_patch: fn(h, hsp, transformer_options) -> (h, hsp) before each output block concatenates its skip.

Composing with other packs (as IPAdapter_plus does): a layer is patched only when CA2 modifies it or STFG records it.
The patch never replaces another pack's attn2 patch: it calls it (or, when there is none, ComfyUI's own
optimized_attention, exactly what the unpatched layer computes) and *adds* CA2's visual term to its output. Packs that
add to an existing patch through `.add(callback, **kwargs)` (IPAdapter_plus' Attn2Replace protocol) can add to ours.
Unconditional (negative) CFG entries get zero image tokens unless the adapter says uncond_image="same".
"""
from __future__ import annotations

import copy

import torch

from .ca2 import CA2Attention, CA2Call, ca2_layer_forward, expand_to_batch, pooled_text_token
from .text_attention import TextAttentionRecorder

CAEDIT_KEY = "caedit"
WRAPPER_KEY = "caedit"


def comfy_attention(q, k, v, extra_options):
    """What ComfyUI's CrossAttention computes for an unpatched layer, with its selected attention backend."""
    from comfy.ldm.modules import attention

    return attention.optimized_attention(q, k, v, extra_options["n_heads"],
                                         attn_precision=extra_options.get("attn_precision"),
                                         transformer_options=extra_options)


class Attn2Patch:
    """attn2 replace patch: inner(q, k, v, extra_options) (the patch that was there before, else `attention`), then
    the text attention recorded when a recorder is active, then CA2's visual term added when this layer has a CA2
    module and the call carries a CA2Call, then callbacks other packs added with .add()."""

    def __init__(self, module: CA2Attention | None = None, recorder: TextAttentionRecorder | None = None,
                 inner=None, attention=comfy_attention):
        self.module, self.recorder, self.inner, self.attention = module, recorder, inner, attention
        self.callbacks: list[tuple] = []

    def add(self, callback, **kwargs) -> None:
        """IPAdapter_plus' protocol: callback(out, q, k, v, extra_options, **kwargs) returns a term added to out
        while sigma_end <= sigma <= sigma_start (when given)."""
        self.callbacks.append((callback, kwargs))

    def extended(self, module: CA2Attention | None = None, recorder: TextAttentionRecorder | None = None):
        new = copy.copy(self)
        new.callbacks = list(self.callbacks)
        new.module = module if module is not None else self.module
        new.recorder = recorder if recorder is not None else self.recorder
        return new

    def __deepcopy__(self, memo):
        """ModelPatcher.clone() deep-copies model_options: share the CA2 weights (a copy made under inference_mode
        would turn them into inference tensors) and the recorder; copy the wrapped patch as ComfyUI would."""
        new = Attn2Patch(self.module, self.recorder, copy.deepcopy(self.inner, memo), self.attention)
        new.callbacks = list(self.callbacks)
        return new

    def __call__(self, q, k, v, extra_options):
        heads = extra_options["n_heads"]
        call = extra_options.get(CAEDIT_KEY, {}).get("ca2_call")
        ca2 = self.module is not None and call is not None and call.strength != 0
        if ca2 and self.inner is None and self.module.config.softmax_over == "joint":
            out = ca2_layer_forward(self.module, q, k, v, heads, call)  # one softmax over text + image: not additive
        else:
            out = (self.inner or self.attention)(q, k, v, extra_options)
            if ca2:  # refuses a "joint" adapter on top of another pack's patch
                out = ca2_layer_forward(self.module, q, k, v, heads, call, base=out)
        if self.recorder is not None:
            self.recorder.record(q, k, heads, extra_options.get("cond_or_uncond"))
        if self.callbacks:
            sigmas = extra_options.get("sigmas")
            sigma = float(sigmas.reshape(-1)[0]) if sigmas is not None else float("inf")
            for callback, kwargs in self.callbacks:
                if kwargs.get("sigma_end", -float("inf")) <= sigma <= kwargs.get("sigma_start", float("inf")):
                    out = out + callback(out, q, k, v, extra_options, **kwargs)
        return out


def attn2_keys(model_patcher) -> list[tuple[str, int, int]]:
    """ComfyUI patch keys of every cross-attention block of an SD-style UNet."""
    unet = model_patcher.get_model_object("diffusion_model")
    keys = []
    for kind, blocks in (("input", unet.input_blocks), ("middle", [unet.middle_block]), ("output", unet.output_blocks)):
        for index, block in enumerate(blocks):
            for module in block.modules():
                if hasattr(module, "transformer_blocks"):
                    keys += [(kind, index, t) for t in range(len(module.transformer_blocks))]
    return keys


def install_attn2(model_patcher, key: tuple[str, int, int], module: CA2Attention | None = None,
                  recorder: TextAttentionRecorder | None = None) -> None:
    """Put an Attn2Patch on one layer of model_patcher (a clone), wrapping whatever patch the layer already has."""
    patches = model_patcher.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn2", {})
    old = patches.get(key)
    new = old.extended(module, recorder) if isinstance(old, Attn2Patch) else Attn2Patch(module, recorder, inner=old)
    model_patcher.set_model_attn2_replace(new, *key)


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


class CAEditUNetWrapper:
    """DIFFUSION_MODEL wrapper: builds the call's CA2Call (and, with a reference net, its residuals) and passes them
    down in transformer_options[CAEDIT_KEY]. Per-image inputs: image_tokens (Bi, Nv, C), mask (Bm, H, W) 1 = edit,
    condition (Bc, 5, h, w) = [masked source latent, mask] for the reference net. `refnet_recorder`, when set (STFG
    with maps from the reference net), records the reference net's text attention."""

    def __init__(self, image_tokens: torch.Tensor, mask: torch.Tensor, strength: float = 1.0, ca2: bool = True,
                 refnet=None, condition: torch.Tensor | None = None, refnet_scale: float = 1.0,
                 uncond_zero: bool = True, ca2_in_refnet: bool = False):
        self.image_tokens, self.mask, self.strength = image_tokens, mask, strength
        self.ca2, self.refnet, self.condition = ca2, refnet, condition
        self.refnet_scale, self.uncond_zero, self.ca2_in_refnet = refnet_scale, uncond_zero, ca2_in_refnet
        self.refnet_recorder: TextAttentionRecorder | None = None

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
            self.refnet.holder.recorder, self.refnet.holder.cond_or_uncond = self.refnet_recorder, cou
            down, mid = self.refnet(x[:, :4].to(weight.dtype), timesteps, context.to(weight.dtype),
                                    condition.to(weight.dtype), call if self.ca2_in_refnet else None,
                                    self.refnet_scale)
            info["residuals"] = (down, mid)
        options[CAEDIT_KEY] = info
        return executor(x, timesteps, context, y, control, options, **kwargs)


class DevicePlacer:
    """Moves the adapter to the UNet's device on first use, outside inference mode (STFG needs normal tensors)."""

    def __init__(self, adapter, wrapper: CAEditUNetWrapper):
        self.adapter, self.wrapper = adapter, wrapper

    def __call__(self, executor, x, *args, **kwargs):
        if next(self.adapter.parameters()).device != x.device:
            with torch.inference_mode(False), torch.no_grad():
                self.adapter.to(x.device)
        return self.wrapper(executor, x, *args, **kwargs)


def caedit_wrapper(model_patcher) -> DevicePlacer | None:
    """The CA-Edit DIFFUSION_MODEL wrapper on a model patched by the CA2 Adapter node, if any."""
    import comfy.patcher_extension as pe

    found = model_patcher.get_wrappers(pe.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY)
    return found[-1] if found else None


def install_caedit_wrapper(model_patcher, adapter, wrapper: CAEditUNetWrapper) -> None:
    import comfy.patcher_extension as pe

    model_patcher.remove_wrappers_with_key(pe.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY)
    model_patcher.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY, DevicePlacer(adapter, wrapper))


def install_recorders(model_patcher, recorder: TextAttentionRecorder, maps: str = "unet") -> int:
    """STFG's text-attention recording on a clone: on every cross-attention layer of the main UNet ("unet"), or in
    the reference net of the CA-Edit wrapper ("refnet"; on a copy of the wrapper, so the source MODEL is unchanged).
    Returns the number of main-UNet layers patched."""
    if maps == "refnet":
        placer = caedit_wrapper(model_patcher)
        wrapper = placer.wrapper if placer is not None else None
        if wrapper is None or wrapper.refnet is None or wrapper.refnet_scale == 0:
            raise ValueError("maps='refnet' needs a MODEL from CA2 Adapter with a reference net (refnet_strength > 0).")
        own = copy.copy(wrapper)
        own.refnet_recorder = recorder
        install_caedit_wrapper(model_patcher, placer.adapter, own)
        return 0
    keys = attn2_keys(model_patcher)
    for key in keys:
        install_attn2(model_patcher, key, recorder=recorder)
    return len(keys)


def apply_ca2(model_patcher, adapter, tokens: torch.Tensor, mask: torch.Tensor, strength: float,
              refnet_strength: float, image: torch.Tensor | None = None, vae=None):
    """A clone of model_patcher with CA2 (attn2 patches on the adapter's layers, added to what is there) and, when
    the adapter has one and refnet_strength != 0, the reference net (DIFFUSION_MODEL wrapper + output_block_patch).
    tokens: CLIP image tokens (Bi, Nv, clip_dim); mask (Bm, H, W) 1 = edit; image/vae: the source for the ref net."""
    from .refnet import comfy_attn2_key, grey_masked_pixels, masked_condition

    cfg = adapter.config
    work = model_patcher.clone()
    condition = None
    if adapter.refnet is not None and refnet_strength != 0:
        if image is None or vae is None:
            raise ValueError("This CA2 adapter has a reference net: connect the source image and the VAE.")
        latent = vae.encode(grey_masked_pixels(image[..., :3], mask))
        latent = work.get_model_object("latent_format").process_in(latent)
        with torch.inference_mode(False):
            condition = masked_condition(latent.clone(), mask.clone())
        work.set_model_output_block_patch(refnet_output_block_patch)
    in_refnet = cfg["placement"] == "refnet"
    if strength != 0 and not in_refnet:
        known = set(attn2_keys(work))
        for name, layer in adapter.layers().items():
            key = comfy_attn2_key(name, cfg["layers_per_block"])
            if key not in known:
                raise ValueError(f"CA2 layer {name} has no cross-attention block {key} in this model: the adapter "
                                 "was trained for another UNet layout (SD1.5 expected).")
            install_attn2(work, key, module=layer)
    if strength == 0 and condition is None:
        return work  # nothing to add: the plain model
    with torch.inference_mode(False):
        wrapper = CAEditUNetWrapper(tokens.clone(), mask.clone(), strength, strength != 0, adapter.refnet, condition,
                                    refnet_strength, cfg["uncond_image"] == "zeros", in_refnet)
    install_caedit_wrapper(work, adapter, wrapper)
    return work
