"""English edit instructions -> EditParams (head pose change, expression blend, mouth/eye/brow sliders).

Covers LaTo's training template (paper section 3.1)
    "Make his/her facial expression {type} {intensity} and turn his/her head {angle}"
and free phrasing: synonyms of the seven expressions, intensity words, angles in degrees or words.

Conventions (the paper does not say whose left; we use the SUBJECT'S OWN sides, as the iBUG region names do):
- yaw > 0: the head turns toward the subject's own left, so in the photo the nose moves to the viewer's
  RIGHT. "turn her head 30 degrees left" -> yaw +30. "the viewer's/camera/screen/image left" flips this.
- pitch > 0: chin up (looks up). roll > 0: the crown tilts toward the subject's own left shoulder
  (clockwise as the viewer sees it).
- Angles are relative to the source pose. 30 degrees is the base unit (paper): slightly 15, plain 30,
  strongly 45; three-quarter 45; profile 90. Axes in `frontal` ("face the camera") restart from 0.
- Conflicting directions on one axis ("left and right") resolve to frontal on that axis, with a warning.
- Intensity levels: slightly 0.5, normally 1.0, strongly 1.5. Expressions are changes added to the
  source; "neutral" is absolute: it removes the photo's own expression (amount 0..1) before the others
  are added, and is not part of the blend. Composite expressions blend: weights are proportional to each
  one's intensity and sum to 1; `intensity` is their mean. "frown" is sad plus lowered, knitted brows.
- Numbers: exponents are read whole ("1e400" is refused as not finite, never read as 400); angles past
  the pose limits (geometry.LIMITS) are capped with a warning saying what was applied; terminal colour
  codes are removed first; at most MAX_INSTRUCTION_CHARS characters. Synonyms carry their own
  strength (annoyed 0.5, furious 1.5) that intensity words multiply. "not sad" / "stop smiling" read as
  neutral, or are dropped when another expression is named; both add a warning.
- Sliders: mouth_open 1 opens wide, -1 closes the lips; blink 1 closes the eyes, -1 opens them wide;
  brow_raise 1 raises, -1 lowers and knits the brows.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

from ..errors import FaceEditError
from .face_model import EXPRESSIONS
from .geometry import LIMITS

MAX_INSTRUCTION_CHARS = 2000
_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class InstructionError(FaceEditError):
    """An instruction that cannot be read safely (too long, a number that is not finite)."""

BASE_ANGLE = 30.0
LEVELS = {"slightly": 0.5, "normally": 1.0, "strongly": 1.5}
AXES = ("yaw", "pitch", "roll")


@dataclass
class EditParams:
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    expressions: dict[str, float] = field(default_factory=lambda: dict.fromkeys(EXPRESSIONS, 0.0))
    intensity: float = 1.0
    mouth_open: float = 0.0
    blink: float = 0.0
    brow_raise: float = 0.0
    frontal: tuple[str, ...] = ()
    warnings: list[str] = field(default_factory=list)

    def expression_amounts(self) -> dict[str, float]:
        """{expression: intensity * weight} for the non-zero ones; amount 1 = 'normally'."""
        return {e: self.intensity * w for e, w in self.expressions.items() if w}

    def with_controls(self, yaw=0.0, pitch=0.0, roll=0.0, expressions: dict | None = None,
                      mouth_open=0.0, blink=0.0, brow_raise=0.0) -> "EditParams":
        """Explicit slider values composed with the instruction: angles and sliders add, expression
        weights add as amounts (1 = 'normally') to the instruction's amounts."""
        amounts = dict.fromkeys(EXPRESSIONS, 0.0) | self.expression_amounts()
        for name, value in (expressions or {}).items():
            if name not in amounts:
                raise InstructionError(f"Unknown expression '{name}'; use one of {', '.join(EXPRESSIONS)}.")
            amounts[name] += float(value)
        return replace(self, yaw=self.yaw + yaw, pitch=self.pitch + pitch, roll=self.roll + roll,
                       expressions=amounts, intensity=1.0, mouth_open=self.mouth_open + mouth_open,
                       blink=self.blink + blink, brow_raise=self.brow_raise + brow_raise,
                       warnings=list(self.warnings))


