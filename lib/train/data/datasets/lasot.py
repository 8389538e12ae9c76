"""LaSOT training split: ``<root>/<class>/<class>-<n>/`` with ``groundtruth.txt`` (x,y,w,h per line),
``full_occlusion.txt`` and ``out_of_view.txt`` (one comma-separated 0/1 line) and ``img/00000001.jpg`` ...

A frame is visible when it is neither fully occluded nor out of view (and its box is not empty). A sequence
without its flag files is a partial download: the start-up check skips and names it (the official reader
raises). The number of frames is the number of ground-truth rows.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lib.data.splits import split_entries
from lib.train.data.datasets.base import SequenceAnnotation, TrackingDataset
from lib.train.data.datasets.storage import Storage, open_storage
from lib.utils.errors import UserError

# split -> split list of lib.data.splits
SPLIT_LISTS = {"train": "lasot_train"}


def lasot_class(sequence_name: str) -> str:
    """'rubicCube-12' -> 'rubicCube'."""
    return sequence_name.rsplit("-", 1)[0]


class Lasot(TrackingDataset):
    layout = "<root>/<class>/<class>-<n>/{groundtruth.txt, full_occlusion.txt, out_of_view.txt, img/%08d.jpg}"
    provides_classes = True

    def __init__(self, root: str | Path | Storage, split: str | None = "train",
                 sequence_names: Iterable[str] | None = None, storage: str = "folder") -> None:
        """``split``: 'train' (the 1120 official training sequences) or None (every sequence found);
        ``sequence_names`` overrides the split."""
        super().__init__("LaSOT", open_storage(root, storage))
        if sequence_names is not None:
            candidates = list(sequence_names)
        elif split is None:
            candidates = [seq for cls in self.storage.list_subdirs() for seq in self.storage.list_subdirs(cls)]
        elif split in SPLIT_LISTS:
            candidates = split_entries(SPLIT_LISTS[split])
        else:
            raise UserError(f"unknown LaSOT split '{split}'; use one of {sorted(SPLIT_LISTS)} or None (all)")
        self.sequence_names = self.keep_complete(candidates, self._folder,
                                                 lambda name: f"{self._folder(name)}/groundtruth.txt")

    @staticmethod
    def _folder(name: str) -> str:
        return f"{lasot_class(name)}/{name}"

    def get_class_name(self, seq_id: int) -> str:
        return lasot_class(self.sequence_names[seq_id])

    def annotation_files(self, seq_id: int) -> list[str]:
        folder = self._folder(self.sequence_names[seq_id])
        return [f"{folder}/groundtruth.txt", f"{folder}/full_occlusion.txt", f"{folder}/out_of_view.txt"]

    def read_annotation(self, seq_id: int) -> SequenceAnnotation:
        boxes_file, occlusion_file, out_of_view_file = self.annotation_files(seq_id)
        annotation = SequenceAnnotation(np.zeros((0, 4)))
        annotation.boxes = self.read_boxes(boxes_file, annotation)
        occluded = self.read_labels(occlusion_file, len(annotation.boxes), annotation)
        out_of_view = self.read_labels(out_of_view_file, len(annotation.boxes), annotation)
        annotation.visible = (occluded == 0) & (out_of_view == 0)
        return annotation

    def frame_path(self, seq_id: int, frame_id: int) -> str:
        return f"{self._folder(self.sequence_names[seq_id])}/img/{frame_id + 1:08d}.jpg"
