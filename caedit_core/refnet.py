"""Reference net (CA-Edit Fig. 3, BrushNet-style): a copy of the UNet's down and middle blocks that sees
[noisy latent, masked source latent, mask] and feeds the main UNet through zero-initialised 1x1 convs.

Layout: diffusers module names (conv_in, time_proj, time_embedding, down_blocks, mid_block) plus
down_zero_convs.{i} (one per skip feature, in diffusers' down_block_res_samples order = ComfyUI's input_blocks
order) and mid_zero_conv. So the same module trains under diffusers (main UNet called with
down_block_additional_residuals / mid_block_additional_residual) and runs in ComfyUI, where a DIFFUSION_MODEL
wrapper computes the residuals once per UNet call and an output_block_patch adds residual n-1-i to the skip that
output block i pops, and the middle residual to h at output block 0 (comfy_patches.refnet_output_block_patch).
Both add exactly where diffusers does: skips and the middle-block output.

Input channels: 4 noisy + 4 masked-source latent (the source with the masked pixels set to 0.5 grey, VAE-encoded
and scaled like the UNet's latents) + 1 mask, 1 = edit (ComfyUI's MASK; BrushNet's mask channel is inverted, this
one is not). Copied from an inpainting UNet, conv_in reuses its [noisy, mask, masked] weights, so at
initialisation the reference net's features equal the main UNet's down path; the zero convs make the residuals 0.
The cross-attention layers of the copy can carry CA2 (placement "refnet", the paper's) via CA2AttnProcessor.
"""
from __future__ import annotations

import copy
import json

import torch
from torch import nn

from .ca2 import CA2Attention, CA2Call, ca2_layer_forward
from .text_attention import TextAttentionRecorder

LATENT_CHANNELS = 4
CONDITIONING_CHANNELS = LATENT_CHANNELS + 1


class CallHolder:
    """Shared by a model's CA2 processors: the CA2Call of the running forward (None = plain attention), and the
    text-attention recorder STFG reads the reference net's maps with (None = no recording)."""
    call: CA2Call | None = None
    recorder: TextAttentionRecorder | None = None
    cond_or_uncond: list[int] | None = None


