"""LaTo as a native ComfyUI model: what ComfyUI's memory manager loads at the released size, and the time per step of
the native path against the standalone engine on this CPU, measured side by side in one run.

python bench/bench_lato_native.py [--steps 4] [--repeats 3] [--crop 512]

Part 1 builds the released DiT (19 + 38 blocks, hidden 3072) + connector on the meta device as the native model,
counts its weights in bf16 and in fp8 storage as model_management counts them (module sizes), takes the inference
memory from the model's own memory_required for a 512 crop (CFG batch of 2, source latent as reference), and applies
load_models_gpu's rule for a partial (low-VRAM) load under 8, 12, 16 and 24 GB budgets. Peak = weights on the
device + inference memory. Part 2 times a CFG euler run of a reduced-width model loaded from one file by both
loaders: core's CFGGuider on the native MODEL vs lato_core.sampler on the standalone engine.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.tiny_sd15 import import_comfy, pack_node_module  # noqa: E402

GB = 1024 ** 3
BUDGETS_GB = (8, 12, 16, 24)


def native_model(dit, connector, storage: torch.dtype, compute: torch.dtype):
    native = pack_node_module("lato_native_model")
    config = native.LaToModelConfig({"dit": asdict(dit), "connector": asdict(connector)})
    config.set_inference_dtype(storage, compute)
    return native, native.LaToModel(config, device=torch.device("meta"))


def weight_bytes(model, storage_bytes: int, compute_bytes: int) -> int:
    """Linear weights in the storage dtype, everything else in the compute dtype (how the native loader stores)."""
    linears = {f"{n}.weight" for n, m in model.diffusion_model.named_modules() if isinstance(m, torch.nn.Linear)}
    return sum(p.numel() * (storage_bytes if name in linears else compute_bytes)
               for name, p in model.diffusion_model.named_parameters())


def device_weights(budget: int, model_size: int, inference: float) -> float:
    """load_models_gpu (0.3.75): full load if it fits, else lowvram_model_memory of weights on the device."""
    import comfy.model_management as mm

    minimum = max(mm.minimum_inference_memory(), inference + mm.extra_reserved_memory())
    lowvram = max(0, budget - minimum, min(budget * 0.0, budget - mm.minimum_inference_memory()))  # NVIDIA ratio 0
    return model_size if lowvram >= model_size else lowvram


def part1(crop: int) -> None:
    from lato_core.dit.config import DiTConfig
    from lato_core.text.connector import ConnectorConfig

    latent = crop // 8
    print(f"\nPart 1: released size, {crop}x{crop} crop, CFG batch 2 (ComfyUI's accounting on a meta-device model)")
    print(f"{'weights':>8} {'model GB':>9} {'inference GB':>13} " + " ".join(f"{b:>3} GB budget: on GPU / peak"
                                                                           for b in BUDGETS_GB))
    for name, storage, size in (("bf16", torch.bfloat16, 2), ("fp8", torch.float8_e4m3fn, 1)):
        _, model = native_model(DiTConfig.release(), ConnectorConfig.release(), storage, torch.bfloat16)
        total = weight_bytes(model, size, 2)
        inference = model.memory_required([2, 16, latent, latent], {"ref_latents": [[2, 16, latent, latent]]})
        cells = []
        for budget in BUDGETS_GB:
            on_device = device_weights(budget * GB, total, inference)
            peak = on_device + inference
            cells.append(f"{on_device / GB:9.1f} / {peak / GB:4.1f}{' (partial)' if on_device < total else ''}")
        print(f"{name:>8} {total / GB:9.1f} {inference / GB:13.2f}   " + "   ".join(cells))


def part2(steps: int, repeats: int, crop: int) -> None:
    import comfy.samplers
    from safetensors.torch import save_file

    from lato_core.dit.config import DiTConfig
    from lato_core.engine.files import config_metadata
    from lato_core.engine.model import load_lato_model
    from lato_core.sampler.euler import sample
    from lato_core.sampler.guidance import ReleaseCFG
    from lato_core.sampler.packing import pack_latents
    from lato_core.sampler.schedule import flow_schedule
    from lato_core.text.connector import ConnectorConfig, Qwen2Connector
    from lato_core.dit.model import Step1XEditDiT

    dit = DiTConfig(hidden_size=256, num_heads=4, depth=2, depth_single=4, axes_dim=(8, 28, 28),
                    context_in_dim=128, landmark_dim=64)
    connector = ConnectorConfig(in_dim=128, hidden_size=128, num_heads=4, depth=2)
    torch.manual_seed(0)
    state = {k: v * 0.02 for k, v in Step1XEditDiT(dit).state_dict().items()}
    state.update({f"connector.{k}": v * 0.02 for k, v in Qwen2Connector(connector).state_dict().items()})
    path = Path(tempfile.mkdtemp()) / "lato_bench.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=config_metadata(dit, connector))

    native = pack_node_module("lato_native_model")
    patcher = native.load_lato_patcher(str(path))
    engine = load_lato_model(path, storage="fp32", compute_dtype=torch.float32)
    latent = crop // 8
    noise = torch.randn(1, 16, latent, latent)
    context = torch.randn(2, 640, connector.in_dim)
    mask = torch.ones(2, 640, dtype=torch.long)
    tokens, xy = torch.randn(1, 68, dit.landmark_dim), torch.rand(1, 68, 2) * crop
    source = torch.randn(1, 16, latent, latent)
    fmt = native.comfy.latent_formats.Flux()
    cond = lambda row: [[context[row:row + 1], {"attention_mask": mask[row:row + 1],
                                                 "reference_latents": [source / fmt.scale_factor + fmt.shift_factor],
                                                 native.LANDMARK_KEY: native.LandmarkCond(tokens, xy, torch.ones(1, 68),
                                                                                          (crop, crop))}]]
    sigmas = flow_schedule(steps, (latent // 2) ** 2)

    def run_native():
        guider = comfy.samplers.CFGGuider(patcher)
        guider.set_conds(cond(0), cond(1))
        guider.set_cfg(4.0)
        return guider.sample(noise, torch.zeros_like(noise), comfy.samplers.sampler_object("euler"), sigmas, seed=0,
                             disable_pbar=True)

    def run_engine():
        from lato_core.sampler.guidance import LandmarkCondition
        text = lambda row: (lambda t: (engine.connector.tokens(context[row:row + 1], t, mask[row:row + 1]),
                                       engine.connector.pooled(context[row:row + 1], mask[row:row + 1])))
        return sample(engine.dit, pack_latents(noise), pack_latents(source), text(0), text(1),
                      LandmarkCondition(tokens, xy, None, (float(crop), float(crop))), grid_hw=(latent // 2,) * 2,
                      steps=steps, guidance=ReleaseCFG(4.0))

    timings = {"native (core CFGGuider + euler)": [], "standalone engine": []}
    with torch.no_grad():
        run_native(), run_engine()   # warm-up: loads, caches
        for _ in range(repeats):
            for name, run in (("native (core CFGGuider + euler)", run_native), ("standalone engine", run_engine)):
                start = time.perf_counter()
                run()
                timings[name].append((time.perf_counter() - start) / steps)
    base = statistics.median(timings["standalone engine"])
    print(f"\nPart 2: reduced model (hidden {dit.hidden_size}, {dit.depth}+{dit.depth_single} blocks), {crop} crop, "
          f"{steps} steps, CFG batch 2, {torch.get_num_threads()} threads, median of {repeats}")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"  {name:34s} {median * 1000:8.1f} ms/step   ratio to engine {median / base:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--crop", type=int, default=512)
    args = parser.parse_args()
    import_comfy()
    part1(args.crop)
    part2(args.steps, args.repeats, args.crop)


if __name__ == "__main__":
    main()
