"""One sequence on disk in the GOT-10k layout: JPEG frames, groundtruth.txt, the label files and meta_info.ini."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from lib.data.embedded.params import GENERATOR_VERSION, JPEG_QUALITY, sequence_name, sequence_rng
from lib.data.embedded.rendering import RenderedSequence, render_sequence

ANNO_FPS = 10
# OSTrack's GOT-10k loader reads lines 6-10 of meta_info.ini by position: these keys come first, in this order.
_OFFICIAL_META_KEYS = ("object_class", "motion_class", "major_class", "root_class", "motion_adverb", "resolution")

# (split folder, seed, split, index, (min, max) frames, (width, height)): plain values, so it pickles to a worker
SequenceJob = tuple[Path, int, str, int, tuple[int, int], tuple[int, int]]


def _clock(seconds: float) -> str:
    seconds = int(math.ceil(seconds))
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _write_frames(seq_dir: Path, frames: list[np.ndarray]) -> None:
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    for index, frame in enumerate(frames, start=1):
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise RuntimeError(f"OpenCV could not encode frame {index} of {seq_dir.name} as JPEG")
        (seq_dir / f"{index:08d}.jpg").write_bytes(encoded.tobytes())


def _meta_lines(name: str, num_frames: int, meta: dict[str, str], extra_meta: dict[str, str]) -> list[str]:
    lines = ["[METAINFO]", f"url: embedded://{name}", "begin: 00:00:00",
             f"end: {_clock(num_frames / ANNO_FPS)}", f"anno_fps: {ANNO_FPS}Hz"]
    lines += [f"{key}: {meta[key]}" for key in _OFFICIAL_META_KEYS]
    lines += [f"{key}: {value}" for key, value in meta.items() if key not in _OFFICIAL_META_KEYS]
    lines += [f"{key}: {value}" for key, value in extra_meta.items()]
    return lines


def write_sequence(seq_dir: Path, rendered: RenderedSequence, extra_meta: dict[str, str]) -> int:
    """GOT-10k files of one sequence; returns how many files were written."""
    seq_dir.mkdir(parents=True)
    _write_frames(seq_dir, rendered.frames)
    (seq_dir / "groundtruth.txt").write_text(
        "".join(f"{x:.4f},{y:.4f},{w:.4f},{h:.4f}\n" for x, y, w, h in rendered.boxes))
    for name, values in (("absence.label", rendered.absence), ("cover.label", rendered.cover),
                         ("cut_by_image.label", rendered.cut_by_image)):
        (seq_dir / name).write_text("".join(f"{int(v)}\n" for v in values))
    n = len(rendered.frames)
    (seq_dir / "meta_info.ini").write_text("\n".join(_meta_lines(seq_dir.name, n, rendered.meta, extra_meta)) + "\n")
    return n + 5


def render_and_write(job: SequenceJob) -> tuple[str, int, int, dict]:
    """Render and write one sequence (runs in a worker process); returns its name and counts for the manifest."""
    split_dir, seed, split, index, frames, size = job
    rng = sequence_rng(seed, split, index)
    num_frames = int(rng.integers(frames[0], frames[1] + 1))
    rendered = render_sequence(rng, num_frames, size)
    name = sequence_name(split, index)
    files = write_sequence(split_dir / name, rendered,
                           {"generator": f"lib.data.embedded v{GENERATOR_VERSION}", "seed": str(seed)})
    summary = {"absent_frames": int(rendered.absence.sum()),
               "occluded": rendered.meta["occlusion"] != "none", "distractor": rendered.meta["distractor"] != "none"}
    return name, num_frames, files, summary
