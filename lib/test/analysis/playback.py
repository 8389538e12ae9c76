"""Playback: one sequence with the ground truth and several trackers' boxes, to an MP4 and a contact sheet.

Trackers come from raw result folders (ours or published ones), found with the analysis's own result-file
reader, and the per-frame IoU is the one the analysis scores (:func:`lib.test.analysis.metrics.frame_errors`:
frame 0 counts as the ground truth, frames without a valid ground-truth box have no IoU). Each video frame is
the image with every box, and a panel below it: a legend (name, colour, average overlap) and an IoU strip that
plots each tracker's IoU over the whole sequence with a cursor at the current frame. The contact sheet shows
the hardest frames: those with the lowest IoU averaged over the trackers.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lib.test.analysis.metrics import frame_errors
from lib.test.analysis.result_files import TrackerSpec, find_result_file, load_result_boxes
from lib.test.evaluation.data import Sequence as BenchmarkSequence
from lib.utils.errors import UserError
from lib.utils.image import read_rgb
from lib.utils.io import atomic_path, atomic_write_bytes
from lib.utils.video import BoxVideoWriter

RGB = tuple[int, int, int]
GROUND_TRUTH_NAME = "ground truth"
GROUND_TRUTH_COLOUR: RGB = (0, 255, 0)
# Saturated, mutually distant colours (none close to the ground truth's green), one per tracker.
TRACKER_COLOURS: tuple[RGB, ...] = ((255, 40, 40), (40, 120, 255), (255, 220, 0), (255, 0, 255), (0, 230, 230),
                                    (255, 140, 0), (150, 80, 255), (255, 150, 200), (140, 90, 40), (0, 120, 60))
DEFAULT_TILES = 12
DEFAULT_FPS = 25.0
TILE_COLUMNS = 4
TILE_WIDTH = 320

FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.45
SWATCH = 12  # legend colour square, pixels
LEGEND_ROW_HEIGHT = 20
STRIP_HEIGHT = 72
STRIP_MARGIN = 6
PANEL_BACKGROUND: RGB = (24, 24, 24)
STRIP_BACKGROUND: RGB = (48, 48, 48)
GRID_COLOUR: RGB = (90, 90, 90)
CURSOR_COLOUR: RGB = (255, 255, 255)


# ---------------------------------------------------------------------------------------------------- inputs

def find_sequence_result(folder: Path, seq: BenchmarkSequence) -> Path:
    """The tracker's box file for ``seq`` in ``folder``, named as the analysis finds it (one place to switch).

    Raises a :class:`UserError` when there is none or when two files match.
    """
    return find_result_file(folder, seq.name, seq.dataset)


def trackers_in_root(result_root: str | Path) -> list[TrackerSpec]:
    """Every sub-folder of ``result_root`` as one tracker named after the folder (the analysis's rule)."""
    return TrackerSpec.from_root(result_root)


@dataclass(frozen=True)
class TrackerTrack:
    """One tracker on one sequence: its raw boxes (as written) and its per-frame IoU (NaN where none is defined)."""

    name: str
    colour: RGB
    source: Path
    boxes: np.ndarray
    iou: np.ndarray

    @property
    def average_overlap(self) -> float:
        valid = np.isfinite(self.iou)
        return float(self.iou[valid].mean()) if valid.any() else float("nan")


def load_track(spec: TrackerSpec, seq: BenchmarkSequence, colour: RGB) -> TrackerTrack:
    """The tracker's boxes on ``seq`` and their IoU with the ground truth; missing results are a user error."""
    folder = spec.run_dirs[0]
    if not folder.is_dir():
        raise UserError(f"results of '{spec.display_name}': folder {folder} does not exist; fix the path given "
                        "with --tracker or --result_root")
    try:
        path = find_sequence_result(folder, seq)
    except UserError as err:
        reason = getattr(err, "reason", err)
        raise UserError(f"tracker '{spec.display_name}', sequence '{seq.name}': {reason}") from None
    boxes = load_result_boxes(path)
    try:
        iou, *_, valid = frame_errors(boxes, seq.ground_truth_rect, seq.dataset, seq.target_visible)
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
    iou = np.where(valid, iou, np.nan)
    return TrackerTrack(spec.display_name, colour, path, boxes, fit_to_frames(iou, len(seq.frames)))


def fit_to_frames(values: np.ndarray, num_frames: int) -> np.ndarray:
    """Per-ground-truth-frame values on the sequence's frames (NaN where the ground truth has no row)."""
    fitted = np.full(num_frames, np.nan)
    count = min(num_frames, len(values))
    fitted[:count] = values[:count]
    return fitted


def check_sequence(seq: BenchmarkSequence, dataset: str) -> None:
    if len(seq.ground_truth_rect) < 2:
        raise UserError(f"'{seq.name}' of dataset '{dataset}' has only a first-frame box, so no IoU can be shown; "
                        "pick a split with full annotations")


# ----------------------------------------------------------------------------------------------- hard frames

def mean_frame_iou(tracks: Sequence[TrackerTrack]) -> np.ndarray:
    """IoU averaged over the trackers per frame; NaN where the ground truth gives no IoU."""
    return np.mean(np.stack([track.iou for track in tracks]), axis=0)


def hardest_frames(mean_iou: np.ndarray, count: int = DEFAULT_TILES) -> np.ndarray:
    """Indices of the ``count`` frames with the lowest mean IoU, lowest first (ties: earlier frame first).

    Frames without an IoU (NaN) are never chosen, so fewer are returned when fewer frames have one.
    """
    mean_iou = np.asarray(mean_iou, dtype=np.float64)
    scored = np.flatnonzero(np.isfinite(mean_iou))
    order = scored[np.argsort(mean_iou[scored], kind="stable")]
    return order[:count]


# ------------------------------------------------------------------------------------------------- drawing

@dataclass(frozen=True)
class LegendEntry:
    label: str
    colour: RGB
    swatch: tuple[int, int, int, int]  # x0, y0, x1, y1 in the output frame (inclusive)


@dataclass(frozen=True)
class PanelLayout:
    """Where the legend swatches and the IoU strip sit in a video frame (also what the tests check)."""

    frame_width: int
    frame_height: int
    legend: tuple[LegendEntry, ...]
    strip_top: int
    height: int  # total, even (video encoders want even sizes)
    width: int

    def strip_x(self, index: int | np.ndarray, num_frames: int) -> np.ndarray:
        span = self.width - 2 * STRIP_MARGIN - 1
        return STRIP_MARGIN + np.rint(np.asarray(index) * span / max(num_frames - 1, 1)).astype(np.int32)

    def strip_y(self, iou: np.ndarray) -> np.ndarray:
        span = STRIP_HEIGHT - 2 * STRIP_MARGIN - 1
        bottom = self.strip_top + STRIP_HEIGHT - STRIP_MARGIN - 1
        return np.rint(bottom - np.clip(iou, 0.0, 1.0) * span).astype(np.int32)


def text_width(text: str) -> int:
    return cv2.getTextSize(text, FONT, FONT_SCALE, 1)[0][0]


def panel_layout(frame_width: int, frame_height: int, labels: Sequence[tuple[str, RGB]]) -> PanelLayout:
    """Legend entries wrapped into rows under the frame, then the IoU strip."""
    width = frame_width + frame_width % 2
    entries, x, row = [], STRIP_MARGIN, 0
    for label, colour in labels:
        entry_width = SWATCH + 4 + text_width(label) + 14
        if x > STRIP_MARGIN and x + entry_width > width:
            x, row = STRIP_MARGIN, row + 1
        y0 = frame_height + row * LEGEND_ROW_HEIGHT + (LEGEND_ROW_HEIGHT - SWATCH) // 2
        entries.append(LegendEntry(label, colour, (x, y0, x + SWATCH - 1, y0 + SWATCH - 1)))
        x += entry_width
    strip_top = frame_height + (row + 1) * LEGEND_ROW_HEIGHT
    height = strip_top + STRIP_HEIGHT
    return PanelLayout(frame_width, frame_height, tuple(entries), strip_top, height + height % 2, width)


def draw_box(image: np.ndarray, box: np.ndarray, colour: RGB, thickness: int = 2) -> None:
    if not np.all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
        return
    x, y, w, h = (int(round(v)) for v in box)
    cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), colour, thickness)


