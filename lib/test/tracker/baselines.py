"""Reference trackers that any learned tracker must beat."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lib.utils.boxes import validate_init_box


class StaticBoxTracker:
    """Reports the initial box in every frame: the score of a target that never moves."""

    def __init__(self, device: str = "cpu") -> None:
        self.box: list[float] | None = None

    def initialize(self, image: np.ndarray, info: Mapping[str, Any]) -> dict[str, Any]:
        self.box = validate_init_box(info["init_bbox"], image.shape)
        return {"target_bbox": list(self.box)}

    def track(self, image: np.ndarray, info: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {"target_bbox": list(self.box)}
