"""NFS (30 fps version): ``<root>/sequences/<name>/%05d.jpg`` and ``<root>/anno/nfs_<name>.txt``.

The annotation files are pytracking's converted ones (one ``x y w h`` row per 30-fps frame); the raw NFS
release ships another format that must be converted first. ``extras['occlusion']`` flags the 20 sequences
with occlusion.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lib.test.evaluation.benchmarks.common import (
    build_sequences,
    load_annotation_boxes,
    load_sequence_list,
    numbered_frames,
    select_names,
)
from lib.test.evaluation.data import Sequence

NAME_PREFIX = "nfs_"


def read_nfs(root: Path, names: Iterable[str] | None) -> list[Sequence]:
    records = {NAME_PREFIX + record["name"]: record for record in load_sequence_list("nfs.json")}

    def build(name: str) -> Sequence:
        record = records[name]
        frames = numbered_frames(root / "sequences" / record["name"], 1, record["end"], digits=5)
        return Sequence(name, frames, "nfs", load_annotation_boxes(root / "anno" / f"{name}.txt"),
                        object_class=record["object_class"], extras={"occlusion": record["occlusion"]})

    return build_sequences(select_names(list(records), names, "nfs"), build, "nfs", root)
