"""Region masks from a user-supplied face-parsing model, selected by class *name* (never by index).

The two common 19-class CelebAMask-HQ parsers order their labels differently (each repository's own label list):
  BiSeNet (face-parsing.PyTorch)       : BISENET_LABELS
  SegFormer (jonathandinu/face-parsing): SEGFORMER_LABELS
A SegFormer folder (config.json with id2label, weights, preprocessor_config.json) loads through transformers;
BiSeNet checkpoints need their own network code, so for them pass the label map (argmax) with order "bisenet".
Left/right follow each model's own labels (l_brow, r_brow, ...); the aliases below only group pairs.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

BISENET_LABELS = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
                  "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat")
SEGFORMER_LABELS = ("background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
                    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth")
LABEL_ORDERS = {"bisenet": BISENET_LABELS, "segformer": SEGFORMER_LABELS}
ALIASES = {"brows": ("l_brow", "r_brow"), "eyebrows": ("l_brow", "r_brow"), "eyes": ("l_eye", "r_eye"),
           "lips": ("u_lip", "l_lip"), "upper_lip": ("u_lip",), "lower_lip": ("l_lip",), "ears": ("l_ear", "r_ear"),
           "glasses": ("eye_g",), "earrings": ("ear_r",), "necklace": ("neck_l",), "bg": ("background",),
           "face": ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "mouth", "u_lip", "l_lip")}


def label_names(order: str | tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(order, tuple):
        return order
    if order not in LABEL_ORDERS:
        raise ValueError(f"unknown label order {order!r}; known: {', '.join(LABEL_ORDERS)}")
    return LABEL_ORDERS[order]


def order_from_id2label(id2label: dict) -> tuple[str, ...]:
    """A model config's id2label ({0: "background", ...}) -> label tuple; the names must be the CelebAMask-HQ ones."""
    names = tuple(str(id2label[i] if i in id2label else id2label[str(i)]).lower() for i in range(len(id2label)))
    unknown = [n for n in names if n not in BISENET_LABELS]
    if unknown:
        raise ValueError(f"id2label names {unknown} are not CelebAMask-HQ face-parsing classes")
    return names


def class_indices(regions: str, order: str | tuple[str, ...]) -> list[int]:
    """'brows, nose' -> label indices in that order's numbering."""
    names = label_names(order)
    out = []
    for raw in regions.replace(";", ",").replace("+", ",").split(","):
        key = raw.strip().lower().replace(" ", "_").replace("-", "_")
        if not key:
            continue
        for name in ALIASES.get(key, (key,)):
            if name not in names:
                raise ValueError(f"Unknown face-parsing class {raw.strip()!r}. Classes: {', '.join(names)}; "
                                 f"groups: {', '.join(ALIASES)}.")
            out.append(names.index(name))
    if not out:
        raise ValueError("Name at least one face-parsing class, e.g. 'brows' or 'u_lip, l_lip'.")
    return out


def mask_from_labels(label_map: torch.Tensor, regions: str, order: str | tuple[str, ...]) -> torch.Tensor:
    """Integer label map (B, H, W) or (H, W) -> float MASK of the named classes, 1 = edit."""
    indices = torch.tensor(class_indices(regions, order), device=label_map.device)
    return torch.isin(label_map.long(), indices).float()


def load_segformer(folder: str | Path, device: str | torch.device = "cpu"):
    """(model, processor, label order) from a local SegFormer face-parsing folder; no network."""
    from transformers import AutoImageProcessor, SegformerForSemanticSegmentation

    folder = Path(folder)
    model = SegformerForSemanticSegmentation.from_pretrained(folder, local_files_only=True).eval().to(device)
    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    return model, processor, order_from_id2label(model.config.id2label)


@torch.no_grad()
def segformer_label_map(model, processor, images: torch.Tensor) -> torch.Tensor:
    """IMAGE (B, H, W, C) 0..1 -> label map (B, H, W) at the image size (logits upsampled bilinearly)."""
    pixels = [(im[..., :3].clamp(0, 1).cpu().numpy() * 255).round().astype("uint8") for im in images]
    inputs = processor(images=pixels, return_tensors="pt")
    device = next(model.parameters()).device
    logits = model(pixel_values=inputs["pixel_values"].to(device)).logits
    logits = F.interpolate(logits.float(), size=images.shape[1:3], mode="bilinear", align_corners=False)
    return logits.argmax(dim=1).cpu()


_LOADED: dict = {}  # the one parser kept in memory: {folder: (model, processor, order)}


def parse_regions(folder: str | Path, images: torch.Tensor, regions: str, grow: int = 0,
                  device: str | torch.device = "cpu") -> torch.Tensor:
    """MASK (B, H, W) of the named classes on IMAGE (B, H, W, C), dilated by `grow` pixels. The last parser used
    stays loaded; another folder replaces it."""
    key = str(folder)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load_segformer(folder, device)
    model, processor, order = _LOADED[key]
    masks = mask_from_labels(segformer_label_map(model, processor, images), regions, order)
    if grow:
        masks = F.max_pool2d(masks[:, None], 2 * grow + 1, stride=1, padding=grow)[:, 0]
    return masks
