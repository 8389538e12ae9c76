"""Your own videos: ``<root>/<seq>/`` with ``groundtruth.txt`` and the frames in ``img/`` or the folder itself.

``groundtruth.txt`` holds ``x,y,w,h`` per frame (comma, tab or space); a single line is enough to run a tracker
(only the first box initialises it; more rows let the usual metrics score it). Frames are any jpg/png/bmp
files, in natural order (``2.jpg`` before ``10.jpg``). ``root`` may also be one such sequence folder.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lib.test.evaluation.benchmarks.common import (
    build_sequences,
    listed_frames,
    load_annotation_boxes,
    select_names,
    subfolders,
)
from lib.test.evaluation.data import Sequence
from lib.utils.errors import DatasetError

GROUND_TRUTH = "groundtruth.txt"


def read_folder(root: Path, names: Iterable[str] | None) -> list[Sequence]:
    single = (root / GROUND_TRUTH).is_file()
    available = [root.name] if single else [name for name in subfolders(root) if (root / name / GROUND_TRUTH).is_file()]
    if not available:
        raise DatasetError(f"no sequences in {root}: expected sub-folders <seq>/ each holding {GROUND_TRUTH} "
                           "(x,y,w,h per frame) and the frames (in <seq>/img/ or <seq>/ itself)")

    def build(name: str) -> Sequence:
        seq_dir = root if single else root / name
        frame_dir = seq_dir / "img" if (seq_dir / "img").is_dir() else seq_dir
        boxes = load_annotation_boxes(seq_dir / GROUND_TRUTH)
        frames = listed_frames(frame_dir)
        if len(boxes) > len(frames):
            raise DatasetError(f"{seq_dir / GROUND_TRUTH}: {len(boxes)} boxes but only {len(frames)} frames "
                               f"in {frame_dir}")
        return Sequence(name, frames, "folder", boxes)

    return build_sequences(select_names(available, names, "folder"), build, "folder", root)
