"""Bounded JSON reading: one linear pass over the brackets (outside strings) before any parser recurses.

Python's json module recurses once per nesting level, so 100k '[' exhaust the stack; and searching a
reply for its last parseable object by trying every '{' costs quadratic time. top_level_spans finds the
top-level {...} / [...] spans in linear time and refuses nesting deeper than a limit.
"""
from __future__ import annotations

import json
import re

_TOKENS = re.compile(r'"(?:[^"\\\n]|\\.)*"|[\[\]{}]')


class TooDeep(Exception):
    """Nesting deeper than the limit; position is the offending bracket's index."""

    def __init__(self, position: int, limit: int):
        super().__init__(f"nesting deeper than {limit} levels at character {position}")
        self.position, self.limit = position, limit


def top_level_spans(text: str, max_depth: int) -> tuple[list[tuple[int, int, str]], int | None]:
    """([(start, end, opener)], start of an unclosed top-level span or None). Linear in len(text)."""
    spans, depth, start = [], 0, None
    for m in _TOKENS.finditer(text):
        c = m.group()
        if c in "[{":
            if depth == 0:
                start = m.start()
            depth += 1
            if depth > max_depth:
                raise TooDeep(m.start(), max_depth)
        elif c in "]}":
            if depth == 0:
                continue  # a stray closer in prose
            depth -= 1
            if depth == 0:
                spans.append((start, m.end(), text[start]))
    return spans, (start if depth else None)


def loads_bounded(text: str, max_depth: int, object_pairs_hook=None):
    """json.loads after checking the nesting depth; raises TooDeep or json.JSONDecodeError."""
    top_level_spans(text, max_depth)
    return json.loads(text, object_pairs_hook=object_pairs_hook)
