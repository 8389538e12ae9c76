"""UAV123: ``<root>/data_seq/UAV123/<folder>/%06d.jpg`` and ``<root>/anno/UAV123/<name>.txt``.

Long videos are split into several evaluated sequences (``bird1_2`` = frames 775-1477 of folder ``bird1``);
the list stores each one's folder and frame range. Target-absent frames are ``NaN`` rows (kept: the ``'uav'``
metric rules count them). ``anno/UAV123/att/<name>.txt`` (12 flags) fills ``extras['attributes']``.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lib.test.evaluation.benchmarks.common import (
    build_sequences,
    load_annotation_boxes,
    load_sequence_list,
    load_table,
    numbered_frames,
    select_names,
)
from lib.test.evaluation.data import Sequence
from lib.utils.errors import DatasetError

NAME_PREFIX = "uav_"
# Column order of the att/ files (per-attribute counts 109, 68, 48, 28, 33, 73, 30, 21, 31, 60, 70, 39).
ATTRIBUTES = ("SV", "ARC", "LR", "FM", "FOC", "POC", "OV", "BC", "IV", "VC", "CM", "SOB")


def read_uav(root: Path, names: Iterable[str] | None) -> list[Sequence]:
    records = {record["name"]: record for record in load_sequence_list("uav123.json")}
    anno_dir = root / "anno" / "UAV123"

    def build(name: str) -> Sequence:
        record = records[name]
        anno_name = name[len(NAME_PREFIX):]
        frames = numbered_frames(root / "data_seq" / "UAV123" / record["folder"], record["start"], record["end"],
                                 digits=6)
        extras = {}
        att_file = anno_dir / "att" / f"{anno_name}.txt"
        if att_file.is_file():
            flags = load_table(att_file).ravel()
            if len(flags) != len(ATTRIBUTES):
                raise DatasetError(f"{att_file}: {len(flags)} attribute flags, expected {len(ATTRIBUTES)}")
            extras["attributes"] = {attr: bool(flag) for attr, flag in zip(ATTRIBUTES, flags, strict=True)}
        return Sequence(name, frames, "uav", load_annotation_boxes(anno_dir / f"{anno_name}.txt"),
                        object_class=record["object_class"], extras=extras)

    return build_sequences(select_names(list(records), names, "uav"), build, "uav", root)
