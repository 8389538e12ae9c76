"""TrackingNet training chunks: ``<root>/TRAIN_<k>/anno/<seq>.txt`` (x,y,w,h per line) and
``<root>/TRAIN_<k>/frames/<seq>/0.jpg, 1.jpg ...``. There are no occlusion flags: visible = valid = w,h > 0.

Chunks 0-11 are used by default; missing chunks (partial downloads) are reported and skipped. Classes come from
``lib/data/lists/trackingnet_classmap.txt`` (``<seq>\\t<class>`` per line) when that file is present.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from lib.data.splits import LISTS_DIR
from lib.train.data.datasets.base import TrackingDataset, sequence_info
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
        self.report_skipped("(not found)", missing_chunks, what="chunk folder(s)")
        self.require_sequences(self.sequence_names)
        self.class_map = load_class_map()
        self.provides_classes = self.class_map is not None

    def get_class_name(self, seq_id: int) -> str | None:
        return None if self.class_map is None else self.class_map.get(self.sequence_names[seq_id])

    def get_sequence_info(self, seq_id: int) -> dict[str, torch.Tensor]:
        name = self.sequence_names[seq_id]
        return sequence_info(self.read_boxes(f"TRAIN_{self.chunk_of[seq_id]}/anno/{name}.txt"))

    def frame_path(self, seq_id: int, frame_id: int) -> str:
        return f"TRAIN_{self.chunk_of[seq_id]}/frames/{self.sequence_names[seq_id]}/{frame_id}.jpg"
