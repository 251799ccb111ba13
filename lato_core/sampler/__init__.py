"""Flow-matching sampling for LaTo: the release's shifted schedule, 2x2 latent packing, guidance modes, Euler."""
from .euler import seeded_noise, sample
from .guidance import (Branch, LandmarkAwareCFG, LandmarkCondition, NoGuidance, ReleaseCFG, guided_velocity,
                       make_guidance)
from .packing import (LatentSizeError, grid_hw_for_latent, grid_hw_for_pixels, pack_latents, unpack_latents)
from .schedule import flow_schedule, mu_for_tokens, time_shift

__all__ = [
    "Branch",
    "LandmarkAwareCFG",
    "LandmarkCondition",
    "LatentSizeError",
    "NoGuidance",
    "ReleaseCFG",
    "flow_schedule",
    "grid_hw_for_latent",
    "grid_hw_for_pixels",
    "guided_velocity",
    "make_guidance",
    "mu_for_tokens",
    "pack_latents",
    "sample",
    "seeded_noise",
    "time_shift",
    "unpack_latents",
]
