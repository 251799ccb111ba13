"""Training the CA-Edit adapter (paper Algorithm 1): CA2 projections + score predictors + reference net, on
(image, region mask, local caption) triples, with the base SD1.5 (inpainting) UNet, VAE and text encoder frozen.

diffusers for the models, accelerate for devices / DDP / mixed precision / gradient accumulation
(`accelerate launch -m caedit_core train ...` scales to several GPUs), peft for an optional LoRA on the reference
net (merged into plain weights when saving, so the file never needs peft). Loss: Eq. 1 (epsilon or v target,
whatever the scheduler predicts). CFG drops (p = 0.05 each, IP-Adapter): text -> "", image -> zero tokens.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .ca2 import CA2Call, pooled_text_token
from .checkpoint import CAEditAdapter, adapter_config, load_adapter, save_adapter
from .dataset import CAEditDataset
from .refnet import CallHolder, ReferenceNet, attn2_layers, masked_condition, set_ca2_processors

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1",
                "conv2", "time_emb_proj"]


@dataclass
class TrainConfig:
    pretrained: str                # diffusers folder: unet/ vae/ text_encoder/ tokenizer/ scheduler/
    image_encoder: str             # transformers CLIP vision folder with its preprocessor_config.json
    data: str                      # manifest.jsonl from `python -m caedit_core dataset`
    output: str                    # final .safetensors; step checkpoints are written beside it
    resolution: int = 512
    batch_size: int = 4
    learning_rate: float = 1e-4
    max_steps: int = 10000
    gradient_accumulation: int = 1
    mixed_precision: str = "no"    # no | fp16 | bf16
    placement: str = "refnet"      # refnet: CA2 inside the reference net (paper); unet: in the main UNet
    refnet: bool = True
    refnet_lora_rank: int = 0      # 0 trains the reference net fully (BrushNet); > 0: peft LoRA of that rank
    clip_tokens: str = "penultimate"
    score_hidden_dim: int = 256
    drop_text: float = 0.05
    drop_image: float = 0.05
    max_mask_grow: int = 16        # random extra dilation of the masks, pixels
    save_every: int = 1000
    eval_every: int = 0            # 0: evaluate only at the start and the end
    eval_samples: int = 4
    log_every: int = 10
    num_workers: int = 2
    seed: int = 0
    resume: str = ""


class CAEditTrainModel(nn.Module):
    """Frozen UNet + trainable adapter; forward = the noise prediction of Eq. 1 with c = {f_vis, f_txt, M}."""

    def __init__(self, unet, adapter: CAEditAdapter):
        super().__init__()
        self.unet, self.adapter, self.holder = unet, adapter, CallHolder()
        self.in_refnet = adapter.config["placement"] == "refnet"
        if not self.in_refnet:
            set_ca2_processors(unet, adapter.layers(), self.holder)

    def forward(self, noisy, timesteps, text_states, image_tokens, mask, masked_latent):
        call = CA2Call(image_tokens, pooled_text_token(text_states), mask[:, 0], tuple(noisy.shape[-2:]))
        down = mid = None
        if self.adapter.refnet is not None:
            down, mid = self.adapter.refnet(noisy, timesteps, text_states, masked_condition(masked_latent, mask),
                                            call if self.in_refnet else None)
        self.holder.call = None if self.in_refnet else call
        try:
            x = torch.cat([noisy, mask.to(noisy), masked_latent], 1) if self.unet.config.in_channels == 9 else noisy
            return self.unet(x, timesteps, text_states, down_block_additional_residuals=down,
                             mid_block_additional_residual=mid).sample
        finally:
            self.holder.call = None


def load_frozen(cfg: TrainConfig, device, dtype) -> dict:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPImageProcessor, CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

    root = Path(cfg.pretrained)
    parts = {"unet": UNet2DConditionModel.from_pretrained(root / "unet"), "vae": AutoencoderKL.from_pretrained(root / "vae"),
             "text_encoder": CLIPTextModel.from_pretrained(root / "text_encoder"),
             "image_encoder": CLIPVisionModelWithProjection.from_pretrained(cfg.image_encoder)}
    for model in parts.values():
        model.requires_grad_(False).eval().to(device, dtype)
    parts["tokenizer"] = CLIPTokenizer.from_pretrained(root / "tokenizer")
    parts["scheduler"] = DDPMScheduler.from_pretrained(root / "scheduler")
    parts["processor"] = CLIPImageProcessor.from_pretrained(cfg.image_encoder)
    return parts


def new_adapter(unet, cfg: TrainConfig, clip_dim: int) -> CAEditAdapter:
    if cfg.placement == "refnet" and not cfg.refnet:
        raise ValueError("placement 'refnet' needs the reference net (drop --no-refnet or use --placement unet)")
    if cfg.resume:
        adapter = load_adapter(cfg.resume, torch.float32).requires_grad_(True)
        if adapter.config["placement"] != cfg.placement:
            raise ValueError(f"{cfg.resume} has placement {adapter.config['placement']}, not {cfg.placement}")
        return adapter.train()
    refnet = ReferenceNet.from_unet(unet).float() if cfg.refnet else None
    layers = attn2_layers(refnet if cfg.placement == "refnet" else unet)
    config = adapter_config(layers, clip_dim, unet.config.cross_attention_dim, unet.config.layers_per_block,
                            cfg.placement, refnet.unet_config if refnet is not None else None, cfg.clip_tokens,
                            cfg.score_hidden_dim)
    return CAEditAdapter(config, refnet).float().requires_grad_(True).train()


def add_refnet_lora(adapter: CAEditAdapter, rank: int) -> None:
    """Swap the reference net for a peft model: LoRA on its copied layers, conv_in and the zero convs trained fully."""
    from peft import LoraConfig, get_peft_model

    net = adapter.refnet
    keep = ["conv_in", "mid_zero_conv"] + [f"down_zero_convs.{i}" for i in range(len(net.down_zero_convs))]
    adapter.refnet = get_peft_model(net, LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS,
                                                    modules_to_save=keep))


def export_tensors(adapter: CAEditAdapter) -> dict[str, torch.Tensor]:
    """The adapter's file tensors, with a peft reference net merged back into plain weights."""
    net = adapter.refnet
    if net is None or isinstance(net, ReferenceNet):
        return adapter.file_state_dict()
    merged = copy.deepcopy(net).merge_and_unload()
    out = {k: v for k, v in adapter.file_state_dict().items() if k.startswith("ca2.")}
    out.update({f"refnet.{k}": v for k, v in merged.state_dict().items()})
    return out


