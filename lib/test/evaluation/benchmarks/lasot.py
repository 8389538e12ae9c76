"""LaSOT and its extension subset: ``<root>/<class>/<class>-<n>/`` with ``img/%08d.jpg`` frames."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lib.test.evaluation.benchmarks.common import (
    build_sequences,
    load_annotation_boxes,
    load_flags,
    load_sequence_list,
    numbered_frames,
    select_names,
)
from lib.test.evaluation.data import Sequence
from lib.utils.errors import DatasetError

LIST_FILES = {"lasot": "lasot_test.txt", "lasot_extension_subset": "lasot_extension_subset.txt"}


def read_lasot(root: Path, names: Iterable[str] | None, tag: str = "lasot") -> list[Sequence]:
    """``tag`` is also the metric tag: only ``'lasot'`` turns invisible frames into precision failures."""

    def build(name: str) -> Sequence:
        object_class = name.split("-")[0]
        seq_dir = root / object_class / name
        boxes = load_annotation_boxes(seq_dir / "groundtruth.txt")
        full_occlusion = load_flags(seq_dir / "full_occlusion.txt")
        out_of_view = load_flags(seq_dir / "out_of_view.txt")
        for flags, file_name in ((full_occlusion, "full_occlusion.txt"), (out_of_view, "out_of_view.txt")):
            if len(flags) != len(boxes):
                raise DatasetError(f"{seq_dir / file_name}: {len(flags)} flags for {len(boxes)} ground-truth boxes; "
                                   "re-download the sequence")
        visible = (full_occlusion == 0) & (out_of_view == 0)
        frames = numbered_frames(seq_dir / "img", 1, len(boxes), digits=8)
        return Sequence(name, frames, tag, boxes, target_visible=visible, object_class=object_class)

    selected = select_names(load_sequence_list(LIST_FILES[tag]), names, tag)
    return build_sequences(selected, build, tag, root)