class CA2AttnProcessor:
    """diffusers attention processor for a cross-attention layer carrying CA2, or plain attention with layer None
    (plain object on purpose: the CA2 weights stay owned by the adapter, not registered inside the UNet or
    reference net). Records the text attention when the holder has an active recorder."""

    def __init__(self, layer: CA2Attention | None, holder: CallHolder):
        self.layer, self.holder = layer, holder

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        call, recorder = self.holder.call, self.holder.recorder
        cross = encoder_hidden_states is not None
        ca2 = cross and call is not None and self.layer is not None
        recording = cross and recorder is not None and recorder.active
        if not (ca2 or recording):
            from diffusers.models.attention_processor import AttnProcessor2_0
            return AttnProcessor2_0()(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        q = attn.to_q(hidden_states)
        k, v = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        if recording:
            recorder.record(q, k, attn.heads, self.holder.cond_or_uncond)
        out = ca2_layer_forward(self.layer, q, k, v, attn.heads, call) if ca2 else _attention(q, k, v, attn.heads)
        return attn.to_out[1](attn.to_out[0](out))


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, inner = q.shape
    qh, kh, vh = (t.reshape(b, -1, heads, inner // heads).transpose(1, 2) for t in (q, k, v))
    return torch.nn.functional.scaled_dot_product_attention(qh, kh, vh).transpose(1, 2).reshape(b, n, inner)


def attn2_layers(model: nn.Module) -> dict[str, tuple[int, int]]:
    """diffusers names of the cross-attention layers (attn2) -> (inner_dim, heads)."""
    return {name: (m.to_q.out_features, m.heads) for name, m in model.named_modules()
            if name.endswith("attn2") and hasattr(m, "to_q")}


def set_ca2_processors(model: nn.Module, layers: dict[str, CA2Attention], holder: CallHolder) -> None:
    """Route the named attn2 layers of a diffusers UNet or ReferenceNet through CA2."""
    for name, layer in layers.items():
        model.get_submodule(name).set_processor(CA2AttnProcessor(layer, holder))


def comfy_attn2_key(name: str, layers_per_block: int) -> tuple[str, int, int]:
    """diffusers attn2 name -> ComfyUI patch key (block kind, block index, transformer index), SD-style UNets with
    the same number of res blocks per level (ComfyUI: input block 0 is conv_in; each level has layers_per_block
    res blocks then a downsampler; up levels have layers_per_block + 1)."""
    parts = name.split(".")
    t = int(parts[parts.index("transformer_blocks") + 1])
    if parts[0] == "mid_block":
        return ("middle", 0, t)
    level, i = int(parts[1]), int(parts[3])
    if parts[0] == "down_blocks":
        return ("input", 1 + (layers_per_block + 1) * level + i, t)
    if parts[0] == "up_blocks":
        return ("output", (layers_per_block + 1) * level + i, t)
    raise ValueError(f"not a UNet cross-attention layer: {name}")


def skip_channels(unet_config: dict) -> list[int]:
    """Channels of each skip feature (conv_in, then each res block and downsampler), diffusers order."""
    widths, per = list(unet_config["block_out_channels"]), unet_config["layers_per_block"]
    out = [widths[0]]
    for level, width in enumerate(widths):
        out += [width] * per + ([width] if level < len(widths) - 1 else [])
    return out


def _jsonable(config) -> dict:
    return json.loads(json.dumps({k: v for k, v in dict(config).items() if not k.startswith("_")}, default=list))


def _zero_conv(channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(channels, channels, 1)
    if conv.weight.device.type != "meta":
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    return conv


class ReferenceNet(nn.Module):
    def __init__(self, unet_config: dict, parts: tuple | None = None):
        """Built from a diffusers UNet config. Without `parts` (time_proj, time_embedding, down_blocks, mid_block)
        the blocks are created on the meta device and must be filled with load_state_dict(..., assign=True)."""
        super().__init__()
        self.unet_config = _jsonable(unet_config)
        device = None
        if parts is None:
            from diffusers import UNet2DConditionModel
            device = torch.device("meta")
            with device:
                unet = UNet2DConditionModel.from_config(self.unet_config)
            parts = (unet.time_proj, unet.time_embedding, unet.down_blocks, unet.mid_block)
        self.time_proj, self.time_embedding, self.down_blocks, self.mid_block = parts
        width = self.unet_config["block_out_channels"][0]
        with torch.device(device or "cpu"):
            self.conv_in = nn.Conv2d(LATENT_CHANNELS + CONDITIONING_CHANNELS, width, 3, padding=1)
            self.down_zero_convs = nn.ModuleList(_zero_conv(c) for c in skip_channels(self.unet_config))
            self.mid_zero_conv = _zero_conv(self.unet_config["block_out_channels"][-1])
        self.holder = CallHolder()
        set_ca2_processors(self, dict.fromkeys(attn2_layers(self)), self.holder)  # plain, recordable

    @classmethod
    def from_unet(cls, unet) -> "ReferenceNet":
        """Copy of a diffusers UNet2DConditionModel's down/mid path; conv_in widened (see module doc)."""
        parts = tuple(copy.deepcopy(m) for m in (unet.time_proj, unet.time_embedding, unet.down_blocks, unet.mid_block))
        net = cls(unet.config, parts)
        src = unet.conv_in.weight.detach()
        with torch.no_grad():
            net.conv_in.weight.zero_()
            net.conv_in.weight[:, :LATENT_CHANNELS] = src[:, :LATENT_CHANNELS]
            if src.shape[1] == 2 * LATENT_CHANNELS + 1:  # inpainting UNet: [noisy, mask, masked latent]
                net.conv_in.weight[:, LATENT_CHANNELS:2 * LATENT_CHANNELS] = src[:, LATENT_CHANNELS + 1:]
                net.conv_in.weight[:, 2 * LATENT_CHANNELS] = src[:, LATENT_CHANNELS]
            net.conv_in.bias.copy_(unet.conv_in.bias.detach())
        return net.to(dtype=unet.dtype)

    @classmethod
    def from_ldm_state_dict(cls, state_dict: dict, unet_config: dict) -> "ReferenceNet":
        """From a ComfyUI / LDM UNet state dict (keys input_blocks.*, with or without model.diffusion_model.)."""
        from diffusers import UNet2DConditionModel
        from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

        prefixed = {k if k.startswith("model.diffusion_model.") else f"model.diffusion_model.{k}": v
                    for k, v in state_dict.items()}
        unet = UNet2DConditionModel.from_config(_jsonable(unet_config))
        unet.load_state_dict(convert_ldm_unet_checkpoint(prefixed, unet.config), strict=True)
        return cls.from_unet(unet)

    def attn2_layers(self) -> dict[str, tuple[int, int]]:
        return attn2_layers(self)

    def set_ca2_layers(self, layers: dict[str, CA2Attention]) -> None:
        set_ca2_processors(self, layers, self.holder)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                condition: torch.Tensor, ca2_call: CA2Call | None = None, scale: float = 1.0):
        """sample (B, 4, h, w) noisy latent as the UNet sees it; condition (B, 5, h, w) = [masked latent, mask].
        Returns (down residuals in skip order, middle residual)."""
        self.holder.call = ca2_call
        try:
            t = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(sample.shape[0])
            emb = self.time_embedding(self.time_proj(t).to(sample.dtype))
            h = self.conv_in(torch.cat([sample, condition.to(sample.dtype)], dim=1))
            skips = [h]
            for block in self.down_blocks:
                if getattr(block, "has_cross_attention", False):
                    h, res = block(hidden_states=h, temb=emb, encoder_hidden_states=encoder_hidden_states)
                else:
                    h, res = block(hidden_states=h, temb=emb)
                skips.extend(res)
            h = self.mid_block(h, emb, encoder_hidden_states=encoder_hidden_states)
        finally:
            self.holder.call = None
        down = [conv(s) * scale for conv, s in zip(self.down_zero_convs, skips)]
        return down, self.mid_zero_conv(h) * scale


def masked_condition(masked_latent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[masked source latent (B, 4, h, w), mask resized by area to h x w] -> (B, 5, h, w)."""
    from .blend import latent_mask
    m = latent_mask(mask, *masked_latent.shape[-2:]).to(masked_latent)
    return torch.cat([masked_latent, m], dim=1)


def grey_masked_pixels(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """IMAGE (B, H, W, C) 0..1 with the (rounded) mask set to 0.5 grey, as ComfyUI's InpaintModelConditioning does."""
    from .blend import latent_mask
    keep = 1.0 - latent_mask(mask, *image.shape[1:3]).round()[:, 0, :, :, None].to(image)
    return (image - 0.5) * keep + 0.5
