"""Local VOT toolkit workspaces and the trajectories the toolkit records, without the toolkit itself.

A workspace (read by ``vot evaluate --workspace W``) is::

    W/config.yaml                 registry: [trackers.ini], stack: stack.yaml
    W/stack.yaml                  one experiment (default: 'baseline', unsupervised, one repetition)
    W/trackers.ini                the tracker entries (:func:`trackers_ini_entry`)
    W/sequences/list.txt          one sequence name per line
    W/sequences/<seq>/sequence    channels.color=color/%08d.<ext>, fps
    W/sequences/<seq>/color/00000001.<ext> ...    the frames (links to the originals where possible)
    W/sequences/<seq>/groundtruth.txt             x,y,w,h per frame

and the toolkit writes ``W/results/<tracker>/<experiment>/<seq>/<seq>_001.bin`` (or ``.txt`` with
``VOT_RESULTS_BINARY=0``): one region per frame, the first frame marked as an initialisation.
"""
from __future__ import annotations

import os
import shlex
import shutil
import struct
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from lib.utils.errors import UserError
from lib.utils.io import atomic_write_text
from lib.utils.paths import REPO_ROOT

DEFAULT_TOOLS_ENV = REPO_ROOT / ".venv-tools" / "vot"  # where `bash install.sh --tools vot` builds the toolkit
INITIALIZATION = 1  # VOT's special region codes: 0 unknown, 1 initialisation, 2 failure
Region = list[float] | int  # a rectangle [x, y, w, h], a polygon [x1, y1, x2, y2, ...], or a special code


def write_sequence(folder: str | Path, frames: Sequence[str | Path], boxes: np.ndarray, fps: int = 30) -> Path:
    """One sequence in the VOT toolkit's format: frames linked (copied where links fail), x,y,w,h ground truth."""
    folder = Path(folder)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(frames) == 0 or len(boxes) != len(frames):
        raise UserError(f"sequence {folder.name}: {len(frames)} frames and {len(boxes)} boxes; need one box a frame")
    extension = Path(frames[0]).suffix.lower() or ".jpg"
    color = folder / "color"
    color.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames, start=1):
        target = color / f"{index:08d}{extension}"
        if target.is_symlink() or target.exists():
            target.unlink()
        try:
            target.symlink_to(Path(frame).resolve())
        except OSError:
            shutil.copyfile(frame, target)
    atomic_write_text(folder / "groundtruth.txt", "".join(",".join(f"{v:.17g}" for v in box) + "\n" for box in boxes))
    atomic_write_text(folder / "sequence", f"channels.color=color/%08d{extension}\nfps={fps}\nformat=default\n"
                                           f"length={len(frames)}\n")
    return folder


def write_workspace(root: str | Path, sequences: Mapping[str, tuple[Sequence[str | Path], np.ndarray]],
                    trackers_ini: str, experiment: str = "baseline") -> Path:
    """A VOT workspace at ``root`` with ``sequences`` (name -> (frames, boxes)), one unsupervised experiment
    and the given ``trackers.ini`` text; ready for ``vot evaluate --workspace root <tracker>``."""
    root = Path(root)
    for name, (frames, boxes) in sequences.items():
        write_sequence(root / "sequences" / name, frames, boxes)
    atomic_write_text(root / "sequences" / "list.txt", "".join(f"{name}\n" for name in sequences))
    atomic_write_text(root / "stack.yaml", f"title: LoReTrack local stack\nexperiments:\n  {experiment}:\n"
                                          "    type: unsupervised\n    repetitions: 1\n")
    atomic_write_text(root / "trackers.ini", trackers_ini)
    atomic_write_text(root / "config.yaml", "registry:\n- ./trackers.ini\nstack: stack.yaml\n")
    (root / "results").mkdir(exist_ok=True)
    return root


