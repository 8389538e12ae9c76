"""TNL2K test set: ``<root>/<seq>/`` with ``groundtruth.txt``, ``language.txt`` and ``imgs/``.

Frames are every image of ``imgs/`` in natural order (OSTrack sorts lexicographically; identical for the
zero-padded names TNL2K uses). The description (first line, lower-cased) goes to ``extras['language']``.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lib.test.evaluation.benchmarks.common import (
    build_sequences,
    listed_frames,
    load_annotation_boxes,
    read_lines,
    select_names,
    subfolders,
)
from lib.test.evaluation.data import Sequence


def read_tnl2k(root: Path, names: Iterable[str] | None) -> list[Sequence]:
    def build(name: str) -> Sequence:
        seq_dir = root / name
        extras = {}
        if (seq_dir / "language.txt").is_file():
            lines = read_lines(seq_dir / "language.txt")
            extras["language"] = lines[0].lower() if lines else ""
        boxes = load_annotation_boxes(seq_dir / "groundtruth.txt")
        return Sequence(name, listed_frames(seq_dir / "imgs"), "tnl2k", boxes, extras=extras)

    return build_sequences(select_names(subfolders(root), names, "tnl2k"), build, "tnl2k", root)
