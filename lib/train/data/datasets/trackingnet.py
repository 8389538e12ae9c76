"""TrackingNet training chunks: ``<root>/TRAIN_<k>/anno/<seq>.txt`` (x,y,w,h per line) and
``<root>/TRAIN_<k>/frames/<seq>/0.jpg, 1.jpg ...``. There are no occlusion flags: visible = valid = w,h > 0.

Chunks 0-11 are used by default; missing chunks (partial downloads) are named by the start-up check, which
counts each as the average number of sequences of the chunks found (about 2,500 in the full set). Classes come from
``lib/data/lists/trackingnet_classmap.txt`` (``<seq>\\t<class>`` per line) when that file is present.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lib.data.splits import LISTS_DIR
from lib.train.data.datasets.base import SequenceAnnotation, TrackingDataset
from lib.train.data.datasets.storage import Storage, open_storage

CLASS_MAP_FILE = LISTS_DIR / "trackingnet_classmap.txt"


def load_class_map(path: Path = CLASS_MAP_FILE) -> dict[str, str] | None:
    if not path.is_file():
        return None
    pairs = (line.split("\t") for line in path.read_text().splitlines() if "\t" in line)
    return {seq.strip(): cls.strip() for seq, cls in pairs}


class TrackingNet(TrackingDataset):
    layout = "<root>/TRAIN_<k>/anno/<seq>.txt and <root>/TRAIN_<k>/frames/<seq>/<i>.jpg (i from 0)"

    def __init__(self, root: str | Path | Storage, chunks: Iterable[int] = range(12),
                 sequence_names: Iterable[str] | None = None, storage: str = "folder") -> None:
        super().__init__("TrackingNet", open_storage(root, storage))
        wanted = None if sequence_names is None else set(sequence_names)
        self.chunk_of: list[int] = []
        missing_chunks, no_frames = [], []
        for chunk in chunks:
            folder = f"TRAIN_{chunk}"
            if not self.storage.is_dir(folder):
                missing_chunks.append(folder)
                continue
            with_frames = set(self.storage.list_subdirs(f"{folder}/frames"))
            for file_name in self.storage.list_files(f"{folder}/anno"):
                name = file_name[:-4]
                if not file_name.endswith(".txt") or (wanted is not None and name not in wanted):
                    continue
                if name not in with_frames:
                    no_frames.append(name)
                    continue
                self.sequence_names.append(name)
                self.chunk_of.append(chunk)
        self.report_skipped("without a frames folder", no_frames)
        found_chunks = len(set(self.chunk_of))
        per_chunk = len(self.sequence_names) / found_chunks if found_chunks else 1.0
        self.report_skipped("(not found)", missing_chunks, what="chunk folder(s)",
                            sequences=len(missing_chunks) * per_chunk)
        self.require_sequences(self.sequence_names)
        self.class_map = load_class_map()
        self.provides_classes = self.class_map is not None

    def get_class_name(self, seq_id: int) -> str | None:
        return None if self.class_map is None else self.class_map.get(self.sequence_names[seq_id])

    def annotation_files(self, seq_id: int) -> list[str]:
        return [f"TRAIN_{self.chunk_of[seq_id]}/anno/{self.sequence_names[seq_id]}.txt"]

    def read_annotation(self, seq_id: int) -> SequenceAnnotation:
        annotation = SequenceAnnotation(np.zeros((0, 4)))
        annotation.boxes = self.read_boxes(self.annotation_files(seq_id)[0], annotation)
        return annotation

    def keep_sequences(self, seq_ids: list[int]) -> None:
        super().keep_sequences(seq_ids)
        self.chunk_of = [self.chunk_of[i] for i in seq_ids]

    def frame_path(self, seq_id: int, frame_id: int) -> str:
        return f"TRAIN_{self.chunk_of[seq_id]}/frames/{self.sequence_names[seq_id]}/{frame_id}.jpg"
