"""COCO 2017 as one-frame sequences: every non-crowd instance of ``<root>/annotations/instances_train2017.json``
is a sequence whose single frame is its image, in ``<root>/images/train2017/`` or ``<root>/train2017/``.

The JSON is parsed once and only boxes, image file names and categories are kept (compact arrays), so the
roughly 450 MB of parsed JSON is freed after loading.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lib.train.data.annotations import box_problems
from lib.train.data.datasets.base import TrackingDataset, sequence_info
from lib.train.data.datasets.storage import Storage, open_storage
from lib.utils.errors import DatasetError


class Coco17(TrackingDataset):
    layout = "<root>/annotations/instances_train2017.json and images in <root>/images/train2017/ or <root>/train2017/"
    provides_classes = True

    def __init__(self, root: str | Path | Storage, split: str = "train", version: str = "2017",
                 storage: str = "folder") -> None:
        super().__init__(f"COCO{version[-2:]}", open_storage(root, storage))
        image_set = f"{split}{version}"
        annotation_file = f"annotations/instances_{image_set}.json"
        candidates = [f"images/{image_set}", image_set]
        self.image_dir = next((d for d in candidates if self.storage.is_dir(d)), None)
        if self.image_dir is None:
            raise DatasetError(f"{self.name}: no image folder {' or '.join(candidates)} in {self.storage.describe()}")
        try:
            content = json.loads(self.storage.read_bytes(annotation_file))
        except FileNotFoundError:
            raise DatasetError(f"{self.name}: {self.storage.describe()}/{annotation_file} is missing; expected "
                               f"{self.layout}") from None
        except json.JSONDecodeError as err:
            raise DatasetError(f"{self.name}: {annotation_file} is not valid JSON ({err}); re-download it") from None
        self._load(content)
        self.require_sequences(self.annotation_ids)

    def _load(self, content: dict[str, Any]) -> None:
        image_row = {image["id"]: row for row, image in enumerate(content["images"])}
        self.image_files = [image["file_name"] for image in content["images"]]
        category_row = {cat["id"]: row for row, cat in enumerate(content["categories"])}
        self.category_names = [cat["name"] for cat in content["categories"]]
        self.supercategories = [cat.get("supercategory") for cat in content["categories"]]
        instances = [a for a in content["annotations"] if not a.get("iscrowd", 0)]
        self.annotation_ids = np.array([a["id"] for a in instances], dtype=np.int64)
        self.boxes = np.array([a["bbox"] for a in instances], dtype=np.float32).reshape(-1, 4)
        self.image_of = np.array([image_row[a["image_id"]] for a in instances], dtype=np.int64)
        self.category_of = np.array([category_row[a["category_id"]] for a in instances], dtype=np.int64)

    def is_video_sequence(self) -> bool:
        return False

    def get_num_sequences(self) -> int:
        return len(self.annotation_ids)

    def get_sequence_name(self, seq_id: int) -> str:
        return str(self.annotation_ids[seq_id])

    def get_sequence_info(self, seq_id: int) -> dict[str, torch.Tensor]:
        return sequence_info(self.boxes[seq_id:seq_id + 1])

    def check_all(self) -> dict[str, Any]:
        """The start-up check of every instance at once (one JSON file, already parsed): bad boxes by cause."""
        found = box_problems(self.boxes.astype(np.float64))
        return {"frames": len(self.boxes), "problems": dict(found.problems),
                "example": f"instances_train2017.json: instance {found.example}" if found.example else None}

    def keep_sequences(self, seq_ids: list[int]) -> None:
        rows = np.asarray(seq_ids, dtype=np.int64)
        self.annotation_ids, self.boxes = self.annotation_ids[rows], self.boxes[rows]
        self.image_of, self.category_of = self.image_of[rows], self.category_of[rows]

    def frame_path(self, seq_id: int, frame_id: int) -> str:
        return f"{self.image_dir}/{self.image_files[self.image_of[seq_id]]}"

    def get_class_name(self, seq_id: int) -> str:
        return self.category_names[self.category_of[seq_id]]

    def get_class_list(self) -> list[str]:
        return sorted(set(self.category_names))

    def get_sequences_in_class(self, class_name: str) -> list[int]:
        rows = [row for row, name in enumerate(self.category_names) if name == class_name]
        return np.flatnonzero(np.isin(self.category_of, rows)).tolist()

    def get_meta(self, seq_id: int) -> dict[str, Any]:
        meta = super().get_meta(seq_id)
        meta["major_class"] = self.supercategories[self.category_of[seq_id]]
        return meta
