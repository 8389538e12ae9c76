"""Your own videos in GOT-10k style (the format of the generated demo benchmark): ``<root>/<seq>/`` holding the
frames (``*.jpg`` / ``*.png``, in natural order: 2.jpg before 10.jpg), ``groundtruth.txt`` (x,y,w,h per frame;
comma, tab or space) and optionally ``absence.label`` (1 = target absent). Sequences are those named in
``<root>/list.txt`` when it exists, else every sub-folder. Frame i is annotated by ground-truth row i; extra rows
beyond the last frame are dropped (with a warning).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lib.train.data.datasets.base import SequenceAnnotation, TrackingDataset
from lib.train.data.datasets.storage import Storage, open_storage
from lib.utils.sorting import natural_sorted

log = logging.getLogger(__name__)

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class CustomFolder(TrackingDataset):
    layout = "<root>/<seq>/{groundtruth.txt, [absence.label], frames *.jpg|*.png} and optionally <root>/list.txt"

    def __init__(self, root: str | Path | Storage, sequence_names: Iterable[str] | None = None,
                 storage: str = "folder", name: str = "Custom") -> None:
        super().__init__(name, open_storage(root, storage))
        if sequence_names is not None:
            candidates = list(sequence_names)
        elif self.storage.exists("list.txt"):
            candidates = [line.strip() for line in self.storage.read_text("list.txt").splitlines() if line.strip()]
        else:
            candidates = self.storage.list_subdirs()
        self.sequence_names = self.keep_complete(candidates, lambda seq: seq, lambda seq: f"{seq}/groundtruth.txt")
        self._frames: dict[int, list[str]] = {}
        self._warned_rows: set[int] = set()

    def frames_of(self, seq_id: int) -> list[str]:
        """File names of the sequence's frames, in natural order."""
        if seq_id not in self._frames:
            files = self.storage.list_files(self.sequence_names[seq_id])
            self._frames[seq_id] = natural_sorted(f for f in files if f.lower().endswith(FRAME_SUFFIXES))
        return self._frames[seq_id]

    def annotation_files(self, seq_id: int) -> list[str]:
        name = self.sequence_names[seq_id]
        return [f"{name}/groundtruth.txt", f"{name}/absence.label", name]  # the folder: its frames count too

    def keep_sequences(self, seq_ids: list[int]) -> None:
        super().keep_sequences(seq_ids)
        self._frames, self._warned_rows = {}, set()

    def read_annotation(self, seq_id: int) -> SequenceAnnotation:
        name = self.sequence_names[seq_id]
        annotation = SequenceAnnotation(np.zeros((0, 4)))
        boxes = self.read_boxes(f"{name}/groundtruth.txt", annotation)
        num_frames = len(self.frames_of(seq_id))
        if len(boxes) > num_frames:
            if seq_id not in self._warned_rows:
                self._warned_rows.add(seq_id)
                log.warning("%s: %s has %d ground-truth rows but %d frames; using the first %d rows", self.name,
                            name, len(boxes), num_frames, num_frames)
            boxes = boxes[:num_frames]
        annotation.boxes = boxes
        annotation.visible = self.read_labels(f"{name}/absence.label", len(boxes), annotation, missing=0) == 0
        return annotation

    def frame_path(self, seq_id: int, frame_id: int) -> str:
        return f"{self.sequence_names[seq_id]}/{self.frames_of(seq_id)[frame_id]}"
