"""Short descriptions of the example workflows, one module per feature; scripts/build_workflows.py writes them out.

Each module has WORKFLOWS {file name: (title, nodes)} and PRESENTATION {file name: Presentation}.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Presentation:
    """What a user sees around the nodes: a note, named groups, and the output the thumbnail is made from."""

    note: str
    groups: tuple[tuple[str, tuple[int, ...]], ...]   # (group title, node ids inside it)
    main_output: int                                   # id of the SaveImage whose picture is the thumbnail
