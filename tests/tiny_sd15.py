"""The one tiny SD1.5-shaped model family the CA-Edit tests use, in the layouts the real loaders read.

- `tiny_unet()`: a diffusers UNet2DConditionModel with SD1.5's detection-relevant shape (model_channels 320,
  context 768, 8 heads, 1x1 conv transformers, in_channels 9 = inpainting) but one level and one res block.
- `write_checkpoint()`: the single-file layout CheckpointLoaderSimple detects as SD15: that UNet under
  model.diffusion_model.* (LDM names, via ComfyUI's own diffusers->LDM key map), a random CLIP-L text encoder
  (ComfyUI builds SD1's text model from a fixed config, so it must be full size; fp16, ~250 MB) and a TAESD VAE
  (the smallest VAE the loader accepts).
- `write_clip_vision()`: a random ViT-L/14 vision tower (the smallest layout CLIPVisionLoader detects; ~600 MB fp16).
- `write_diffusers_pipeline()`: a small diffusers folder (unet, vae, text_encoder, tokenizer, scheduler) plus an
  image encoder folder for the training entry point.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

TINY_UNET = dict(sample_size=8, in_channels=9, out_channels=4, block_out_channels=(320,), layers_per_block=1,
                 down_block_types=("CrossAttnDownBlock2D",), up_block_types=("CrossAttnUpBlock2D",),
                 cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32)
VITL_PATCH, VITL_SIZE = 14, 224


def import_comfy():
    """Import the installed ComfyUI's `comfy` package in this process (CPU), for key maps and the LDM UNet."""
    from scripts.comfy_server import comfyui_root

    root = str(comfyui_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    import comfy.options
    comfy.options.enable_args_parsing(False)
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    import comfy.utils  # noqa: F401
    return comfy


def tiny_unet(seed: int = 0, **overrides):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**{**TINY_UNET, **overrides}).eval()