# word -> (expression, base intensity). Longer phrases are matched first.
_SYNONYMS = {
    "neutral": "neutral neutrally expressionless blank calm relaxed serious emotionless deadpan impassive "
               "poker_face straight_face no_expression relaxed_face",
    "happy": "happy happier happily happiness joy joyful joyous cheerful glad delighted smile smiles smiling smiled "
             "grin grins grinning cheery merry",
    "happy:0.5": "content pleased smirk smirks smirking",
    "happy:1.5": "laugh laughs laughing laughter ecstatic overjoyed elated beaming beam beams thrilled",
    "sad": "sad sadder sadly sadness unhappy sorrowful sorrow gloomy miserable melancholy melancholic depressed "
           "downcast dejected grief grieving upset heartbroken",
    "sad:1.0": "frown frowns frowning frowned",
    "sad:0.5": "disappointed pout pouts pouting glum",
    "sad:1.5": "cry cries crying tearful in_tears sobbing devastated",
    "angry": "angry angrier angrily anger mad scowl scowls scowling glare glares glaring irate cross",
    "angry:0.5": "annoyed irritated grumpy displeased stern",
    "angry:1.5": "furious rage raging enraged livid",
    "surprised": "surprised surprise surprisedly astonished astonishment amazed amazement startled "
                 "in_awe awestruck wow gasp gasps gasping",
    "surprised:1.5": "shocked shock stunned flabbergasted",
    "fearful": "fearful fear afraid scared frightened fright fearfully",
    "fearful:0.5": "worried nervous anxious uneasy apprehensive",
    "fearful:1.5": "terrified horrified panicked panicking petrified",
    "disgusted": "disgusted disgust disgusting revolted repulsed grossed_out sickened nauseated",
    "disgusted:0.5": "contempt contemptuous sneer sneers sneering",
}
_EXPRESSION_WORDS = {w.replace("_", " "): (k.split(":")[0], float(k.split(":")[1]) if ":" in k else 1.0)
                     for k, words in _SYNONYMS.items() for w in words.split()}
_MODIFIERS = [
    (0.5, "a little bit|a little|a bit|a tad|a touch|a hint of|hint of|kind of|sort of|slightly|slight|"
          "somewhat|mildly|mild|gently|gentle|subtly|subtle|lightly|light|barely|faintly|faint|softly|soft|"
          "half|partly|partially|small|little|tiny"),
    (1.0, "normally|normal|moderately|moderate|medium|regular|fairly|quite"),
    (1.5, "strongly|strong|very|really|extremely|extreme|intensely|intense|a lot|lots|greatly|highly|"
          "hugely|deeply|deep|fully|full|totally|completely|wide|widely|big|broad|broadly|huge|sharply|"
          "sharp|far|hard|super|much|wildly|heavily|massively|exaggerated"),
]
_NUMBERS = dict(zip("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
                    "fifteen sixteen seventeen eighteen nineteen".split(), range(20)))
_TENS = dict(zip("twenty thirty forty fifty sixty seventy eighty ninety".split(), range(20, 100, 10)))
_VIEWER = r"(?:the\s+)?(?:viewer'?s?|camera'?s?|screen|image|picture|frame|photo|our|my)"
# Which axis "left"/"right" means in a clause: roll after these words, yaw otherwise.
_ROLL_VERBS = (r"\b(tilt|tilts|tilting|tilted|lean|leans|leaning|cock|cocks|cocked|tip|tips|incline|inclines|"
               r"roll|rolls|rolling|shoulder)\b")
_YAW_VERBS = (r"\b(turn|turns|turning|turned|rotate|rotates|rotating|rotated|look|looks|looking|face|faces|"
              r"facing|glance|glances|glancing|swivel|twist|twists|pan|spin)\b")
_NEGATION = re.compile(r"\b(not|no|stop|stops|without|never|don't|doesn't|isn't|no longer)\s+(?:\w+\s+)?$")
_G = r"(?:\s+\w+)?"
_NUMBER = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?)"  # exponents read whole: 1e400 is not 400  # an optional possessive or article: "raise HER brows"

