"""Drawing 68 landmarks in the LaTo release's colours (jaw white, brows amber, nose green, eyes red,
lips blue; dots of radius 4 on the 512 canvas, eye and lip outlines closed)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .image import as_rgb_uint8
from .landmarks import FaceLandmarks

WHITE, AMBER, GREEN, RED, BLUE = (255, 255, 255), (255, 200, 0), (0, 255, 0), (255, 0, 0), (0, 0, 255)

# (first, last index, colour, closed outline)
STROKES = (
    (0, 16, WHITE, False),
    (17, 21, AMBER, False),
    (22, 26, AMBER, False),
    (27, 30, GREEN, False),
    (31, 35, GREEN, False),
    (36, 41, RED, True),
    (42, 47, RED, True),
    (48, 59, BLUE, True),
    (60, 67, BLUE, True),
)
REFERENCE_CANVAS = 512
REFERENCE_RADIUS = 4.0


def point_colours() -> list[tuple[int, int, int]]:
    colours = [WHITE] * 68
    for first, last, colour, _ in STROKES:
        for i in range(first, last + 1):
            colours[i] = colour
    return colours


def draw_landmarks(faces: list[FaceLandmarks], image=None, size: tuple[int, int] | None = None,
                   radius: float | None = None, lines: bool = True, numbers: bool = False) -> np.ndarray:
    """An (H, W, 3) uint8 picture of the faces' landmarks over `image`, or over black of `size` (w, h).

    The radius defaults to 4 px per 512 px of the longer side, as the release draws on its 512 canvas.
    Invisible points are drawn as hollow rings so a user can see what the model will leave out.
    """
    if image is not None:
        canvas = Image.fromarray(as_rgb_uint8(image))
    else:
        w, h = size or (faces[0].image_size if faces else (REFERENCE_CANVAS, REFERENCE_CANVAS))
        canvas = Image.new("RGB", (w, h))
    scale = max(canvas.size) / REFERENCE_CANVAS
    r = radius if radius is not None else REFERENCE_RADIUS * scale
    pen = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(8, round(10 * scale))) if numbers else None
    colours = point_colours()
    for face in faces:
        pts, vis = face.points, face.visibility
        if lines:
            for first, last, colour, closed in STROKES:
                idx = [i for i in range(first, last + 1)] + ([first] if closed else [])
                for a, b in zip(idx, idx[1:]):
                    if vis[a] > 0 and vis[b] > 0:
                        pen.line([tuple(pts[a]), tuple(pts[b])], fill=colour, width=max(1, round(scale)))
        for i, (x, y) in enumerate(pts):
            box = (x - r, y - r, x + r, y + r)
            if vis[i] > 0:
                pen.ellipse(box, fill=colours[i])
            else:
                pen.ellipse(box, outline=colours[i], width=max(1, round(scale)))
            if numbers:
                pen.text((x + r + 1, y - r - 1), str(i), fill=(255, 255, 255), font=font, stroke_width=1, stroke_fill=(0, 0, 0))
    return np.array(canvas)   # writable, for torch.from_numpy


def with_caption(picture: np.ndarray, lines: list[str], max_lines: int = 6) -> np.ndarray:
    """(H, W, 3) uint8 with the lines (e.g. a predictor's warnings) printed in a dark band at the bottom, so the
    stock frontend's image preview shows them. No lines: the picture unchanged."""
    lines = [line for line in lines if line][:max_lines]
    if not lines:
        return picture
    canvas = Image.fromarray(np.ascontiguousarray(picture))
    font = ImageFont.load_default()
    pen = ImageDraw.Draw(canvas)
    width = canvas.size[0]
    wrapped = []
    chars = max(8, width // 7)
    for line in lines:
        wrapped += [line[i:i + chars] for i in range(0, len(line), chars)]
    band = 4 + 12 * len(wrapped)
    pen.rectangle([0, canvas.size[1] - band, width, canvas.size[1]], fill=(0, 0, 0))
    for k, text in enumerate(wrapped):
        pen.text((4, canvas.size[1] - band + 2 + 12 * k), text, fill=(255, 220, 0), font=font)
    return np.array(canvas)   # writable, for torch.from_numpy
