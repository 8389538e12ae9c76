"""LaSOT training split: ``<root>/<class>/<class>-<n>/`` with ``groundtruth.txt`` (x,y,w,h per line),
``full_occlusion.txt`` and ``out_of_view.txt`` (one comma-separated 0/1 line) and ``img/00000001.jpg`` ...

A frame is visible when it is neither fully occluded nor out of view (and its box is not empty); a missing
flag file counts as "never". The number of frames is the number of ground-truth rows.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from lib.data.splits import split_entries
from lib.train.data.datasets.base import TrackingDataset, sequence_info
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

    def get_sequence_info(self, seq_id: int) -> dict[str, torch.Tensor]:
        folder = self._folder(self.sequence_names[seq_id])
        boxes = self.read_boxes(f"{folder}/groundtruth.txt")
        occluded = self.read_labels(f"{folder}/full_occlusion.txt", len(boxes), missing=0)
        out_of_view = self.read_labels(f"{folder}/out_of_view.txt", len(boxes), missing=0)
        return sequence_info(boxes, (occluded == 0) & (out_of_view == 0))

    def frame_path(self, seq_id: int, frame_id: int) -> str:
        return f"{self._folder(self.sequence_names[seq_id])}/img/{frame_id + 1:08d}.jpg"
