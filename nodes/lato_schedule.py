"""LaTo Release Schedule: the release's exact shifted flow-matching grid as SIGMAS for SamplerCustomAdvanced."""
from lato_core.sampler.packing import grid_hw_for_latent
from lato_core.sampler.schedule import flow_schedule

from .common import CATEGORY


class FaceEditLaToReleaseSchedule:
    DESCRIPTION = ("The release's schedule: linspace(1, 0, steps + 1) shifted with mu linear in the token count "
                   "(0.5 at 256 tokens, 1.15 at 4096), in float32. Core's BasicScheduler 'simple' on a model "
                   "patched by ModelSamplingFlux for the same size is within 1.5e-4 of it.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": ("LATENT", {"tooltip": "The source latent: its size sets the token count."}),
            "steps": ("INT", {"default": 28, "min": 1, "max": 200, "tooltip": "Euler steps; the release uses 28."}),
        }}

    RETURN_TYPES = ("SIGMAS",)
    OUTPUT_TOOLTIPS = ("For SamplerCustomAdvanced, with KSamplerSelect euler.",)
    FUNCTION = "get_sigmas"
    CATEGORY = f"{CATEGORY}/lato"

    def get_sigmas(self, latent, steps):
        rows, cols = grid_hw_for_latent(latent["samples"])
        return (flow_schedule(steps, rows * cols),)


NODES = {"FaceEditLaToReleaseSchedule": (FaceEditLaToReleaseSchedule, "LaTo Release Schedule")}
