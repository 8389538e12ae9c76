"""A tiny generated clip with exact boxes, for smoke runs and speed measurements (no data needed)."""
from __future__ import annotations

import numpy as np


def moving_square_clip(num_frames: int, size: tuple[int, int] = (240, 320), target: int = 40, seed: int = 0
                       ) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames (H, W, 3) uint8 of a textured square sliding over texture, with its (x, y, w, h) boxes."""
    rng = np.random.default_rng(seed)
    height, width = size
    background = rng.integers(0, 255, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    background = background.repeat(8, 0).repeat(8, 1)[:height, :width]
    patch = rng.integers(0, 255, (target, target, 3), dtype=np.uint8)
    frames, boxes = [], []
    for t in range(num_frames):
        x = int(target + (width - 3 * target) * t / max(num_frames - 1, 1))
        y = int(height / 2 - target / 2 + 0.15 * height * np.sin(t / 5))
        frame = background.copy()
        frame[y:y + target, x:x + target] = patch
        frames.append(frame)
        boxes.append([x, y, target, target])
    return frames, np.array(boxes, dtype=np.float64)