def draw_label(image: np.ndarray, text: str, origin: tuple[int, int], colour: RGB = (255, 255, 255)) -> None:
    """Text on a dark backing box so that it reads on any image."""
    (w, h), baseline = cv2.getTextSize(text, FONT, FONT_SCALE, 1)
    x, y = origin
    cv2.rectangle(image, (x - 2, y - h - 3), (x + w + 2, y + baseline), (0, 0, 0), cv2.FILLED)
    cv2.putText(image, text, (x, y), FONT, FONT_SCALE, colour, 1, cv2.LINE_AA)


class PlaybackRenderer:
    """Draws the frames of one sequence; the static parts of the panel are drawn once."""

    def __init__(self, seq: BenchmarkSequence, tracks: Sequence[TrackerTrack], num_frames: int,
                 frame_size: tuple[int, int]) -> None:
        self.seq, self.tracks, self.num_frames = seq, tracks, num_frames
        width, height = frame_size
        labels = [(GROUND_TRUTH_NAME, GROUND_TRUTH_COLOUR)]
        labels += [(f"{t.name} (AO {t.average_overlap:.3f})", t.colour) for t in tracks]
        self.layout = panel_layout(width, height, labels)
        self.panel = self._static_panel()

    def _static_panel(self) -> np.ndarray:
        layout = self.layout
        canvas = np.empty((layout.height, layout.width, 3), dtype=np.uint8)
        canvas[:] = PANEL_BACKGROUND
        for entry in layout.legend:
            x0, y0, x1, y1 = entry.swatch
            cv2.rectangle(canvas, (x0, y0), (x1, y1), entry.colour, cv2.FILLED)
            cv2.putText(canvas, entry.label, (x1 + 5, y1), FONT, FONT_SCALE, (230, 230, 230), 1, cv2.LINE_AA)
        top = layout.strip_top
        cv2.rectangle(canvas, (0, top), (layout.width - 1, top + STRIP_HEIGHT - 1), STRIP_BACKGROUND, cv2.FILLED)
        for level in (0.0, 0.5, 1.0):
            y = int(layout.strip_y(np.array(level)))
            cv2.line(canvas, (STRIP_MARGIN, y), (layout.width - STRIP_MARGIN - 1, y), GRID_COLOUR, 1)
        frames = np.arange(self.num_frames)
        for track in self.tracks:
            iou = track.iou[:self.num_frames]
            points = np.stack([layout.strip_x(frames, self.num_frames), layout.strip_y(np.nan_to_num(iou))], axis=1)
            scored = np.flatnonzero(np.isfinite(iou))
            for run in np.split(scored, np.flatnonzero(np.diff(scored) > 1) + 1):  # the line breaks at gaps
                if len(run) > 1:
                    cv2.polylines(canvas, [points[run].reshape(-1, 1, 2)], False, track.colour, 1, cv2.LINE_AA)
        return canvas

    def image_part(self, index: int) -> np.ndarray:
        """The frame with every box and its caption (what a contact-sheet tile shows)."""
        image = read_rgb(self.seq.frames[index])
        if image.shape[:2] != (self.layout.frame_height, self.layout.frame_width):
            raise UserError(f"frame {self.seq.frames[index]} is {image.shape[1]}x{image.shape[0]} but the sequence "
                            f"starts at {self.layout.frame_width}x{self.layout.frame_height}; fix the frame folder")
        gt = self.seq.ground_truth_rect
        if index < len(gt):
            draw_box(image, gt[index], GROUND_TRUTH_COLOUR)
        for track in self.tracks:
            if index < len(track.boxes):
                draw_box(image, track.boxes[index], track.colour)
        draw_label(image, f"{self.seq.name}  frame {index + 1}/{len(self.seq.frames)}", (4, 14))
        return image

    def compose(self, image: np.ndarray, index: int) -> np.ndarray:
        """The full video frame: the image above the panel, with the strip's cursor at ``index``."""
        canvas = self.panel.copy()
        canvas[:image.shape[0], :image.shape[1]] = image
        x = int(self.layout.strip_x(index, self.num_frames))
        top = self.layout.strip_top
        cv2.line(canvas, (x, top + 1), (x, top + STRIP_HEIGHT - 2), CURSOR_COLOUR, 1)
        for track in self.tracks:
            value = track.iou[index]
            if np.isfinite(value):
                cv2.circle(canvas, (x, int(self.layout.strip_y(np.array(value)))), 3, track.colour, cv2.FILLED)
        return canvas


