"""The request a VLM landmark predictor receives, and the answer layout it is asked for.

Layout (the released predictor's structure, our own wording): one user turn made of a text, the source
photo, and a second text holding the edit request and the output format. The model reasons inside
<think>...</think>, then puts one ```json fenced object inside <answer>...</answer> with four groups of
[x, y] integer pairs on the canvas (default 512 x 512, 0..511, origin top-left).

Source landmarks as context: OFF by default. The released checkpoint was fine-tuned on photo-only turns,
so extra text it never saw can only pull it off its training distribution. `with_points=True` appends the
current points (same JSON layout) for untuned models that cannot localise 68 points from pixels alone.
"""
from __future__ import annotations

import numpy as np

from ..errors import FaceEditError

# (answer key, first iBUG index, end index, what the points trace)
ANSWER_GROUPS = (
    ("JAW/BROWS", 0, 27, "jaw line from the right ear round the chin to the left ear, then the right brow "
                         "and the left brow, each traced from left to right in the picture"),
    ("NOSE", 27, 36, "bridge from between the eyes down to the tip, then the lower edge from the right "
                     "nostril to the left one"),
    ("EYES", 36, 48, "right eye, then left eye, each clockwise in the picture from its left-hand corner"),
    ("MOUTH", 48, 68, "outer lip line, then inner lip line, each clockwise in the picture from its left-hand corner"),
)

_BEFORE_IMAGE = (
    "Below is a photograph of one person's face, shown on a {n} x {n} pixel canvas. Positions on it are "
    "pixel coordinates: x counts from 0 at the left edge to {last} at the right edge, y from 0 at the top "
    "to {last} at the bottom."
)

_AFTER_IMAGE = """{context}Requested edit: {instruction}

Predict where the 68 facial landmarks of this face (iBUG-68 order) will be once the edit is done. Right \
and left are the person's own sides, so the person's right eye appears on the left of the picture.

First reason inside <think> and </think>: describe the current head pose, expression and landmark \
positions; split the request into head movement (turning, tilting, nodding) and changes of the facial \
muscles (eyes, brows, mouth); then estimate how many pixels each part moves.

Then give the result between <answer> and </answer> as a single ```json fenced block holding one object \
with exactly these four keys, in this order:
{groups}
Each point is a pair [x, y] of whole numbers from 0 to {last}. Write nothing after </answer>."""


def answer_json(points: np.ndarray) -> str:
    """68 canvas points as the grouped JSON object the model is asked for (rounded to integers)."""
    pts = np.rint(np.asarray(points, dtype=np.float64)).astype(int)
    if pts.shape != (68, 2):
        raise FaceEditError(f"answer_json needs 68 [x, y] points, got shape {pts.shape}.")
    rows = []
    for key, start, end, _ in ANSWER_GROUPS:
        pairs = ", ".join(f"[{x}, {y}]" for x, y in pts[start:end])
        rows.append(f'  "{key}": [{pairs}]')
    return "{\n" + ",\n".join(rows) + "\n}"


def prompt_texts(instruction: str, canvas: int = 512, current_points: np.ndarray | None = None) -> tuple[str, str]:
    """(text before the photo, text after it). current_points: canvas coordinates to quote, or None."""
    instruction = " ".join(str(instruction or "").split())
    if not instruction:
        raise FaceEditError("The landmark predictor needs an edit instruction, e.g. 'smile and turn the head left'.")
    last = canvas - 1
    groups = "\n".join(f'  "{key}": {end - start} points, iBUG {start}-{end - 1}: {what}'
                       for key, start, end, what in ANSWER_GROUPS)
    context = ""
    if current_points is not None:
        context = ("The landmarks of the face as it is now, in the same layout:\n```json\n"
                   f"{answer_json(np.clip(current_points, 0, last))}\n```\n\n")
    before = _BEFORE_IMAGE.format(n=canvas, last=last)
    after = _AFTER_IMAGE.format(context=context, instruction=instruction, groups=groups, last=last)
    return before, after


def chat_messages(instruction: str, canvas: int = 512, current_points: np.ndarray | None = None) -> list[dict]:
    """One user turn (text, photo, text) for processor.apply_chat_template; the photo goes to the processor
    separately, in the order of the {"type": "image"} entries."""
    before, after = prompt_texts(instruction, canvas, current_points)
    return [{"role": "user", "content": [
        {"type": "text", "text": before},
        {"type": "image"},
        {"type": "text", "text": after},
    ]}]


def group_layout() -> dict[str, tuple[int, int]]:
    """{answer key: (first iBUG index, end index)}."""
    return {key: (start, end) for key, start, end, _ in ANSWER_GROUPS}