@torch.no_grad()
def encode_batch(batch: dict, parts: dict, cfg: TrainConfig, generator: torch.Generator | None = None) -> dict:
    """Pixels, masks, captions -> latents, masked latents, latent masks, text states, CLIP image tokens (dropped
    with the configured probabilities when a generator is given)."""
    vae, device = parts["vae"], next(parts["vae"].parameters()).device
    dtype = next(parts["vae"].parameters()).dtype
    pixels, mask = batch["pixels"].to(device, dtype), batch["mask"].to(device, dtype)
    scale = vae.config.scaling_factor
    latents = vae.encode(pixels).latent_dist.sample(generator=generator) * scale
    masked = vae.encode(pixels * (1 - mask.round())).latent_dist.mode() * scale  # masked pixels -> 0 = mid grey
    captions = list(batch["caption"])
    keep_image = torch.ones(len(captions), device=device, dtype=dtype)
    if generator is not None:
        drop_t = torch.rand(len(captions), generator=generator) < cfg.drop_text
        drop_i = torch.rand(len(captions), generator=generator) < cfg.drop_image
        captions = ["" if d else c for c, d in zip(captions, drop_t.tolist())]
        keep_image = (~drop_i).to(device, dtype)
    length = min(parts["tokenizer"].model_max_length, parts["text_encoder"].config.max_position_embeddings)
    tokens = parts["tokenizer"](captions, padding="max_length", max_length=length, truncation=True,
                                return_tensors="pt").input_ids.to(device)
    text = parts["text_encoder"](tokens)[0]
    out = parts["image_encoder"](batch["clip_pixels"].to(device, dtype), output_hidden_states=True)
    image = out.hidden_states[-2] if cfg.clip_tokens == "penultimate" else out.last_hidden_state
    mask_lat = F.adaptive_avg_pool2d(mask, latents.shape[-2:])
    return {"latents": latents, "masked": masked, "mask": mask_lat, "text": text,
            "image": image * keep_image[:, None, None]}


