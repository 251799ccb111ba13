"""Per-step cost of three ways to give the DiT the target landmarks, measured side by side and counted at full size.

  (a) no landmarks          image stream [noisy N, source N]
  (b) LaTo                  + 68 landmark tokens (landmark_in, then the image-stream weights of every block)
  (c) landmark image        + N more image tokens: the rendered landmark drawing, VAE-encoded and appended like the
                            source image (the alternative LaTo argues against)

python bench/bench_lato.py [--repeats 5] [--width 384] [--quick]

Part 1 times one sampler step (one batched CFG forward, batch 2) of a reduced-width DiT on this CPU, with the real
token counts (640 text tokens, N = (H/16)*(W/16) per image), and counts its FLOPs. Part 2 counts the FLOPs per step
and the weight memory of the released 12B DiT at 512, 768 and 1024 (meta tensors only, nothing is allocated).
Everything is printed as ratios to (a) or to bf16.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lato_core.dit import DiTConfig, Step1XEditDiT  # noqa: E402
from lato_core.memory import BLOCK_LISTS, estimate_weight_bytes  # noqa: E402
from lato_core.text.connector import ConnectorConfig, Qwen2Connector  # noqa: E402

TEXT_TOKENS = 640          # connector tokens in the release
LANDMARKS = 68             # iBUG-68
BATCH = 2                  # release CFG: [instruction, ""] in one batch
STEPS = 28                 # release sampler steps
RESOLUTIONS = (512, 768, 1024)
CASES = {"a": "(a) no landmarks", "b": "(b) 68 landmark tokens", "c": "(c) landmark image +N"}
GB = 1e9
# Whole-pipeline peaks reported upstream (H800, 28 steps); they include the Qwen2.5-VL-7B text encoder, the VAE,
# the connector, activations and the CUDA context, so only their ratios are comparable with weight sizes.
UPSTREAM_PEAK_GB = {"bf16": (42.5, 46.5, 49.8), "fp8": (31.0,), "bf16+offload": (26.0,), "fp8+offload": (18.0,)}


# ---------------------------------------------------------------------------------------------------- FLOP formulas

def extra_tokens(case: str, n: int) -> int:
    return {"a": 0, "b": LANDMARKS, "c": n}[case]


def extra_in_dim(case: str, config: DiTConfig) -> int:
    """Input width of the extra tokens' projection: landmark_in (codebook rows) for (b), a patch embedder like img_in
    (16 latent channels x 2x2) for (c)."""
    return {"a": 0, "b": config.landmark_dim or config.hidden_size, "c": config.in_channels}[case]


def seq_len(case: str, n: int, text: int = TEXT_TOKENS) -> int:
    return text + 2 * n + extra_tokens(case, n)


def dit_flops(config: DiTConfig, case: str, n: int, text: int = TEXT_TOKENS, batch: int = BATCH) -> dict[str, int]:
    """FLOPs of one DiT forward (2 per multiply-add; norms, RoPE, softmax and other element-wise work not counted).

    h = hidden, m = MLP hidden (4h), T = text tokens, I = image-stream tokens, L = T + I:
      attention per block     4 L^2 h       (QK^T: 2 L^2 h, AV: 2 L^2 h, summed over heads)
      double block            2 (T + I) h (4h + 2m)  [qkv 3h + proj h + MLP 2m, per stream]  + 2 * 2 h 6h  [adaLN]
      single block            2 L h (4h + 2m)        [linear1 3h + m, linear2 h + m]          + 2 h 3h      [adaLN]
      embedders               2 h (64 * 2N + 4096 T + d_extra * E) + time_in, vector_in; final layer 2 h (64 N + 2h)
    """
    h, m, c = config.hidden_size, config.mlp_hidden, config.in_channels
    extra = extra_tokens(case, n)
    image = 2 * n + extra
    length = text + image
    layers = config.depth + config.depth_single
    attention = layers * 4 * length ** 2 * h
    linear = (2 * h * (c * 2 * n + config.context_in_dim * text + extra_in_dim(case, config) * extra)
              + 2 * (config.timestep_embed_dim * h + h * h) + 2 * (config.vec_in_dim * h + h * h)
              + config.depth * (2 * length * h * (4 * h + 2 * m) + 2 * 2 * h * 6 * h)
              + config.depth_single * (2 * length * h * (4 * h + 2 * m) + 2 * h * 3 * h)
              + 2 * h * (c * n + 2 * h))
    return {"attention": batch * attention, "linear": batch * linear, "total": batch * (attention + linear)}


def connector_flops(config: ConnectorConfig, text: int = TEXT_TOKENS, batch: int = BATCH) -> int:
    """Connector tokens(t), recomputed at every step because they depend on t (the pooled vector is cached).
    H = refiner width, M = its MLP width: 2 T 3584 H (input) + t/c embedders + per block [2 H 2H + 2 T H (4H + 2M)
    + 4 T^2 H]."""
    hid, mlp = config.hidden_size, int(config.hidden_size * config.mlp_ratio)
    per_sample = (2 * text * config.in_dim * hid
                  + 2 * (config.timestep_freq_dim * hid + hid * hid) + 2 * (config.in_dim * hid + hid * hid)
                  + config.depth * (2 * hid * 2 * hid + 2 * text * hid * (4 * hid + 2 * mlp) + 4 * text ** 2 * hid))
    return batch * per_sample


# ------------------------------------------------------------------------------------------------ inputs and models

def axes_for(head_dim: int) -> tuple[int, int, int]:
    """RoPE axes (index, row, col) in the release's proportions 16:56:56 for any even head dim."""
    first = 2 * max(1, head_dim // 16)
    rest = head_dim - first
    return first, 2 * (rest // 4), rest - 2 * (rest // 4)


def case_inputs(config: DiTConfig, case: str, grid: tuple[int, int], text: int, batch: int, dtype, device) -> dict:
    """Random inputs of the right shapes; for (c) the landmark image's latent tokens sit on the image grid."""
    n = grid[0] * grid[1]
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype) if device != "meta" else \
            torch.empty(*shape, device="meta", dtype=dtype)

    inputs = dict(img_noisy=rand(batch, n, config.in_channels), img_source=rand(batch, n, config.in_channels),
                  timesteps=torch.full((batch,), 0.5, device=device), txt=rand(batch, text, config.context_in_dim),
                  y=rand(batch, config.vec_in_dim), grid_hw=grid)
    if case == "b":
        xy = torch.rand(batch, LANDMARKS, 2, generator=gen) * 512
        inputs.update(landmark_tokens=rand(batch, LANDMARKS, extra_in_dim("b", config)), landmark_xy=xy.to(device))
    elif case == "c":
        rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
        xy = torch.stack([cols, rows], dim=-1).reshape(1, n, 2).expand(batch, n, 2).float()
        inputs.update(landmark_tokens=rand(batch, n, config.in_channels), landmark_xy=xy.to(device),
                      landmark_canvas_hw=grid)  # canvas = grid: ids (0, row, col), like the source tokens
    return inputs


class CaseRunner:
    """One DiT for all three cases. (c) runs through the landmark path with landmark_in swapped for a patch
    embedder Linear(in_channels, hidden): same tokens, same positions, same per-token cost as appending a third
    image to the image stream."""

    def __init__(self, config: DiTConfig, dtype=torch.float32, device="cpu"):
        torch.manual_seed(0)
        with torch.device(device):
            self.model = Step1XEditDiT(config).eval().requires_grad_(False).to(dtype)
            self.landmark_in = self.model.landmark_in
            self.image_in = nn.Linear(config.in_channels, config.hidden_size).requires_grad_(False).to(dtype)
        self.config, self.dtype, self.device = config, dtype, device

    @torch.no_grad()
    def __call__(self, inputs: dict, case: str) -> torch.Tensor:
        self.model.landmark_in = self.image_in if case == "c" else self.landmark_in
        try:
            return self.model(**inputs)
        finally:
            self.model.landmark_in = self.landmark_in


def counted_flops(runner: CaseRunner, case: str, grid: tuple[int, int], text: int) -> dict[str, int]:
    """FLOPs as torch's FlopCounterMode sees them, split into nn.Linear modules and the rest (attention). Needs a
    meta-device runner: on meta, SDPA decomposes into counted matmuls; the CPU flash kernel is not counted."""
    inputs = case_inputs(runner.config, case, grid, text, BATCH, runner.dtype, "meta")
    counter = FlopCounterMode(display=False)
    with counter:
        runner(inputs, case)
    per_module = counter.get_flop_counts()
    prefix = type(runner.model).__name__
    linear = sum(sum(per_module.get(f"{prefix}.{path}", {}).values())
                 for path, module in runner.model.named_modules() if isinstance(module, nn.Linear))
    total = counter.get_total_flops()
    return {"attention": total - linear, "total": total}  # all that is not an nn.Linear is SDPA's two matmuls


def counted_connector_flops(config: ConnectorConfig, text: int) -> int:
    with torch.device("meta"):
        connector = Qwen2Connector(config).requires_grad_(False)
        x = torch.empty(BATCH, text, config.in_dim)
        mask = torch.ones(BATCH, text, dtype=torch.bool)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        connector.tokens(x, 0.5, mask)
    return counter.get_total_flops()


def timed_ms(fns: dict, repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """Round-robin over the cases (so drift hits all alike) after one warm-up each -> (median, best) per case.
    The best is the least disturbed by other processes on a shared machine."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000)
    return ({name: statistics.median(ms) for name, ms in times.items()},
            {name: min(ms) for name, ms in times.items()})


# ------------------------------------------------------------------------------------------------------ weight bytes

def block_bytes(config: DiTConfig, storage: str) -> list[int]:
    """Bytes of each double/single block as cast_for_storage stores them (the rule of estimate_weight_bytes:
    fp8 Linear weights 1 byte + a 4-byte scale, everything else 2 bytes in bf16)."""
    with torch.device("meta"):
        model = Step1XEditDiT(config)
    sizes = []
    for list_name in BLOCK_LISTS:
        for block in getattr(model, list_name):
            size = 0
            for module in block.modules():
                fp8 = storage == "fp8_e4m3" and type(module) is nn.Linear
                for name, param in module.named_parameters(recurse=False):
                    size += param.numel() + 4 if fp8 and name == "weight" else param.numel() * 2
            sizes.append(size)
    return sizes


def weight_rows(config: DiTConfig) -> list[tuple[str, float, str, str]]:
    """(label, resident GB, host RAM note, upstream peak key)."""
    rows = []
    for storage, label in (("bf16", "bf16"), ("fp8_e4m3", "fp8")):
        total = estimate_weight_bytes(config, storage)
        blocks = sorted(block_bytes(config, storage), reverse=True)
        other = total - sum(blocks)
        host = f"{total / GB:.1f} GB on the host"
        rows.append((label, total / GB, "-", label))
        rows.append((f"{label} + offload, 1 block resident", (other + blocks[0]) / GB, host, f"{label}+offload"))
        rows.append((f"{label} + offload, 2 blocks (prefetch)", (other + blocks[0] + blocks[1]) / GB, host, ""))
    return rows


# ------------------------------------------------------------------------------------------------------------- main

def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        return 0.0


def machine_facts() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"machine: {cpu}; {os.cpu_count()} logical CPUs; torch {torch.__version__}, "
            f"{torch.get_num_threads()} intra-op / {torch.get_num_interop_threads()} inter-op threads; "
            f"1-min load average {load_average():.1f}")


def measured_part(args) -> None:
    head_dim = args.head_dim
    if args.width % head_dim:
        raise SystemExit(f"--width {args.width} must be a multiple of --head-dim {head_dim}")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    config = DiTConfig(hidden_size=args.width, num_heads=args.width // head_dim, depth=args.double,
                       depth_single=args.single, axes_dim=axes_for(head_dim), landmark_dim=args.width)
    side = args.resolution // 16
    grid, n = (side, side), side * side
    runner = CaseRunner(config, dtype)
    inputs = {case: case_inputs(config, case, grid, args.text_tokens, BATCH, dtype, "cpu") for case in CASES}
    load_before = load_average()
    ms, best = timed_ms({case: (lambda c=case: runner(inputs[c], c)) for case in CASES}, args.repeats)
    load_after = load_average()
    flops = {case: dit_flops(config, case, n, args.text_tokens) for case in CASES}

    meta = CaseRunner(config, dtype, "meta")
    counted = {case: counted_flops(meta, case, grid, args.text_tokens) for case in CASES}
    mismatch = max(abs(counted[c][k] - flops[c][k]) / flops[c][k] for c in CASES for k in ("attention", "total"))

    print(f"\n1) MEASURED: one sampler step = one CFG forward, batch {BATCH}, {args.dtype}, on this CPU")
    print(f"   reduced DiT: hidden {args.width} ({config.num_heads} heads x {head_dim}), {args.double} double + "
          f"{args.single} single blocks, MLP x{config.mlp_ratio:g}; real token counts: text {args.text_tokens}, "
          f"N = {n} at {args.resolution}x{args.resolution}; median and best of {args.repeats} after 1 warm-up, "
          f"cases interleaved; GFLOP/s from the best")
    print(f"   {'case':24s} {'img tok':>7s} {'seq L':>6s} {'ms/step':>9s} {'x(a)':>6s} {'best ms':>9s} {'x(a)':>6s} "
          f"{'attn GFLOP':>11s} {'x(a)':>6s} {'total GFLOP':>12s} {'x(a)':>6s} {'GFLOP/s':>8s}")
    for case, label in CASES.items():
        f, base = flops[case], flops["a"]
        print(f"   {label:24s} {2 * n + extra_tokens(case, n):7d} {seq_len(case, n, args.text_tokens):6d} "
              f"{ms[case]:9.1f} {ms[case] / ms['a']:6.2f} {best[case]:9.1f} {best[case] / best['a']:6.2f} "
              f"{f['attention'] / 1e9:11.2f} {f['attention'] / base['attention']:6.3f} "
              f"{f['total'] / 1e9:12.2f} {f['total'] / base['total']:6.3f} "
              f"{f['total'] / 1e9 / (best[case] / 1000):8.1f}")
    share = flops["a"]["attention"] / flops["a"]["total"]
    if max(load_before, load_after) > os.cpu_count() + 0.5:
        print(f"   WARNING: 1-min load average {load_before:.1f} before / {load_after:.1f} after timing on "
              f"{os.cpu_count()} CPUs: other processes competed, the measured ratios are unreliable; rerun")
    print(f"   FLOP formulas vs torch FlopCounterMode on meta tensors: max relative difference {mismatch:.1e}")
    print(f"   attention is {share:.0%} of (a)'s FLOPs at this width (L / 6h = {seq_len('a', n, args.text_tokens)}"
          f" / {6 * args.width}); at hidden 3072 it is far less, so part 2's ratios are the ones that carry over")


def analytic_part() -> None:
    config = DiTConfig.release()
    meta = CaseRunner(config, torch.bfloat16, "meta")
    connector = connector_flops(ConnectorConfig.release())
    mismatch = abs(counted_connector_flops(ConnectorConfig.release(), TEXT_TOKENS) - connector) / connector

    print(f"\n2) ANALYTIC at the released size: hidden {config.hidden_size} ({config.num_heads} x {config.head_dim}), "
          f"{config.depth} double + {config.depth_single} single blocks, batch {BATCH}, text {TEXT_TOKENS}")
    print(f"   step = DiT forward + connector tokens(t) ({connector / 1e12:.2f} TFLOP, the same in every case); "
          f"(c) also VAE-encodes the drawing once per edit (not per step, not counted)")
    print(f"   {'res':>5s} {'N':>5s} {'case':24s} {'seq L':>6s} {'attn TFLOP':>11s} {'attn %':>7s} "
          f"{'step TFLOP':>11s} {'PFLOP/edit':>10s} {'x(a) step':>10s} {'x(a) attn':>10s}")
    for res in RESOLUTIONS:
        side = res // 16
        n = side * side
        step = {case: dit_flops(config, case, n) for case in CASES}
        for case in CASES:
            counted = counted_flops(meta, case, (side, side), TEXT_TOKENS)
            mismatch = max(mismatch, abs(counted["total"] - step[case]["total"]) / step[case]["total"],
                           abs(counted["attention"] - step[case]["attention"]) / step[case]["attention"])
        for case, label in CASES.items():
            attn, total = step[case]["attention"], step[case]["total"] + connector
            base_total = step["a"]["total"] + connector
            print(f"   {res:5d} {n:5d} {label:24s} {seq_len(case, n):6d} {attn / 1e12:11.2f} {attn / total:7.1%} "
                  f"{total / 1e12:11.2f} {STEPS * total / 1e15:10.2f} {total / base_total:10.3f} "
                  f"{attn / step['a']['attention']:10.3f}")
    print(f"   PFLOP/edit = {STEPS} steps x step TFLOP. FLOP formulas vs torch FlopCounterMode on meta tensors: "
          f"max relative difference {mismatch:.1e}")

    with torch.device("meta"):
        connector_bytes = sum(p.numel() * 2 for p in Qwen2Connector(ConnectorConfig.release()).parameters())
    rows = weight_rows(config)
    bf16 = rows[0][1]
    upstream_bf16 = UPSTREAM_PEAK_GB["bf16"][0]
    print(f"\n   DiT weight memory on the GPU (landmark_in included; the same at {', '.join(map(str, RESOLUTIONS))}: "
          f"weights do not depend on the resolution)")
    print(f"   {'storage':34s} {'GB':>7s} {'x bf16':>7s}   {'host RAM':22s} {'upstream peak GB':>18s} "
          f"{'x bf16':>7s}")
    for label, gb, host, key in rows:
        peaks = UPSTREAM_PEAK_GB.get(key)
        peak_text = "/".join(f"{p:g}" for p in peaks) if peaks else "-"
        peak_ratio = f"{peaks[0] / upstream_bf16:7.2f}" if peaks else f"{'-':>7s}"
        print(f"   {label:34s} {gb:7.2f} {gb / bf16:7.2f}   {host:22s} {peak_text:>18s} {peak_ratio}")
    print(f"   offload: lato_core.memory.BlockOffloader lends ONE block at a time (no prefetch) -> the '1 block' rows;")
    print(f"   prefetching the next block while one runs would need the '2 blocks' rows. The largest block is a double "
          f"block (two streams).")
    print(f"   upstream peaks (H800, 28 steps; bf16 at 512/768/1024, the others as quoted) are whole-pipeline: they "
          f"add the Qwen2.5-VL-7B text encoder (~8.3B params, ~16.6 GB in bf16, unless offloaded), the connector "
          f"({connector_bytes / GB:.2f} GB bf16, kept apart from these DiT rows), the VAE, activations and the CUDA "
          f"context. Compare ratios, not GB. E.g. bf16 at 512: DiT {bf16:.1f} + connector {connector_bytes / GB:.1f} "
          f"+ text encoder ~16.6 = ~{bf16 + connector_bytes / GB + 16.6:.1f} GB of the {upstream_bf16:g} GB peak; "
          f"DiT + connector = {bf16 + connector_bytes / GB:.2f} GB, the ~24.9 GB of lato/lato.safetensors.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per case (after one warm-up)")
    parser.add_argument("--width", type=int, default=384, help="hidden size of the measured DiT")
    parser.add_argument("--head-dim", type=int, default=128, help="head dim of the measured DiT (release: 128)")
    parser.add_argument("--double", type=int, default=2, help="double-stream blocks of the measured DiT")
    parser.add_argument("--single", type=int, default=4, help="single-stream blocks of the measured DiT")
    parser.add_argument("--resolution", type=int, default=512, help="square image side for the measured part")
    parser.add_argument("--text-tokens", type=int, default=TEXT_TOKENS)
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="compute dtype of the measured part")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: hidden 64 (2 x 32), 1 + 1 blocks, 256x256, 1 repeat; part 2 unchanged")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.width, args.head_dim, args.double, args.single, args.resolution = 1, 64, 32, 1, 1, 256
    if args.resolution % 16:
        raise SystemExit("--resolution must be a multiple of 16")
    print(__doc__.splitlines()[0])
    print(machine_facts())
    measured_part(args)
    analytic_part()


if __name__ == "__main__":
    main()
