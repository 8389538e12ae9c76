"""GOT-10k: ``<root>/{train,val}/<seq>/`` with ``groundtruth.txt``, ``absence.label`` (1 = target absent),
``cover.label`` (0-8, 0 = fully covered), ``meta_info.ini`` and frames ``00000001.jpg`` ...; each split folder has
a ``list.txt`` naming its sequences. A sequence without its label files is a partial download: it is skipped
(and named) by the start-up check, never taken as visible throughout.

Splits (pytracking/OSTrack meaning): 'train_full' = every sequence of ``train/``; 'train' / 'val' and
'vottrain' / 'votval' = the sequences of ``train/list.txt`` at the 0-based indices listed in
the split lists ``got10k_{train,val,vot_train,vot_val}`` of :mod:`lib.data.splits` (the vot splits leave out the
sequences that overlap VOT); 'official_val' = the ``val/`` folder. Visible = not absent and cover > 0.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from lib.data.splits import split_indices
from lib.train.data.datasets.base import SequenceAnnotation, TrackingDataset
from lib.train.data.datasets.storage import Storage, open_storage
from lib.utils.errors import DatasetError, UserError

# split -> (folder under the root, split list of lib.data.splits or None for the whole folder)
SPLITS: dict[str, tuple[str, str | None]] = {
    "train_full": ("train", None),
    "train": ("train", "got10k_train"),
    "val": ("train", "got10k_val"),
    "vottrain": ("train", "got10k_vot_train"),
    "votval": ("train", "got10k_vot_val"),
    "official_val": ("val", None),
}
META_FIELDS = {"object_class": "object_class_name", "motion_class": "motion_class", "major_class": "major_class",
               "root_class": "root_class", "motion_adverb": "motion_adverb"}


def parse_meta_info(text: str) -> dict[str, str]:
    """``key: value`` lines of ``meta_info.ini`` (the section header is ignored)."""
    entries = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.lstrip().startswith("["):
            entries[key.strip()] = value.strip()
    return entries


class Got10k(TrackingDataset):
    layout = ("<root>/{train,val}/<seq>/{groundtruth.txt, absence.label, cover.label, meta_info.ini, "
              "00000001.jpg ...} and <root>/{train,val}/list.txt")
    provides_classes = True

    def __init__(self, root: str | Path | Storage, split: str = "train_full",
                 sequence_ids: Iterable[int] | None = None, storage: str = "folder") -> None:
        """``sequence_ids`` (indices into the folder's ``list.txt``) override the split's index list."""
        if split not in SPLITS:
            raise UserError(f"unknown GOT-10k split '{split}'; use one of {list(SPLITS)}")
        super().__init__(f"GOT10k_{split}", open_storage(root, storage))
        self.folder, split_list = SPLITS[split]
        listed = self._listed_sequences(needs_list=split_list is not None or sequence_ids is not None)
        if sequence_ids is None and split_list is not None:
            sequence_ids = split_indices(split_list)
        if sequence_ids is not None:
            ids = list(sequence_ids)
            beyond = [i for i in ids if not 0 <= i < len(listed)]
            if beyond:
                raise DatasetError(f"{self.name}: split index {beyond[0]} is outside {self.folder}/list.txt "
                                   f"({len(listed)} sequences); is list.txt the official one?")
            listed = [listed[i] for i in ids]
        self.sequence_names = self.keep_complete(listed, self._folder,
                                                 lambda name: f"{self._folder(name)}/groundtruth.txt")
        self._meta: dict[int, dict[str, Any]] = {}

    def _listed_sequences(self, needs_list: bool) -> list[str]:
        list_file = f"{self.folder}/list.txt"
        if self.storage.exists(list_file):
            return [line.strip() for line in self.storage.read_text(list_file).splitlines() if line.strip()]
        if needs_list:
            raise DatasetError(f"{self.name}: {self.storage.describe()}/{list_file} is missing; it ships with "
                               "GOT-10k and the split indices refer to its lines")
        return self.storage.list_subdirs(self.folder)

    def _folder(self, name: str) -> str:
        return f"{self.folder}/{name}"

    def annotation_files(self, seq_id: int) -> list[str]:
        folder = self._folder(self.sequence_names[seq_id])
        return [f"{folder}/groundtruth.txt", f"{folder}/absence.label", f"{folder}/cover.label"]

    def read_annotation(self, seq_id: int) -> SequenceAnnotation:
        boxes_file, absence_file, cover_file = self.annotation_files(seq_id)
        annotation = SequenceAnnotation(np.zeros((0, 4)))
        annotation.boxes = self.read_boxes(boxes_file, annotation)
        absent = self.read_labels(absence_file, len(annotation.boxes), annotation)
        cover = self.read_labels(cover_file, len(annotation.boxes), annotation)
        annotation.visible = (absent == 0) & (cover > 0)
        return annotation

    def keep_sequences(self, seq_ids: list[int]) -> None:
        super().keep_sequences(seq_ids)
        self._meta = {}

    def frame_path(self, seq_id: int, frame_id: int) -> str:
        return f"{self._folder(self.sequence_names[seq_id])}/{frame_id + 1:08d}.jpg"

    def get_meta(self, seq_id: int) -> dict[str, Any]:
        if seq_id not in self._meta:
            try:
                entries = parse_meta_info(self.storage.read_text(f"{self._folder(self.sequence_names[seq_id])}"
                                                                 "/meta_info.ini"))
            except FileNotFoundError:
                entries = {}
            self._meta[seq_id] = {key: entries.get(field) or None for field, key in META_FIELDS.items()}
        return dict(self._meta[seq_id])

    def get_class_name(self, seq_id: int) -> str | None:
        return self.get_meta(seq_id)["object_class_name"]