def diffusion_loss(model, enc: dict, scheduler, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    noisy = scheduler.add_noise(enc["latents"], noise, timesteps)
    target = noise if scheduler.config.prediction_type == "epsilon" else scheduler.get_velocity(enc["latents"], noise, timesteps)
    pred = model(noisy, timesteps, enc["text"], enc["image"], enc["mask"], enc["masked"])
    return F.mse_loss(pred.float(), target.float())


def fixed_eval_loss(model, batches: list[dict], scheduler, seed: int = 1234) -> float:
    """Loss on fixed encoded batches with fixed noise and timesteps spread over the schedule: comparable over time."""
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    with torch.no_grad():
        for enc in batches:
            n = enc["latents"].shape[0]
            noise = torch.randn(enc["latents"].shape, generator=g).to(enc["latents"])
            steps = scheduler.config.num_train_timesteps
            t = ((torch.arange(n) + 0.5) / n * steps).long().clamp(max=steps - 1).to(enc["latents"].device)
            total += float(diffusion_loss(model, enc, scheduler, noise, t))
    return total / max(len(batches), 1)


def train(cfg: TrainConfig) -> dict:
    """Runs training; returns {"losses", "eval": [(step, loss)], "output": path} (on the main process)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    accelerator = Accelerator(gradient_accumulation_steps=cfg.gradient_accumulation, mixed_precision=cfg.mixed_precision)
    set_seed(cfg.seed)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.mixed_precision, torch.float32)
    parts = load_frozen(cfg, accelerator.device, weight_dtype)
    adapter = new_adapter(parts["unet"], cfg, parts["image_encoder"].config.hidden_size)
    if cfg.refnet_lora_rank > 0 and adapter.refnet is not None:
        add_refnet_lora(adapter, cfg.refnet_lora_rank)
    model = CAEditTrainModel(parts["unet"], adapter.to(accelerator.device))
    dataset = CAEditDataset(cfg.data, cfg.resolution, parts["processor"], cfg.max_mask_grow, cfg.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers,
                                         drop_last=len(dataset) >= cfg.batch_size)
    params = [p for p in adapter.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=1e-2)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    eval_rows = torch.utils.data.Subset(CAEditDataset(cfg.data, cfg.resolution, parts["processor"]),
                                        range(min(cfg.eval_samples, len(dataset))))
    eval_batches = [encode_batch(b, parts, cfg) for b in torch.utils.data.DataLoader(eval_rows, batch_size=cfg.batch_size)]
    generator = torch.Generator().manual_seed(cfg.seed + accelerator.process_index)
    scheduler, output = parts["scheduler"], Path(cfg.output)
    history = {"losses": [], "eval": [(0, fixed_eval_loss(model, eval_batches, scheduler))], "output": str(output)}
    accelerator.print(f"CA-Edit training: {sum(p.numel() for p in params) / 1e6:.2f} M trainable parameters, "
                      f"{len(dataset)} samples, eval loss {history['eval'][0][1]:.4f}")
    step = 0
    for _ in range(math.ceil(cfg.max_steps * cfg.gradient_accumulation / max(len(loader), 1)) + 1):
        for batch in loader:
            with accelerator.accumulate(model):
                enc = encode_batch(batch, parts, cfg, generator)
                noise = torch.randn(enc["latents"].shape, generator=generator).to(enc["latents"])
                t = torch.randint(0, scheduler.config.num_train_timesteps, (noise.shape[0],), generator=generator)
                loss = diffusion_loss(model, enc, scheduler, noise, t.to(noise.device))
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            step += 1
            history["losses"].append(float(accelerator.gather(loss.detach()[None]).mean()))
            if cfg.log_every and step % cfg.log_every == 0:
                accelerator.print(f"step {step}: loss {sum(history['losses'][-cfg.log_every:]) / cfg.log_every:.4f}")
            if cfg.eval_every and step % cfg.eval_every == 0:
                history["eval"].append((step, fixed_eval_loss(model, eval_batches, scheduler)))
            if cfg.save_every and step % cfg.save_every == 0 and step < cfg.max_steps:
                _save(accelerator, model, cfg, output.with_name(f"{output.stem}-step{step}{output.suffix}"), step)
            if step >= cfg.max_steps:
                break
        if step >= cfg.max_steps:
            break
    if not cfg.eval_every or step % cfg.eval_every:
        history["eval"].append((step, fixed_eval_loss(model, eval_batches, scheduler)))
    _save(accelerator, model, cfg, output, step)
    accelerator.print(f"saved {output} after {step} steps; eval loss {history['eval'][0][1]:.4f} -> {history['eval'][-1][1]:.4f}")
    return history


def _save(accelerator, model, cfg: TrainConfig, path: Path, step: int) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        adapter = accelerator.unwrap_model(model).adapter
        meta = {"steps": step, "base_model": Path(cfg.pretrained).name, "train_config": json.dumps(asdict(cfg))}
        save_adapter(adapter, path, extra_metadata=meta, tensors=export_tensors(adapter))