# (pattern, kind, payload) in priority order; a match cannot overlap an earlier one.
_RULES = [
    (r"\b(yaw|pitch|roll)\s*(?:of|by|to|=|:)?\s*" + _NUMBER, "axis", None),
    (r"\bwink(?:s|ing)?\b", "unsupported", "A wink (one eye) is not supported; use blink for both eyes."),
    (r"\b(poker face|straight face|no expression|relaxed face|in tears|in awe|grossed out)\b", "expr", None),
    (r"\b(?:face|faces|facing|look|looks|looking|turn|turns)\s+(?:at\s+|to\s+|toward\s+|towards\s+)?(?:the\s+)?"
     r"(?:camera|viewer|lens|front)\b(?!'|\s+(?:left|right))|\bface forward\b|"
     r"\blook(?:s|ing)? straight(?: ahead| on| forward)?\b|\bfrontal\b|\bstraight ahead\b|\bhead on\b",
     "frontal", ("yaw", "pitch")),
    (r"\b(?:straighten|straightens|level|levels)" + _G + r"\s+head\b|\bhead (?:upright|level)\b|\bupright\b|"
     r"\bno tilt\b", "frontal", ("roll",)),
    (r"\bopen(?:s|ing|ed)?" + _G + r"\s+mouth\b|\bmouth" + _G + r"\s+(?:wide\s+)?open\b|\bopen mouthed\b|"
     r"\b(?:drop|drops|dropping|dropped|lower|lowers)" + _G + r"\s+jaw\b|\bjaw ?drop(?:s|ped)?\b|\bgaping\b", "slider",
     ("mouth_open", 1.0)),
    (r"\b(?:close|closes|closing|shut|shuts)" + _G + r"\s+mouth\b|\bmouth" + _G + r"\s+(?:closed|shut)\b|"
     r"\b(?:closed|pressed) lips\b|\blips (?:closed|pressed|together)\b", "slider", ("mouth_open", -1.0)),
    (r"\b(?:close|closes|closing|closed|shut|shuts|shutting)" + _G + r"\s+eyes?\b|\beyes? (?:closed|shut)\b|"
     r"\bblink(?:s|ing)?\b", "slider", ("blink", 1.0)),
    (r"\bsquint(?:s|ing)?\b", "slider", ("blink", 0.5)),
    (r"\b(?:open|opens|widen|widens|widening)" + _G + r"\s+eyes(?: wide)?\b|\bwide eyed\b|\beyes wide(?: open)?\b",
     "slider", ("blink", -1.0)),
    (r"\b(?:raise|raises|raising|raised|lift|lifts|lifted|arch|arches|arched)" + _G + r"\s+(?:eye)?brows?\b|"
     r"\b(?:eye)?brows? (?:up|raised|lifted)\b", "slider", ("brow_raise", 1.0)),
    (r"\b(?:lower|lowers|lowered|furrow|furrows|furrowed|knit|knits|knitted)" + _G + r"\s+(?:eye)?brows?\b|"
     r"\b(?:eye)?brows? (?:down|lowered|furrowed|knitted)\b", "slider", ("brow_raise", -1.0)),
    (r"\b(?:raise|raises|raising|lift|lifts|lifting)" + _G + r"\s+(?:head|chin|face)\b|\bchin up\b|"
     r"\b(?:tilt|tilts|tilting|tip|tips|throw|throws|lean|leans)" + _G + r"(?:\s+head)?\s+back(?:wards?)?\b",
     "dir", ("pitch", 1, 1.0)),
    (r"\b(?:lower|lowers|lowering|dip|dips|bow|bows|bowing|tuck|tucks|drop|drops)" + _G + r"\s+(?:head|chin|face)\b|"
     r"\bchin down\b|\b(?:tilt|tilts|tilting|tip|tips|lean|leans)" + _G + r"(?:\s+head)?\s+forwards?\b",
     "dir", ("pitch", -1, 1.0)),
    (r"\bnod(?:s|ding|ded)?\b|\bbow(?:s|ing)?\b", "nod", ("pitch", -1, 0.5)),
    (r"\b(?:counter|anti) ?clockwise\b", "dir", ("roll", -1, 1.0)),
    (r"\bclockwise\b", "dir", ("roll", 1, 1.0)),
    (r"\b(?:half profile|3 quarters?(?: view)?|3/4(?: view)?)\b", "angle", 45.0),
    (r"\b(?:full\s+|side\s+)?profile\b|\bside view\b|\bside on\b", "angle", 90.0),
    (rf"(?:\b(?P<pre>{_VIEWER})\s+)?\b(?P<lr>left|right)(?:wards?)?\b"
     rf"(?P<post>\s+(?:(?:as\s+)?seen\s+(?:by|from)|from|of|in)\s+(?:the\s+)?(?:viewer'?s?|camera'?s?|screen|"
     rf"image|picture|frame|photo|us|me|our)\b)?", "lr", None),
    (r"\b(?:up|upward|upwards|skyward|skywards)\b", "dir", ("pitch", 1, 1.0)),
    (r"\b(?:down|downward|downwards)\b", "dir", ("pitch", -1, 1.0)),
    (_NUMBER + r"\s*(degrees?|degs?|%|percent)?", "number", None),
    (r"\b(" + "|".join(sorted(_EXPRESSION_WORDS, key=len, reverse=True)) + r")\b", "expr", None),
] + [(r"\b(" + words + r")\b", "mod", factor) for factor, words in _MODIFIERS]
_RULES = [(re.compile(p), kind, payload) for p, kind, payload in _RULES]


