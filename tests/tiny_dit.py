"""The one tiny Step1X-Edit DiT used by all DiT tests, its random BFL-layout weights, and a diffusers twin."""
from __future__ import annotations

import inspect
import math

import torch

from lato_core.dit import DiTConfig, Step1XEditDiT

TINY = DiTConfig(in_channels=64, hidden_size=64, num_heads=2, depth=2, depth_single=2, mlp_ratio=4.0,
                 qkv_bias=True, axes_dim=(4, 14, 14), theta=10_000, vec_in_dim=16, context_in_dim=32,
                 guidance_embed=False, landmark_dim=24)


def random_bfl_state_dict(config: DiTConfig = TINY, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random fp32 weights in the BFL key layout; norm scales around 1 so that swapped norms would show."""
    gen = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in Step1XEditDiT(config).state_dict().items()}
    state = {}
    for key, shape in shapes.items():
        noise = torch.randn(shape, generator=gen)
        if key.endswith(".scale"):
            state[key] = 1.0 + 0.2 * noise
        elif key.endswith(".weight"):
            state[key] = noise / math.sqrt(shape[1])
        else:
            state[key] = 0.1 * noise
    return state


def tiny_model(config: DiTConfig = TINY, seed: int = 0) -> Step1XEditDiT:
    model = Step1XEditDiT(config)
    model.load_state_dict(random_bfl_state_dict(config, seed))
    return model.eval().requires_grad_(False)


def tiny_inputs(grid_hw=(4, 6), batch: int = 1, txt_len: int = 8, num_landmarks: int = 5, seed: int = 1,
                config: DiTConfig = TINY) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    n = grid_hw[0] * grid_hw[1]
    canvas = torch.tensor([512.0, 512.0])  # (x, y) canvas extent
    return {
        "img_noisy": torch.randn(batch, n, config.in_channels, generator=gen),
        "img_source": torch.randn(batch, n, config.in_channels, generator=gen),
        "txt": torch.randn(batch, txt_len, config.context_in_dim, generator=gen),
        "y": torch.randn(batch, config.vec_in_dim, generator=gen),
        "timesteps": torch.rand(batch, generator=gen),
        "landmark_tokens": torch.randn(batch, num_landmarks, config.landmark_dim, generator=gen),
        "landmark_xy": torch.rand(batch, num_landmarks, 2, generator=gen) * canvas,
    }


def bfl_to_diffusers(bfl_state: dict[str, torch.Tensor], hidden_size: int) -> dict[str, torch.Tensor]:
    """diffusers' own convert_flux_transformer_checkpoint_to_diffusers, unchanged except for its hard-coded
    `inner_dim = 3072` (used to split single_blocks.*.linear1 into q, k, v, mlp), rebound to our tiny width."""
    from diffusers.loaders import single_file_utils

    converter = single_file_utils.convert_flux_transformer_checkpoint_to_diffusers
    source = inspect.getsource(converter)
    constant = "inner_dim = 3072"
    if source.count(constant) == 1 and hidden_size != 3072:
        namespace = dict(vars(single_file_utils))
        exec(compile(source.replace(constant, f"inner_dim = {hidden_size}"), single_file_utils.__file__, "exec"),
             namespace)
        converter = namespace[converter.__name__]
    return converter(dict(bfl_state))


def diffusers_twin(config: DiTConfig, bfl_state: dict[str, torch.Tensor]):
    """FluxTransformer2DModel with matching dims, loaded strictly from the converted BFL weights."""
    from diffusers import FluxTransformer2DModel

    model = FluxTransformer2DModel(
        patch_size=1, in_channels=config.in_channels, num_layers=config.depth,
        num_single_layers=config.depth_single, attention_head_dim=config.head_dim,
        num_attention_heads=config.num_heads, joint_attention_dim=config.context_in_dim,
        pooled_projection_dim=config.vec_in_dim, guidance_embeds=config.guidance_embed,
        axes_dims_rope=tuple(config.axes_dim))
    dit_keys = {k: v for k, v in bfl_state.items() if not k.startswith("landmark_in.")}
    model.load_state_dict(bfl_to_diffusers(dit_keys, config.hidden_size), strict=True)
    return model.eval().requires_grad_(False)
