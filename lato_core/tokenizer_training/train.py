"""Train the LaTo landmark tokenizer (paper 3.2.1 and 4.1) with accelerate: one CPU or several GPUs.

Loss: L1 reconstruction of the (x, y) points in [-1, 1] plus beta * commitment (Eq. 2); the codebook is
trained by EMA (not by gradients) and codes unused for 50 steps are reset to random encoder outputs
(all in lato_core.tokenizer.quantizer). The saved safetensors file has the released key layout
(encoder.*, vq.codebook, decoder.*) with smaller sizes; dilation_reference stays the release's 512, so
lato_core.tokenizer.load_tokenizer(path) rebuilds exactly the trained network from the shapes.

Reconstruction error in pixels: mean over points of |dx| + |dy| on the 512 canvas (the landmark-error
convention of lato_core.metrics), i.e. 512 x the L1 loss. With several processes, DDP broadcasts
process 0's codebook every step, so the EMA follows process 0's batches; gradients use all of them.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..tokenizer import LandmarkTokenizer, TokenizerConfig, points_to_tokens_input
from .data import base_faces, landmark_sets

PX_PER_L1 = 512.0  # mean |delta| per coordinate in [-1, 1] units -> mean |dx| + |dy| in canvas pixels


@dataclass
class TrainConfig:
    steps: int = 3000
    batch: int = 128
    lr: float = 1e-3
    warmup: int = 100
    code_dim: int = 256           # the release: 3072 (the DiT width)
    codebook_size: int = 1024     # the release: 8192
    channels: tuple[int, int] = (64, 256)   # the release: (128, 512)
    num_res_blocks: int = 3
    beta: float = 0.25
    ema_decay: float = 0.99
    reset_interval: int = 50
    pool: int = 16384           # landmark sets generated once, sampled with replacement
    held_out: int = 1024
    seed: int = 0
    log_every: int = 100
    photos: str | None = None   # an extra folder of photos for base faces
    out: str = "outputs/tokenizer/model.safetensors"
    cpu: bool = False

    def tokenizer_config(self) -> TokenizerConfig:
        return TokenizerConfig(channels=tuple(self.channels), code_dim=self.code_dim, codebook_size=self.codebook_size,
                               num_res_blocks=self.num_res_blocks, ema_decay=self.ema_decay,
                               reset_interval=self.reset_interval, commitment_beta=self.beta)


@dataclass
class TrainResult:
    path: str
    recon_error_px: float      # held-out, mean |dx| + |dy| per point
    perplexity: float          # held-out code usage, exp(entropy)
    codes_used: int
    initial_recon_error_px: float
    seconds: float
    history: list[dict] = field(default_factory=list)


@torch.no_grad()
def evaluate(model: LandmarkTokenizer, x: torch.Tensor, batch: int = 512) -> tuple[float, float, int]:
    """(recon error px, perplexity, codes used) of x (N, 2, 68) through encode -> quantise -> decode."""
    was_training = model.training
    model.eval()
    errors, counts = [], torch.zeros(model.config.codebook_size)
    for chunk in x.split(batch):
        indices, codes = model.encode(chunk)
        errors.append((model.decode(codes).float() - chunk.to(model.device)).abs().mean(dim=(1, 2)).cpu())
        counts += torch.bincount(indices.flatten().cpu(), minlength=counts.numel()).float()
    model.train(was_training)
    probs = counts / counts.sum()
    perplexity = math.exp(-(probs * torch.log(probs + 1e-10)).sum().item())
    return float(torch.cat(errors).mean()) * PX_PER_L1, perplexity, int((counts > 0).sum())


def _schedule(cfg: TrainConfig):
    def factor(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return factor


def save_tokenizer(model: LandmarkTokenizer, path: str | Path, metadata: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {key: value.detach().float().cpu().contiguous() for key, value in model.state_dict().items()}
    save_file(tensors, str(path), metadata={key: str(value) for key, value in metadata.items()})
    return path


def train_tokenizer(cfg: TrainConfig, log=print) -> TrainResult:
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    start = time.perf_counter()
    accelerator = Accelerator(cpu=cfg.cpu)
    set_seed(cfg.seed)
    faces = base_faces(folder=cfg.photos)
    pool = points_to_tokens_input(landmark_sets(cfg.pool, cfg.seed, faces))
    held_out = points_to_tokens_input(landmark_sets(cfg.held_out, cfg.seed + 10_000, faces))
    model = LandmarkTokenizer(cfg.tokenizer_config(), with_decoder=True).train()
    with torch.no_grad():  # data-dependent codebook and EMA state, before DDP wraps the model
        model(pool[: max(cfg.batch, math.ceil(cfg.codebook_size / 68) + 1)])
    initial, _, _ = evaluate(model, held_out)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(cfg))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    generator = torch.Generator().manual_seed(cfg.seed + accelerator.process_index)
    history = []
    for step in range(1, cfg.steps + 1):
        batch = pool[torch.randint(pool.shape[0], (cfg.batch,), generator=generator)].to(accelerator.device)
        out = model(batch)
        accelerator.backward(out.loss)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % cfg.log_every == 0 or step == cfg.steps:
            entry = {"step": step, "recon_px": out.recon_loss.item() * PX_PER_L1,
                     "commit": out.commit_loss.item(), "perplexity": out.perplexity.item()}
            history.append(entry)
            if accelerator.is_main_process:
                log(f"step {step}/{cfg.steps}: recon {entry['recon_px']:.2f} px, commit {entry['commit']:.4f}, "
                    f"batch perplexity {entry['perplexity']:.1f}")
    accelerator.wait_for_everyone()
    trained = accelerator.unwrap_model(model)
    recon, perplexity, used = evaluate(trained, held_out.to(accelerator.device))
    if accelerator.is_main_process:
        meta = {**{key: value for key, value in asdict(cfg).items() if key not in ("out", "photos", "cpu")},
                "format": "lato_landmark_tokenizer", "held_out_recon_px": round(recon, 4),
                "held_out_perplexity": round(perplexity, 2)}
        save_tokenizer(trained, cfg.out, meta)
        log(f"held-out: recon {recon:.2f} px (mean |dx|+|dy| on 512, from {initial:.1f} px untrained), "
            f"perplexity {perplexity:.1f}, {used}/{cfg.codebook_size} codes used -> {cfg.out}")
    return TrainResult(str(cfg.out), recon, perplexity, used, initial, time.perf_counter() - start, history)
