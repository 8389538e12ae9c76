"""OTB-100: ``<root>/<Seq>/img/%04d.jpg`` and ``<root>/<Seq>/groundtruth_rect.txt``.

Special cases kept in the list (``otb100.json``): frame ranges not starting at 1 (BlurCar1/3/4, David),
5-digit names (Board), two targets in one video (``Human4_2``, ``Jogging_1/2``, ``Skating2_1/2`` read
``<folder>/groundtruth_rect.<k>.txt``), and Tiger1, whose first 5 frames and boxes are skipped (``init_omit``).
Sequences shorter than their image folder (Football1: 74 of 81 frames) use the listed range only.
``<Seq>/attrs.txt`` (e.g. ``SV, DEF, FM``), when present, fills ``extras['attributes']``.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lib.test.evaluation.benchmarks.common import (
    attribute_flags,
    build_sequences,
    load_annotation_boxes,
    load_sequence_list,
    numbered_frames,
    read_lines,
    select_names,
)
from lib.test.evaluation.data import Sequence

ATTRIBUTES = ("IV", "SV", "OCC", "DEF", "MB", "FM", "IPR", "OPR", "OV", "BC", "LR")


def read_otb(root: Path, names: Iterable[str] | None) -> list[Sequence]:
    records = {record["name"]: record for record in load_sequence_list("otb100.json")}

    def build(name: str) -> Sequence:
        record = records[name]
        seq_dir = root / record.get("folder", name)
        skip = record.get("init_omit", 0)
        frames = numbered_frames(seq_dir / "img", record["start"] + skip, record["end"], record.get("digits", 4))
        boxes = load_annotation_boxes(seq_dir / record.get("anno", "groundtruth_rect.txt"))[skip:]
        extras = {}
        if (seq_dir / "attrs.txt").is_file():
            listed = [attr for line in read_lines(seq_dir / "attrs.txt") for attr in line.split(",") if attr.strip()]
            extras["attributes"] = attribute_flags(ATTRIBUTES, listed)
        return Sequence(name, frames, "otb", boxes, extras=extras)

    return build_sequences(select_names(list(records), names, "otb"), build, "otb", root)
