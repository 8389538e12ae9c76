"""Shared by the VOT tests: a saved tiny tracker, a direct reference run, the TraX transport tolerance."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

# TraX sends each number as text with 4 decimals, read back into a float32: our float64 box differs from
# what the client gets by at most 0.5e-4 (rounding) plus half a float32 step (3.1e-5 below 1024 px).
TRAX_TOLERANCE_PX = 1e-4


def save_tiny_tracker(folder: Path, model: torch.nn.Module, config_yaml: str) -> tuple[Path, Path]:
    """The config YAML and a checkpoint of ``model``, as the TraX entry loads them."""
    from lib.models import save_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tracker.yaml").write_text(config_yaml)
    return folder / "tracker.yaml", save_checkpoint(folder / "tracker.pth.tar", model, epoch=1)


def direct_boxes(config: Path, checkpoint: Path, frames: Sequence[np.ndarray], init_box: Sequence[float]
                 ) -> np.ndarray:
    """Our tracker's own boxes on ``frames``, on one thread like the TraX entry started with --threads 1."""
    from lib.test.tracker.factory import TrackerFactory

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tracker = TrackerFactory(str(config), "ostrack", str(checkpoint))("cpu")
        boxes = [tracker.initialize(frames[0], {"init_bbox": list(init_box)})["target_bbox"]]
        boxes += [tracker.track(frame)["target_bbox"] for frame in frames[1:]]
    finally:
        torch.set_num_threads(threads)
    return np.asarray(boxes, dtype=np.float64)