def _normalise(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("\u00b0", " degrees ").replace("\u00ba", " degrees ")
    text = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", text)
    text = re.sub(r"\b(" + "|".join(_TENS) + r")(?:\s+(" + "|".join(list(_NUMBERS)[1:10]) + r"))?\b",
                  lambda m: str(_TENS[m[1]] + (_NUMBERS[m[2]] if m[2] else 0)), text)
    text = re.sub(r"\b(" + "|".join(_NUMBERS) + r")\b", lambda m: str(_NUMBERS[m[1]]), text)
    text = re.sub(r"(\d)\s*deg(rees?)?\.?\b", r"\1 degrees", text)
    return re.sub(r"\s+", " ", text).strip()


def _clauses(text: str) -> list[str]:
    parts = re.split(r"\s*(?:[,;!?&]|(?<!\d)\.|\.(?!\d)|\b(?:and|then|while|but|plus|with)\b)\s*", text)
    return [p for p in parts if p]


def _scan(clause: str) -> list[dict]:
    taken, items = [], []
    for pattern, kind, payload in _RULES:
        for m in pattern.finditer(clause):
            if m.end() == m.start() or any(m.start() < e and s < m.end() for s, e in taken):
                continue
            taken.append((m.start(), m.end()))
            items.append({"kind": kind, "payload": payload, "match": m, "pos": (m.start() + m.end()) / 2})
    return sorted(items, key=lambda it: it["pos"])


def parse_instruction(text: str) -> EditParams:
    """Parse an English instruction; unknown words are ignored, doubtful readings add warnings."""
    warnings, frontal, explicit = [], set(), {a: [] for a in AXES}
    targets, previous, lr_axis = [], [], "yaw"
    for clause in _clauses(_normalise(_sanitised(text, warnings))):
        items = _scan(clause)
        if re.search(_YAW_VERBS, clause):
            lr_axis = "yaw"
        elif re.search(_ROLL_VERBS, clause):
            lr_axis = "roll"
        found = []
        for it in items:
            m, kind = it["match"], it["kind"]
            if kind == "axis":
                explicit[m[1]].append(_finite(m[2]))
            elif kind == "nod":
                found.append(dict(it, kind="dir", axis="pitch", sign=-1, factor=0.5, weak=True))
            elif kind == "unsupported":
                warnings.append(it["payload"])
            elif kind == "frontal":
                frontal.update(it["payload"])
            elif kind == "lr":
                sign = (1 if m["lr"] == "left" else -1) * (-1 if m["pre"] or m["post"] else 1)
                found.append(dict(it, kind="dir", axis=lr_axis, sign=sign, factor=1.0))
            elif kind == "dir":
                axis, sign, factor = it["payload"]
                found.append(dict(it, axis=axis, sign=sign, factor=factor))
            elif kind in ("slider", "expr"):
                found.append(dict(it, negated=kind == "expr" and bool(_NEGATION.search(clause[:m.start()]))))
        for t in found:
            t.update(mods=[], angle=None)
        if any(t["kind"] == "dir" and t["axis"] == "pitch" and not t.get("weak") for t in found):
            found = [t for t in found if not t.get("weak")]  # "nod upward": the direction word wins
        for t in list(found):  # "frown": the sad mouth plus lowered, knitted brows, sharing modifiers
            if t["kind"] == "expr" and t["match"][1].startswith("frown"):
                found.append(dict(t, kind="slider", payload=("brow_raise", -1.0)))
        # A clause without its own target ("..., a lot") qualifies the previous clause's last one.
        pool = found or previous[-1:]
        _attach(items, pool, warnings)
        targets += [t for t in pool if t not in targets]
        previous = pool
    return _assemble(text, targets, explicit, frontal, warnings)


def _attach(items: list[dict], pool: list[dict], warnings: list[str]) -> None:
    """Hang modifiers, percentages and angles on the nearest target of the clause."""
    for it in items:
        dirs = [t for t in pool if t["kind"] == "dir"]
        if it["kind"] == "angle" and not dirs:  # "profile" without a side
            warnings.append(f"No side given for '{it['match'][0]}'; turned toward the subject's own left.")
            pool.append(dict(it, kind="dir", axis="yaw", sign=1, factor=1.0, mods=[], angle=None))
            dirs = pool[-1:]
        if it["kind"] in ("angle", "number"):
            unit = it["match"][2] if it["kind"] == "number" else "degrees"
            value = it["payload"] if it["kind"] == "angle" else _finite(it["match"][1])
            if unit in ("%", "percent") or (unit is None and not dirs and pool):
                if pool:
                    _nearest(pool, it["pos"])["mods"].append(value / 100 if unit else value)
            elif dirs:
                _nearest(dirs, it["pos"])["angle"] = abs(value)
            elif value:
                warnings.append(f"Angle '{it['match'][0]}' has no direction (left, right, up, down); ignored.")
        elif it["kind"] == "mod" and pool:
            _nearest(pool, it["pos"])["mods"].append(it["payload"])


def _assemble(text, targets, explicit, frontal, warnings) -> EditParams:
    poses = {a: list(v) for a, v in explicit.items()}
    sliders = {"mouth_open": [], "blink": [], "brow_raise": []}
    expressions: dict[str, float] = {}
    negated = [t for t in targets if t.get("negated")]
    if any(t["kind"] == "expr" and not t["negated"] for t in targets):  # "happy, not sad": drop "sad"
        targets = [t for t in targets if not t.get("negated")]
        warnings += [f"Ignored the negated '{t['match'][1]}'." for t in negated]
    for t in targets:
        if t["kind"] == "slider" and t.get("negated"):
            continue  # "not frowning": its brow part goes with it
        scale = min(max(math.prod(t["mods"]), 0.0), 2.0)
        if t["kind"] == "dir":
            angle = t["angle"] if t["angle"] is not None else BASE_ANGLE * t["factor"] * scale
            poses[t["axis"]].append(t["sign"] * angle)
        elif t["kind"] == "slider":
            name, value = t["payload"]
            sliders[name].append(value * scale)
        else:
            name, base = _EXPRESSION_WORDS[t["match"][1]]
            if t["negated"]:
                warnings.append(f"Read the negated '{t['match'][1]}' as neutral.")
                name, base = "neutral", 1.0
            expressions[name] = max(expressions.get(name, 0.0), base * scale)

    params = EditParams()
    for axis, values in poses.items():
        if any(v > 0 for v in values) and any(v < 0 for v in values):
            warnings.append(f"Conflicting {axis} directions in the instruction; resolved to frontal {axis}.")
            frontal.add(axis)
        elif values:
            setattr(params, axis, _within_limit(axis, max(values, key=abs), warnings))
    for name, values in sliders.items():
        if any(v > 0 for v in values) and any(v < 0 for v in values):
            warnings.append(f"Conflicting {name.replace('_', ' ')} instructions cancel out.")
        setattr(params, name, float(min(max(sum(values), -1.0), 1.0 if name == "blink" else 1.5)))
    neutral = expressions.pop("neutral", 0.0)
    total = sum(expressions.values())
    if expressions:
        params.intensity = total / len(expressions)
        for name, amount in expressions.items():
            params.expressions[name] = amount / total if total else 1.0 / len(expressions)
    if neutral:  # "neutral" is not blended: it removes the photo's expression, the others are added after
        params.intensity = params.intensity if expressions else neutral
        params.expressions["neutral"] = neutral / params.intensity if params.intensity else 1.0
        expressions["neutral"] = neutral
    params.frontal = tuple(a for a in AXES if a in frontal)
    if not (expressions or frontal or any(poses.values()) or any(any(v) for v in sliders.values())):
        warnings.append(f"No expression or head pose was recognised in '{text}'; nothing will change.")
    params.warnings = warnings
    return params


def _sanitised(text, warnings: list[str]) -> str:
    """The instruction without terminal colour codes and control characters, within the length limit."""
    text = str(text or "")
    if len(text) > MAX_INSTRUCTION_CHARS:
        raise InstructionError(f"The instruction is {len(text):,} characters; the limit is {MAX_INSTRUCTION_CHARS:,}. "
                               "Shorten it to the edit itself, e.g. 'turn her head 30 degrees left and smile'.")
    clean = _CONTROL.sub(" ", _ANSI.sub(" ", text))
    if clean != text:
        warnings.append("Removed terminal colour codes / control characters from the instruction; their digits "
                        "were not read as numbers.")
    return clean


def _finite(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise InstructionError(f"The number '{token}' in the instruction is too large to read (not finite). Write an "
                               "angle in degrees, e.g. 'turn her head 30 degrees left' (at most 90 for a turn).")
    return value


def _within_limit(axis: str, value: float, warnings: list[str]) -> float:
    limit = LIMITS[axis]
    if abs(value) <= limit:
        return value
    applied = math.copysign(limit, value)
    warnings.append(f"Asked for {value:g} degrees of {axis}; a head {'turns' if axis == 'yaw' else 'moves'} at most "
                    f"{limit:g} degrees that way, so {applied:g} was applied.")
    return applied


def _nearest(targets: list[dict], pos: float) -> dict:
    return min(targets, key=lambda t: abs(t["pos"] - pos))