def trackers_ini_entry(identifier: str, config: str, checkpoint: str | None = None, script: str = "ostrack",
                       backend: str = "eager", label: str | None = None, python: str | None = None,
                       timeout: int = 120, extra_args: Sequence[str] = ()) -> str:
    """A ``trackers.ini`` section that runs ``tracking/vot_tracker.py`` with this interpreter (or ``python``).

    ``timeout`` is the seconds the toolkit waits for each reply, the first one included: that one covers
    starting Python, importing torch and loading the weights (the toolkit's default, 30 s, can be too short).
    """
    command = [python or sys.executable, str(REPO_ROOT / "tracking" / "vot_tracker.py"), "--script", script,
               "--config", str(config)]
    if checkpoint is not None:
        command += ["--checkpoint", str(checkpoint)]
    if backend != "eager":
        command += ["--backend", backend]
    command += list(extra_args)
    return (f"[{identifier}]\nlabel = {label or identifier}\nprotocol = trax\n"
            f"command = {shlex.join(command)}\ntimeout = {timeout}\n")


def result_file(root: str | Path, tracker: str, sequence: str, experiment: str = "baseline",
                repetition: int = 1) -> Path:
    """The trajectory file the toolkit wrote for one run (binary by default, text with VOT_RESULTS_BINARY=0)."""
    stem = Path(root) / "results" / tracker / experiment / sequence / f"{sequence}_{repetition:03d}"
    for suffix in (".bin", ".txt"):
        if stem.with_suffix(suffix).is_file():
            return stem.with_suffix(suffix)
    raise UserError(f"no VOT result {stem}.bin or .txt; did `vot evaluate` run tracker '{tracker}' on '{sequence}'?")


def read_trajectory(path: str | Path) -> list[Region]:
    """The regions of a VOT trajectory file, text or the toolkit's binary format (format version 1)."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) >= 2 and struct.unpack_from("<h", data)[0] == 1 and path.suffix == ".bin":
        return _read_binary_trajectory(data, path)
    return [_parse_region(line, path) for line in data.decode("utf-8").splitlines() if line.strip()]


def _parse_region(line: str, path: Path) -> Region:
    if line.startswith("m"):
        raise UserError(f"{path}: mask regions are not supported (rectangles and polygons only)")
    values = [float(v) for v in line.split(",")]
    if len(values) == 1:
        return int(values[0])
    if len(values) == 4 or (len(values) > 4 and len(values) % 2 == 0):
        return values
    raise UserError(f"{path}: cannot read region '{line}'")


def _read_binary_trajectory(data: bytes, path: Path) -> list[Region]:
    offset = struct.calcsize("<hI")
    (count,) = struct.unpack_from("<I", data, 2)
    regions: list[Region] = []
    for _ in range(count):
        (kind,) = struct.unpack_from("<B", data, offset)
        offset += 1
        if kind == 0:  # special
            (code,) = struct.unpack_from("<I", data, offset)
            offset += 4
            regions.append(int(code))
        elif kind == 1:  # rectangle
            regions.append([float(v) for v in struct.unpack_from("<4f", data, offset)])
            offset += 16
        elif kind == 2:  # polygon
            (points,) = struct.unpack_from("<H", data, offset)
            regions.append([float(v) for v in struct.unpack_from(f"<{2 * points}f", data, offset + 2)])
            offset += 2 + 8 * points
        else:
            raise UserError(f"{path}: region type {kind} (mask or point) is not supported")
    return regions


def trajectory_boxes(regions: Sequence[Region]) -> np.ndarray:
    """(N, 4) x, y, w, h per frame: rectangles as they are, polygons as their bounding box, special codes NaN."""
    from lib.test.vot.trax_server import polygon_to_box

    boxes = np.full((len(regions), 4), np.nan)
    for index, region in enumerate(regions):
        if isinstance(region, list):
            xy = np.asarray(region).reshape(-1, 2)
            boxes[index] = region if len(region) == 4 else polygon_to_box(xy)
    return boxes


def vot_command(tools_env: str | Path = DEFAULT_TOOLS_ENV) -> Path:
    """The ``vot`` executable of a tools environment (``bash install.sh --tools vot``)."""
    path = Path(tools_env) / "bin" / "vot"
    if not os.access(path, os.X_OK):
        raise UserError(f"the VOT toolkit is not installed at {path}; run `bash install.sh --tools vot`")
    return path
