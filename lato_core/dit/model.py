"""Step1X-Edit DiT with LaTo's landmark tokens.

Image stream = [noisy N, source N, landmark L]; text stream = connector tokens (640 in the release).
Single-stream order = [text, noisy, source, landmark]. Only the first N image outputs (noisy) are returned.
Landmark tokens pass landmark_in, then the image-stream weights of every block; they never pass img_in.
"""
from __future__ import annotations

import torch
from torch import nn

from .blocks import DoubleStreamBlock, SingleStreamBlock
from .config import DiTConfig
from .layers import LastLayer, MLPEmbedder, timestep_embedding
from .rope import RELEASE_LANDMARK_CANVAS, image_ids, landmark_ids, rope_cos_sin, text_ids


class MissingLandmarkAdapterError(RuntimeError):
    pass


class Step1XEditDiT(nn.Module):
    """operations: the namespace the Linear layers come from (torch.nn, or comfy.ops.* in ComfyUI, which adds
    weight casting, fp8 storage and low-VRAM partial loading), as ComfyUI core's own models take it."""

    def __init__(self, config: DiTConfig, operations=nn):
        super().__init__()
        self.config = config
        hidden, ops = config.hidden_size, operations
        self.img_in = ops.Linear(config.in_channels, hidden, bias=True)
        self.time_in = MLPEmbedder(config.timestep_embed_dim, hidden, ops)
        self.vector_in = MLPEmbedder(config.vec_in_dim, hidden, ops)
        self.guidance_in = MLPEmbedder(config.timestep_embed_dim, hidden, ops) if config.guidance_embed else None
        self.txt_in = ops.Linear(config.context_in_dim, hidden, bias=True)
        self.double_blocks = nn.ModuleList(DoubleStreamBlock(hidden, config.num_heads, config.mlp_ratio,
                                                             config.qkv_bias, ops) for _ in range(config.depth))
        self.single_blocks = nn.ModuleList(
            SingleStreamBlock(hidden, config.num_heads, config.mlp_ratio, ops) for _ in range(config.depth_single))
        self.final_layer = LastLayer(hidden, config.out_channels, ops)
        self.landmark_in = ops.Linear(config.landmark_dim, hidden, bias=True) if config.landmark_dim else None

    compute_dtype: torch.dtype | None = None   # set when weights are stored narrower (fp8) than computed

    @property
    def dtype(self) -> torch.dtype:
        """The activations' dtype: compute_dtype, else the weights' own."""
        return self.compute_dtype or self.img_in.weight.dtype

    def forward(self, img_noisy: torch.Tensor, img_source: torch.Tensor | None, timesteps: torch.Tensor | float,
                txt: torch.Tensor, y: torch.Tensor, *, grid_hw: tuple[int, int],
                txt_ids: torch.Tensor | None = None, landmark_tokens: torch.Tensor | None = None,
                landmark_xy: torch.Tensor | None = None, landmark_visible: torch.Tensor | None = None,
                landmark_canvas_hw: tuple[float, float] = (RELEASE_LANDMARK_CANVAS, RELEASE_LANDMARK_CANVAS),
                release_height_only_scaling: bool = False, guidance: torch.Tensor | None = None,
                all_image_rows: bool = False) -> torch.Tensor:
        """Velocity for the noisy tokens.

        img_noisy, img_source: (B, N, in_channels) packed latents, N = grid_h * grid_w, row-major;
        img_source None runs a single image stream (plain FLUX-style call).
        timesteps: flow time t in [0, 1], scalar or (B,); multiplied by config.time_factor (1000) inside.
        txt: (B, T, context_in_dim) connector tokens; y: (B, vec_in_dim) pooled vector.
        landmark_tokens: (B, L, landmark_dim) quantized tokens; landmark_xy: (B, L, 2) pixel (x, y) on the
        landmark canvas (H_px, W_px) = landmark_canvas_hw. landmark_visible: (B, L) bool; invisible landmarks
        are dropped (same mask in the whole batch) or masked out as attention keys (masks differ per sample),
        which is equivalent to omitting them. Returns (B, N, out_channels) in the model dtype, or with
        all_image_rows the output over the whole image stream (noisy, source, landmarks), as the release returns it.
        """
        batch, num_noisy = img_noisy.shape[:2]
        grid_h, grid_w = grid_hw
        if num_noisy != grid_h * grid_w:
            raise ValueError(f"img_noisy has {num_noisy} tokens but grid {grid_h}x{grid_w} needs {grid_h * grid_w}")
        dtype, device = self.dtype, img_noisy.device

        image_tokens = [img_noisy] if img_source is None else [img_noisy, img_source]
        if img_source is not None and img_source.shape != img_noisy.shape:
            raise ValueError(f"img_source {tuple(img_source.shape)} must match img_noisy {tuple(img_noisy.shape)}")
        img = self.img_in(torch.cat(image_tokens, dim=1).to(dtype))
        grid_ids = image_ids(grid_h, grid_w, device)
        img_ids = grid_ids.repeat(len(image_tokens), 1)[None].expand(batch, -1, -1)

        landmark_hidden, landmark_pos, landmark_mask = self._landmark_stream(
            landmark_tokens, landmark_xy, landmark_visible, grid_hw, landmark_canvas_hw, release_height_only_scaling)
        if landmark_hidden is not None:
            img = torch.cat([img, landmark_hidden], dim=1)
            img_ids = torch.cat([img_ids, landmark_pos], dim=1)

        txt_hidden = self.txt_in(txt.to(dtype))
        num_txt = txt_hidden.shape[1]
        if txt_ids is None:
            txt_ids = text_ids(num_txt, device)
        txt_ids = txt_ids.to(device).float().expand(batch, num_txt, 3)
        cos, sin = rope_cos_sin(torch.cat([txt_ids, img_ids], dim=1), self.config.axes_dim, self.config.theta)
        cos, sin = cos[:, None], sin[:, None]

        key_mask = None
        if landmark_mask is not None:
            always = torch.ones(batch, num_txt + img.shape[1] - landmark_mask.shape[1], dtype=torch.bool, device=device)
            key_mask = torch.cat([always, landmark_mask], dim=1)

        vec = self._conditioning_vector(timesteps, y, guidance, batch, device)
        for block in self.double_blocks:
            img, txt_hidden = block(img, txt_hidden, vec, cos, sin, key_mask)
        stream = torch.cat([txt_hidden, img], dim=1)
        for block in self.single_blocks:
            stream = block(stream, vec, cos, sin, key_mask)
        end = None if all_image_rows else num_txt + num_noisy
        return self.final_layer(stream[:, num_txt:end], vec)

    def _conditioning_vector(self, timesteps, y, guidance, batch: int, device) -> torch.Tensor:
        cfg = self.config
        t = torch.as_tensor(timesteps, device=device, dtype=torch.float32).reshape(-1).expand(batch)
        vec = self.time_in(timestep_embedding(t, cfg.timestep_embed_dim, cfg.time_factor).to(self.dtype))
        if self.guidance_in is not None:
            if guidance is None:
                raise ValueError("this checkpoint has guidance_in: pass a guidance value")
            g = torch.as_tensor(guidance, device=device, dtype=torch.float32).reshape(-1).expand(batch)
            vec = vec + self.guidance_in(timestep_embedding(g, cfg.timestep_embed_dim, cfg.time_factor).to(self.dtype))
        return vec + self.vector_in(y.to(self.dtype))

    def _landmark_stream(self, tokens, xy, visible, grid_hw, canvas_hw, release_height_only_scaling):
        """-> (hidden (B, L, hidden), ids (B, L, 3), key mask (B, L) or None), or Nones without landmarks."""
        if tokens is None:
            return None, None, None
        if self.landmark_in is None:
            raise MissingLandmarkAdapterError(
                "landmark tokens were given but the DiT has no landmark_in adapter: load landmark_in.pth "
                "(lato_core.dit.load_landmark_in) or use a checkpoint that contains landmark_in.*")
        if xy is None or xy.shape[:2] != tokens.shape[:2] or xy.shape[-1] != 2:
            raise ValueError(f"landmark_xy must be (B, L, 2) matching landmark_tokens {tuple(tokens.shape)}")
        mask = None
        if visible is not None:
            visible = visible.to(device=tokens.device, dtype=torch.bool).expand(tokens.shape[:2])
            if bool((visible == visible[:1]).all()):   # same landmarks visible in every sample: drop the others
                keep = visible[0]
                tokens, xy = tokens[:, keep], xy[:, keep]
            else:
                mask = visible
        if tokens.shape[1] == 0:
            return None, None, None
        hidden = self.landmark_in(tokens.to(self.dtype))
        ids = landmark_ids(xy.to(tokens.device), grid_hw, canvas_hw, release_height_only_scaling)
        return hidden, ids, mask
