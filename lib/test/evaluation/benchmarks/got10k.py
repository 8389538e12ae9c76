"""GOT-10k: ``<root>/{train,val,test}/<seq>/`` with ``list.txt`` per split and numbered jpg frames.

Besides the boxes, each sequence carries what the official AO metric needs when the files exist:
``extras['cover']`` (visible-ratio class 0-8 per frame; frames with 0 are ignored), ``extras['absence']``,
``extras['cut_by_image']`` and ``extras['resolution']`` ``(W, H)`` from ``meta_info.ini`` (boxes are clipped to it).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lib.data.splits import split_indices
from lib.test.evaluation.benchmarks.common import (
    build_sequences,
    listed_frames,
    load_annotation_boxes,
    load_flags,
    read_key_values,
    read_lines,
    select_names,
)
from lib.test.evaluation.data import Sequence
from lib.utils.errors import DatasetError

LABEL_FILES = {"cover": "cover.label", "absence": "absence.label", "cut_by_image": "cut_by_image.label"}


def _split_names(root: Path, split: str) -> tuple[Path, list[str]]:
    """Folder holding the sequences and their names, in list order."""
    if split == "ltrval":
        # the validation part of GOT-10k train that training leaves out (pytracking/OSTrack's 'val')
        indices = split_indices("got10k_val")
        train_names = read_lines(root / "train" / "list.txt")
        return root / "train", [train_names[index] for index in indices]
    list_file = root / split / "list.txt"
    if not list_file.is_file():
        raise DatasetError(f"GOT-10k split list {list_file} not found; the root must contain "
                           f"'{split}/list.txt' as in the official download")
    return root / split, read_lines(list_file)


def _metric_extras(seq_dir: Path) -> tuple[dict[str, Any], str | None]:
    extras: dict[str, Any] = {}
    for key, file_name in LABEL_FILES.items():
        if (seq_dir / file_name).is_file():
            flags = load_flags(seq_dir / file_name)
            extras[key] = flags if key == "cover" else flags.astype(bool)
    object_class = None
    if (seq_dir / "meta_info.ini").is_file():
        meta = read_key_values(seq_dir / "meta_info.ini")
        numbers = re.findall(r"\d+", meta.get("resolution", ""))
        if len(numbers) == 2:
            extras["resolution"] = (int(numbers[0]), int(numbers[1]))
        object_class = meta.get("object_class")
    return extras, object_class


def read_got10k(root: Path, names: Iterable[str] | None, split: str) -> list[Sequence]:
    """``split``: 'test' and 'val' (official), 'ltrval' (the validation part of train)."""
    dataset = f"got10k_{split}"
    split_dir, available = _split_names(root, split)

    def build(name: str) -> Sequence:
        seq_dir = split_dir / name
        boxes = load_annotation_boxes(seq_dir / "groundtruth.txt")  # the test split publishes only the first box
        frames = listed_frames(seq_dir)
        if len(boxes) not in (1, len(frames)):
            raise DatasetError(f"{seq_dir}: {len(boxes)} ground-truth boxes for {len(frames)} frames")
        extras, object_class = _metric_extras(seq_dir)
        return Sequence(name, frames, "got10k", boxes, object_class=object_class, extras=extras)

    return build_sequences(select_names(available, names, dataset), build, dataset, root)
