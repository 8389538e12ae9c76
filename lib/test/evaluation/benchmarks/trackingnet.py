"""TrackingNet test set: ``<root>/TEST/anno/<seq>.txt`` (first box only) and ``TEST/frames/<seq>/<i>.jpg``."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lib.test.evaluation.benchmarks.common import build_sequences, listed_frames, load_annotation_boxes, select_names
from lib.test.evaluation.data import Sequence
from lib.utils.errors import DatasetError


def read_trackingnet(root: Path, names: Iterable[str] | None) -> list[Sequence]:
    anno_dir = root / "TEST" / "anno"
    if not anno_dir.is_dir():
        raise DatasetError(f"TrackingNet annotations {anno_dir} not found; the root must contain TEST/anno and "
                           "TEST/frames (unzip the TEST chunk there)")
    available = sorted(path.stem for path in anno_dir.glob("*.txt"))

    def build(name: str) -> Sequence:
        frames = listed_frames(root / "TEST" / "frames" / name)
        return Sequence(name, frames, "trackingnet", load_annotation_boxes(anno_dir / f"{name}.txt"))

    return build_sequences(select_names(available, names, "trackingnet"), build, "trackingnet", root)