def ldm_unet_config(unet) -> dict:
    """The LDM-side config ComfyUI's unet_to_diffusers needs, for a diffusers UNet with uniform blocks."""
    cfg = unet.config
    levels, per = len(cfg.block_out_channels), cfg.layers_per_block
    attn = [int(t.startswith("CrossAttn")) for t in cfg.down_block_types]
    return {"num_res_blocks": [per] * levels, "channel_mult": [c // cfg.block_out_channels[0] for c in cfg.block_out_channels],
            "transformer_depth": [a for a in attn for _ in range(per)],
            "transformer_depth_output": [a for a in attn for _ in range(per + 1)], "transformer_depth_middle": 1}


def unet_to_ldm(unet) -> dict[str, torch.Tensor]:
    comfy = import_comfy()
    key_map = comfy.utils.unet_to_diffusers(ldm_unet_config(unet))
    sd = unet.state_dict()
    missing = [k for k in sd if k not in key_map]
    if missing:
        raise KeyError(f"no LDM name for {missing[:5]}")
    return {key_map[k]: v for k, v in sd.items()}


def _random(shapes: dict[str, tuple], seed: int, dtype=torch.float16, std: float = 0.02) -> dict[str, torch.Tensor]:
    """Transformer-style init: norms 1/0, biases 0, everything else N(0, std), cut from one shuffled pool of
    normals (hundreds of millions of randn draws would dominate the test time)."""
    g = torch.Generator().manual_seed(seed)
    pool = (torch.randn(1 << 20, generator=g) * std).to(dtype).numpy()
    out = {}
    for name, shape in shapes.items():
        if "norm" in name and name.endswith("weight"):
            out[name] = torch.ones(shape, dtype=dtype)
        elif name.endswith("bias") or "position_ids" in name:
            out[name] = torch.zeros(shape, dtype=dtype)
        else:
            start = int(torch.randint(0, pool.size, (1,), generator=g))
            out[name] = torch.from_numpy(np.resize(np.roll(pool, -start), shape))
    return out


def _meta_shapes(model_cls, config) -> dict[str, tuple]:
    with torch.device("meta"):
        model = model_cls(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if "position_ids" not in k}


def clip_text_state_dict(seed: int = 1) -> dict[str, torch.Tensor]:
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                            num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu")
    return _random(_meta_shapes(CLIPTextModel, config), seed)


def taesd_state_dict(seed: int = 2) -> dict[str, torch.Tensor]:
    comfy = import_comfy()
    from comfy.taesd.taesd import TAESD

    model = TAESD()
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, p in model.state_dict().items():
        if p.ndim == 4:  # He init keeps activations O(1) through the ReLU blocks
            fan_in = p.shape[1] * p.shape[2] * p.shape[3]
            out[name] = torch.randn(p.shape, generator=g) * (2.0 / fan_in) ** 0.5 * 0.5
        elif name.endswith("bias"):
            out[name] = torch.zeros(p.shape)
        else:
            out[name] = torch.ones(p.shape) if name == "vae_scale" else torch.zeros(p.shape)
    del comfy
    return out


def write_checkpoint(path: str | Path, seed: int = 0, in_channels: int = 9) -> Path:
    """Single-file SD1.5-layout checkpoint (UNet + CLIP-L text + TAESD) that CheckpointLoaderSimple loads."""
    path = Path(path)
    unet = tiny_unet(seed, in_channels=in_channels)
    sd = {f"model.diffusion_model.{k}": v.to(torch.float16).contiguous() for k, v in unet_to_ldm(unet).items()}
    sd.update({f"cond_stage_model.transformer.{k}": v for k, v in clip_text_state_dict(seed + 1).items()})
    sd.update({f"first_stage_model.{k}": v.contiguous() for k, v in taesd_state_dict(seed + 2).items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    return path


def write_clip_vision(path: str | Path, seed: int = 3) -> Path:
    """Random ViT-L/14 vision tower in the transformers layout CLIPVisionLoader detects (24 layers, width 1024)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=VITL_SIZE, patch_size=VITL_PATCH, projection_dim=768, hidden_act="quick_gelu")
    sd = _random(_meta_shapes(CLIPVisionModelWithProjection, config), seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    return path


def write_diffusers_pipeline(folder: str | Path, seed: int = 0, clip_dim: int = 32, **unet_overrides) -> dict:
    """A small diffusers SD layout for the trainer: unet/, vae/ (AutoencoderKL, factor 8), text_encoder/ (1 layer),
    tokenizer/ (ComfyUI's bundled CLIP BPE files), scheduler/, and image_encoder/
    (a tiny CLIP vision tower with its processor). The text width follows the UNet's cross_attention_dim.
    Returns the folder paths."""
    from diffusers import AutoencoderKL, DDPMScheduler
    from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPTokenizer, CLIPVisionConfig,
                              CLIPVisionModelWithProjection)

    from scripts.comfy_server import comfyui_root

    folder = Path(folder)
    unet = tiny_unet(seed, **unet_overrides)
    unet.save_pretrained(folder / "unet")
    torch.manual_seed(seed + 1)
    AutoencoderKL(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
                  up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, latent_channels=4,
                  norm_num_groups=4, sample_size=32).save_pretrained(folder / "vae")
    CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=unet.config.cross_attention_dim, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=4, max_position_embeddings=77)).save_pretrained(folder / "text_encoder")
    tok_src = comfyui_root() / "comfy" / "sd1_tokenizer"
    (folder / "tokenizer").mkdir(parents=True, exist_ok=True)
    for name in ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"):
        if (tok_src / name).is_file():
            shutil.copyfile(tok_src / name, folder / "tokenizer" / name)
    CLIPTokenizer.from_pretrained(folder / "tokenizer")  # fail here, not in the trainer
    DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                  num_train_timesteps=1000).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionInpaintPipeline"}))
    image_encoder = folder / "image_encoder"
    torch.manual_seed(seed + 2)
    CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=clip_dim, intermediate_size=64, num_hidden_layers=2,
                                                   num_attention_heads=4, image_size=32, patch_size=8,
                                                   projection_dim=32)).save_pretrained(image_encoder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(image_encoder)
    return {"pretrained": folder, "image_encoder": image_encoder}


def tiny_adapter(seed: int = 0, placement: str = "unet", refnet: bool = True, clip_dim: int = 1024,
                 residual_scale: float = 0.0, unet=None):
    """A random CA-Edit adapter for tiny_unet(seed) (the checkpoint's UNet): CA2 layers for every cross-attention
    layer of the placement's network, the reference net copied from the UNet. residual_scale > 0 replaces the
    zero convs with small random ones, so the reference-net path changes the output."""
    from caedit_core.checkpoint import CAEditAdapter, adapter_config
    from caedit_core.refnet import ReferenceNet, attn2_layers

    unet = unet if unet is not None else tiny_unet(seed)
    net = ReferenceNet.from_unet(unet) if refnet else None
    layers = attn2_layers(net if placement == "refnet" else unet)
    config = adapter_config(layers, clip_dim, unet.config.cross_attention_dim, unet.config.layers_per_block, placement,
                            net.unet_config if net is not None else None, score_hidden_dim=32)
    torch.manual_seed(seed + 10)
    adapter = CAEditAdapter(config, net)
    if net is not None and residual_scale:
        with torch.no_grad():
            for conv in [*net.down_zero_convs, net.mid_zero_conv]:
                conv.weight.normal_(0, residual_scale)
    return adapter


def pack_node_module(name: str):
    """nodes/<name>.py of this pack inside a ComfyUI process, imported as the pack's own package (ComfyUI's
    top-level `nodes` module shadows the pack's `nodes` folder there)."""
    import importlib
    import importlib.util

    from scripts.comfy_server import PACK_DIR

    import_comfy()
    package = "face_edit_pack"
    if package not in sys.modules:
        spec = importlib.util.spec_from_file_location(package, PACK_DIR / "__init__.py",
                                                      submodule_search_locations=[str(PACK_DIR)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{package}.nodes.{name}")


def comfy_unet(seed: int = 0, inference: bool = True, **overrides):
    """tiny_unet() as ComfyUI's own UNetModel (LDM weights via its key map), created under inference_mode as
    ComfyUI's loaders do unless inference=False."""
    import_comfy()
    import comfy.model_detection
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    ldm = unet_to_ldm(tiny_unet(seed, **overrides))
    config = comfy.model_detection.detect_unet_config(ldm, "")
    config.update(num_heads=8, num_head_channels=-1)
    with torch.inference_mode(inference):
        model = UNetModel(**config, operations=comfy.ops.disable_weight_init)
        model.load_state_dict(ldm, strict=True)
    return model.eval()


def cfg_denoiser(unet, concat: torch.Tensor, context: torch.Tensor, options: dict, cfg: float = 7.5):
    """predict(z, sigma) -> CFG denoised latent of an eps inpainting UNet (k-diffusion scaling), cond + uncond in
    one batch as ComfyUI runs them; concat (1, 5, h, w) = [mask, masked latent], context (2, 77, C) = [cond, uncond]."""
    def predict(z, sigma):
        s = sigma.reshape(-1, 1, 1, 1)
        zin = torch.cat([z, concat], 1).repeat(2, 1, 1, 1) / (1 + s ** 2).sqrt()
        eps_c, eps_u = unet(zin, timesteps=torch.full((2,), 500.0), context=context, transformer_options=options).chunk(2)
        return z - s * (eps_u + cfg * (eps_c - eps_u))
    return predict
