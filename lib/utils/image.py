"""Image reading shared by the trackers, the benchmark runner and the training loaders."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lib.utils.errors import UserError


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to an RGB uint8 array (OpenCV's decoder, as in the official code)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"cannot read image {path} (missing, unreadable or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
