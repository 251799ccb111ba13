"""(image, region mask, local caption) triples for training CA-Edit, LAMask-Caption style.

Builder: photos -> 68 landmarks (lato_core) -> optional square face crop -> one mask per region (the paper's coarse
masks: convex hull and/or dilation) -> a caption per (image, region) from, in order of preference,
  1. a user file (JSONL lines {"image": name, "region": r, "caption": text}, or CSV image,region,caption),
  2. per-image attributes (CelebA's list_attr_celeba.txt layout, or JSONL {"image": name, "attributes": {...}})
     through ATTRIBUTE_PHRASES, e.g. Bushy_Eyebrows -> "bushy eyebrows",
  3. a neutral template ("natural eyebrows"): never invents an attribute the photo may not have.
Writes <out>/masks/*.png and <out>/manifest.jsonl ({"image", "mask", "region", "caption"}, paths relative to out).
Training reads the manifest with CAEditDataset (random extra dilation = the paper's mask augmentation).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
# region -> (landmark regions of lato_core.face.regions, noun for captions)
REGIONS = {"brows": ("left_brow, right_brow", "eyebrows"), "eyes": ("left_eye, right_eye", "eyes"),
           "lips": ("upper_lip, lower_lip", "lips"), "mouth": ("mouth", "mouth"), "nose": ("nose", "nose")}
NEUTRAL = {"brows": "natural eyebrows", "eyes": "natural eyes", "lips": "natural lips", "mouth": "a natural mouth",
           "nose": "a natural nose"}
# CelebA attribute -> (region, phrase when present)
ATTRIBUTE_PHRASES = {
    "Bushy_Eyebrows": ("brows", "bushy"), "Arched_Eyebrows": ("brows", "arched"),
    "Narrow_Eyes": ("eyes", "narrow"), "Bags_Under_Eyes": ("eyes", "tired"),
    "Big_Lips": ("lips", "full"), "Wearing_Lipstick": ("lips", "red"),
    "Smiling": ("mouth", "smiling"), "Mouth_Slightly_Open": ("mouth", "slightly open"),
    "Big_Nose": ("nose", "big"), "Pointy_Nose": ("nose", "pointy")}


def caption_from_attributes(region: str, attributes: dict[str, bool]) -> str | None:
    """'bushy arched eyebrows' from the attributes that are present, None when none speaks about the region."""
    words = [phrase for name, (where, phrase) in ATTRIBUTE_PHRASES.items() if where == region and attributes.get(name)]
    if not words:
        return None
    return f"{' '.join(words)} {REGIONS[region][1]}"


def read_captions(path: str | Path) -> dict[tuple[str, str], str]:
    """User captions: JSONL {"image", "region", "caption"} or CSV with those columns -> {(image name, region): text}."""
    path = Path(path)
    rows = ([json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.suffix == ".jsonl"
            else list(csv.DictReader(path.open())))
    return {(Path(r["image"]).name, r["region"]): r["caption"] for r in rows}


def read_attributes(path: str | Path) -> dict[str, dict[str, bool]]:
    """CelebA list_attr_celeba.txt (count line, header line, 'name v1 v2 ...' with 1 / -1) or JSONL
    {"image", "attributes": {name: bool}} -> {image name: {attribute: present}}."""
    path = Path(path)
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        return {Path(r["image"]).name: {k: bool(v) for k, v in r["attributes"].items()} for r in map(json.loads, lines)}
    header = lines[1].split() if lines[0].strip().isdigit() else lines[0].split()
    body = lines[2:] if lines[0].strip().isdigit() else lines[1:]
    return {parts[0]: {name: int(v) > 0 for name, v in zip(header, parts[1:])} for parts in (l.split() for l in body)}


def build_dataset(images: str | Path, out: str | Path, regions: list[str] = ("brows", "eyes", "lips"),
                  captions: str | Path | None = None, attributes: str | Path | None = None, crop: int = 512,
                  grow: float = 8.0, hull: bool = True, detect_backend: str = "dlib_hog") -> Path:
    """Writes the masks and manifest.jsonl; returns the manifest path. Photos without a face are skipped."""
    from lato_core.face.crop import crop_faces
    from lato_core.face.detect import DetectOptions, detect_faces
    from lato_core.face.regions import parse_region_names, region_mask

    unknown = [r for r in regions if r not in REGIONS]
    if unknown:
        raise ValueError(f"unknown regions {unknown}; known: {', '.join(REGIONS)}")
    out = Path(out)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    user = read_captions(captions) if captions else {}
    attrs = read_attributes(attributes) if attributes else {}
    records = []
    for path in sorted(p for p in Path(images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        faces = detect_faces(rgb, DetectOptions(detect_backend))
        if not faces:
            continue
        image_path = path.resolve()
        face = faces[0]
        if crop:
            crops, _, mapped = crop_faces(torch.from_numpy(rgb.copy()).float()[None] / 255, [face], crop)
            rgb, face = (crops[0].numpy() * 255 + 0.5).astype(np.uint8), mapped[0]
            image_path = out / "images" / f"{path.stem}.png"
            Image.fromarray(rgb).save(image_path)
        for region in regions:
            mask = region_mask([face], parse_region_names(REGIONS[region][0]), grow=grow, hull=hull)
            mask_path = out / "masks" / f"{path.stem}_{region}.png"
            Image.fromarray((mask * 255).astype(np.uint8)).save(mask_path)
            caption = (user.get((path.name, region)) or caption_from_attributes(region, attrs.get(path.name, {}))
                       or NEUTRAL[region])
            records.append({"image": str(Path(image_path).resolve()), "mask": str(mask_path.relative_to(out)),
                            "region": region, "caption": caption})
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    return manifest


def read_manifest(path: str | Path) -> list[dict]:
    path = Path(path)
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:
        for key in ("image", "mask"):
            if not Path(row[key]).is_absolute():
                row[key] = str(path.parent / row[key])
        missing = [k for k in ("image", "mask", "caption") if k not in row]
        if missing:
            raise ValueError(f"{path}: a manifest line lacks {missing}")
    return rows


def augment_mask(mask: torch.Tensor, max_grow: int, generator: torch.Generator) -> torch.Tensor:
    """Random extra dilation by 0..max_grow pixels (square structuring element). (1, H, W) -> same."""
    grow = int(torch.randint(0, max_grow + 1, (1,), generator=generator)) if max_grow > 0 else 0
    return F.max_pool2d(mask[None], 2 * grow + 1, stride=1, padding=grow)[0] if grow else mask


class CAEditDataset(torch.utils.data.Dataset):
    """Manifest rows -> {"pixels": (3, R, R) in -1..1, "mask": (1, R, R) 0/1 (1 = edit), "caption": str,
    "clip_pixels": CLIP processor output (3, S, S) when a processor is given}. Square centre crop, then resize."""

    def __init__(self, manifest: str | Path | list[dict], resolution: int = 512, clip_processor=None,
                 max_mask_grow: int = 0, seed: int = 0):
        self.rows = read_manifest(manifest) if not isinstance(manifest, list) else manifest
        self.resolution, self.clip_processor, self.max_mask_grow = resolution, clip_processor, max_mask_grow
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.rows)

    def _square(self, image: Image.Image, resample) -> Image.Image:
        w, h = image.size
        side = min(w, h)
        box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
        return image.crop(box).resize((self.resolution, self.resolution), resample)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        image = self._square(Image.open(row["image"]).convert("RGB"), Image.BICUBIC)
        mask = self._square(Image.open(row["mask"]).convert("L"), Image.BILINEAR)
        pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 127.5 - 1.0
        m = (torch.from_numpy(np.asarray(mask).copy()).float()[None] / 255.0 > 0.5).float()
        item = {"pixels": pixels, "mask": augment_mask(m, self.max_mask_grow, self.generator), "caption": row["caption"]}
        if self.clip_processor is not None:
            item["clip_pixels"] = self.clip_processor(images=image, return_tensors="pt")["pixel_values"][0]
        return item


def synthetic_manifest(out: str | Path, count: int = 4, size: int = 64, seed: int = 0) -> Path:
    """Tiny synthetic triples for smoke tests: smooth colour fields with a darker ellipse ("brow") under the mask."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    rows = []
    for i in range(count):
        base = rng.uniform(0.3, 0.8, 3)
        img = base + 0.2 * np.stack([xx, yy, xx * yy], -1)
        cy, cx = rng.uniform(0.3, 0.7, 2)
        blob = ((yy - cy) / 0.12) ** 2 + ((xx - cx) / 0.25) ** 2 <= 1.0
        img[blob] *= 0.4
        mask = ((yy - cy) / 0.2) ** 2 + ((xx - cx) / 0.35) ** 2 <= 1.0
        Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8)).save(out / "images" / f"{i}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(out / "images" / f"{i}_mask.png")
        rows.append({"image": f"images/{i}.png", "mask": f"images/{i}_mask.png", "region": "brows",
                     "caption": "thick dark eyebrows"})
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest
