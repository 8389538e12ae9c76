"""Writing annotated videos (demo outputs, qualitative results)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from lib.utils.errors import UserError


class BoxVideoWriter:
    """MP4 (mp4v) writer that draws labelled boxes on RGB frames."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float = 25.0) -> None:
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not self.writer.isOpened():
            raise UserError(f"cannot open a video writer for {path} (mp4v codec); check the folder and disk")

    def write(self, rgb: np.ndarray, boxes: Sequence[tuple[str, Sequence[float], tuple[int, int, int]]],
              caption: str = "") -> None:
        """``boxes``: (label, [x, y, w, h], RGB colour) tuples drawn with their labels."""
        frame = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        for row, (label, box, colour) in enumerate(boxes):
            if box is None or not np.all(np.isfinite(box)):
                continue
            x, y, w, h = (int(round(v)) for v in box)
            bgr = tuple(int(c) for c in colour[::-1])
            cv2.rectangle(frame, (x, y), (x + w, y + h), bgr, 2)
            cv2.putText(frame, label, (5, 32 + 14 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.4, bgr, 1, cv2.LINE_AA)
        if caption:
            cv2.putText(frame, caption, (5, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        self.writer.write(frame)

    def close(self) -> None:
        self.writer.release()