def contact_sheet(tiles: Sequence[tuple[np.ndarray, str]], columns: int = TILE_COLUMNS,
                  tile_width: int = TILE_WIDTH) -> np.ndarray:
    """Labelled images resized to ``tile_width`` on a grid, row by row."""
    if not tiles:
        raise UserError("no frame to put on the contact sheet")
    first = tiles[0][0]
    tile_height = int(round(first.shape[0] * tile_width / first.shape[1]))
    rows = -(-len(tiles) // columns)
    sheet = np.zeros((rows * tile_height, min(columns, len(tiles)) * tile_width, 3), dtype=np.uint8)
    for position, (image, label) in enumerate(tiles):
        tile = cv2.resize(image, (tile_width, tile_height), interpolation=cv2.INTER_AREA)
        draw_label(tile, label, (4, tile_height - 6), (255, 255, 0))
        row, column = divmod(position, columns)
        sheet[row * tile_height:(row + 1) * tile_height, column * tile_width:(column + 1) * tile_width] = tile
    return sheet


# ------------------------------------------------------------------------------------------------- running

@dataclass(frozen=True)
class PlaybackResult:
    video: Path
    contact_sheet: Path
    num_frames: int
    tracks: tuple[TrackerTrack, ...]
    hardest: tuple[tuple[int, float], ...]  # (frame index, mean IoU), lowest first
    layout: PanelLayout


def output_names(dataset: str, sequence: str) -> tuple[str, str]:
    stem = f"{dataset}_{sequence}"
    return f"{stem}_playback.mp4", f"{stem}_hardest.png"


def prepare_output_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create output folder {folder} ({err.strerror}); choose a writable --output_dir") \
            from None
    if not os.access(folder, os.W_OK):
        raise UserError(f"output folder {folder} is not writable; choose a writable --output_dir")


def render_playback(seq: BenchmarkSequence, trackers: Iterable[TrackerSpec], output_dir: str | Path,
                    dataset: str | None = None, max_frames: int | None = None, fps: float | None = None,
                    tiles: int | None = None) -> PlaybackResult:
    """Write the playback video and the hardest-frames contact sheet of ``seq`` into ``output_dir``."""
    trackers = list(trackers)
    fps = DEFAULT_FPS if fps is None else fps
    tiles = DEFAULT_TILES if tiles is None else tiles
    dataset = dataset or seq.dataset
    if not trackers:
        raise UserError("no tracker to show; give --tracker NAME=DIR (repeatable) or --result_root DIR")
    if len(trackers) > len(TRACKER_COLOURS):
        raise UserError(f"{len(trackers)} trackers but at most {len(TRACKER_COLOURS)} can be told apart by colour; "
                        "show fewer at a time")
    names = [spec.display_name for spec in trackers]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UserError(f"tracker name(s) {repeated} given twice; name each tracker once (--tracker NAME=DIR)")
    if max_frames is not None and max_frames < 1:
        raise UserError(f"--max_frames must be at least 1, got {max_frames}")
    if tiles < 1:
        raise UserError(f"--tiles must be at least 1, got {tiles}")
    if not fps > 0:
        raise UserError(f"--fps must be positive, got {fps}")
    check_sequence(seq, dataset)
    tracks = tuple(load_track(spec, seq, colour) for spec, colour in zip(trackers, TRACKER_COLOURS, strict=False))
    num_frames = min(len(seq.frames), max_frames or len(seq.frames))
    mean_iou = mean_frame_iou(tracks)[:num_frames]
    chosen = hardest_frames(mean_iou, tiles)
    if not len(chosen):
        raise UserError(f"no frame of '{seq.name}' has a valid ground-truth box, so no IoU can be shown; check its "
                        "annotation file")
    output_dir = Path(output_dir)
    prepare_output_dir(output_dir)
    video_name, sheet_name = output_names(dataset, seq.name)
    video_path, sheet_path = output_dir / video_name, output_dir / sheet_name

    first = read_rgb(seq.frames[0])
    renderer = PlaybackRenderer(seq, tracks, num_frames, (first.shape[1], first.shape[0]))
    layout = renderer.layout
    tile_images: dict[int, np.ndarray] = {}
    wanted = set(chosen.tolist())
    try:
        with atomic_path(video_path, suffix=".tmp.mp4") as tmp:
            writer = BoxVideoWriter(tmp, layout.width, layout.height, fps=fps)
            try:
                for index in range(num_frames):
                    image = renderer.image_part(index)
                    if index in wanted:
                        tile_images[index] = image
                    writer.write(renderer.compose(image, index), [])
            finally:
                writer.close()
        tiles_with_labels = [(tile_images[i], f"frame {i + 1}  mean IoU {mean_iou[i]:.3f}") for i in chosen]
        ok, png = cv2.imencode(".png", cv2.cvtColor(contact_sheet(tiles_with_labels), cv2.COLOR_RGB2BGR))
        if not ok:
            raise UserError(f"cannot encode the contact sheet for {sheet_path}")
        atomic_write_bytes(sheet_path, png.tobytes())
    except OSError as err:
        raise UserError(f"cannot write to {output_dir} ({err.strerror}); choose a writable --output_dir with free "
                        "space") from None
    hardest = tuple((int(i), float(mean_iou[i])) for i in chosen)
    return PlaybackResult(video_path, sheet_path, num_frames, tracks, hardest, layout)
