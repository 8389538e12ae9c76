"""Film a planned scene: composite the layers over the camera's view, develop each frame, derive the labels.

The ground truth is exact: the tight box of the target's mask after its transform, clipped to the image. It still
marks the object while an occluder hides it; the cover level and the absence flag say how much of it is visible.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from lib.data.embedded.motion import Layer, motion_blur_kernel
from lib.data.embedded.scene import Scene, plan_scene

ABSENT_BELOW = 0.01  # visible share of the object under which a frame counts as fully hidden
FULLY_VISIBLE_FROM = 0.97  # anti-aliased edges never reach exactly 1

TargetRoi = tuple[int, int, np.ndarray]  # x0, y0 and the target's alpha in that region of the frame


@dataclass
class RenderedSequence:
    """Frames (RGB uint8) with their labels; the layer extras exist only when rendered with ``keep_layers``."""

    frames: list[np.ndarray]
    boxes: np.ndarray  # (n, 4) x, y, w, h of the object's mask, clipped to the image
    visible_ratio: np.ndarray
    cover: np.ndarray  # 0 (hidden) .. 8 (fully visible), GOT-10k style
    absence: np.ndarray
    cut_by_image: np.ndarray
    meta: dict[str, str]
    target_masks: np.ndarray | None = None  # (n, h, w) bool, before occlusion
    frames_without_target: list[np.ndarray] | None = None
    distractor_boxes: np.ndarray | None = None  # (n, 4), NaN rows where it is off-frame


def cover_level(ratio: float) -> int:
    """GOT-10k's cover label: 0 when hidden, 8 when fully visible, else eighths of the visible share."""
    if ratio < ABSENT_BELOW:
        return 0
    if ratio >= FULLY_VISIBLE_FROM:
        return 8
    return int(min(max(math.ceil(ratio * 8), 1), 7))


def _area_scale(linear: np.ndarray) -> float:
    return abs(float(linear[0, 0] * linear[1, 1] - linear[0, 1] * linear[1, 0]))


def mask_box(mask: np.ndarray, x0: int, y0: int) -> np.ndarray | None:
    """Tight x, y, w, h box of a mask whose top-left pixel sits at (x0, y0); None for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return None
    return np.array([x0 + cols[0], y0 + rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1], np.float64)


def _target_labels(target_roi: TargetRoi | None, hidden: np.ndarray | None, alpha_mass: float,
                   area_scale: float, previous: np.ndarray | None) -> tuple[np.ndarray, float, int]:
    """Box, visible share and cut-by-image flag of the target in one frame."""
    if target_roi is None or hidden is None:
        return (previous if previous is not None else np.zeros(4)), 0.0, 1
    x0, y0, alpha = target_roi
    box = mask_box(alpha > 0.5, x0, y0)
    if box is None:
        return (previous if previous is not None else np.zeros(4)), 0.0, 1
    in_image = float(alpha.sum())
    inside = min(in_image / max(alpha_mass * area_scale, 1e-6), 1.0)
    unoccluded = float((alpha * (1.0 - hidden)).sum()) / max(in_image, 1e-6)
    return box, inside * unoccluded, int(inside < FULLY_VISIBLE_FROM)


def _camera_view(background_rgba: np.ndarray, inverse_map: np.ndarray, width: int, height: int) -> np.ndarray:
    """The background as the camera sees it in one frame, as a float32 RGB canvas."""
    view = cv2.warpAffine(background_rgba, inverse_map, (width, height),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101)
    return cv2.cvtColor(view, cv2.COLOR_RGBA2RGB).astype(np.float32)


def _cover_target(hidden: np.ndarray, target_roi: TargetRoi, x0: int, y0: int, above: np.ndarray) -> None:
    """Add a layer drawn above the target (alpha ``above`` at x0, y0) to the target's hidden share, in place."""
    tx0, ty0, target_alpha = target_roi
    ix0, iy0 = max(x0, tx0), max(y0, ty0)
    ix1 = min(x0 + above.shape[1], tx0 + target_alpha.shape[1])
    iy1 = min(y0 + above.shape[0], ty0 + target_alpha.shape[0])
    if ix0 < ix1 and iy0 < iy1:
        covered = hidden[iy0 - ty0:iy1 - ty0, ix0 - tx0:ix1 - tx0]
        covered += (1.0 - covered) * above[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]


def _paste(canvases: list[np.ndarray], drawn: np.ndarray, x0: int, y0: int) -> None:
    """Composite a premultiplied RGBA layer over each canvas, in place."""
    rows, cols = slice(y0, y0 + drawn.shape[0]), slice(x0, x0 + drawn.shape[1])
    premultiplied = cv2.cvtColor(drawn, cv2.COLOR_RGBA2RGB)
    transparency = 1.0 - cv2.cvtColor(cv2.extractChannel(drawn, 3), cv2.COLOR_GRAY2RGB)
    for canvas in canvases:
        region = canvas[rows, cols]  # a view: cv2 writes through it
        cv2.multiply(region, transparency, dst=region)
        cv2.add(region, premultiplied, dst=region)


def _composite(layers: list[Layer], canvases: list[np.ndarray], t: int, distractor_boxes: np.ndarray
               ) -> tuple[TargetRoi | None, np.ndarray | None]:
    """Draw frame ``t``'s layers back to front; the second canvas, if any, gets everything but the target.

    Returns the target's region and how much of it the layers above hide (None when it is off-frame), and
    records the distractor's box in ``distractor_boxes``.
    """
    height, width = canvases[0].shape[:2]
    target_roi: TargetRoi | None = None
    hidden: np.ndarray | None = None
    for layer in layers:
        warped = layer.warp(t, width, height)
        if warped is None:
            continue
        x0, y0, sharp, drawn = warped
        if layer.role == "target":
            target_roi = (x0, y0, sharp[..., 3])
            hidden = np.zeros_like(sharp[..., 3])
        elif target_roi is not None:  # drawn above the target: it may hide it
            _cover_target(hidden, target_roi, x0, y0, sharp[..., 3])
        if layer.role == "distractor":
            box = mask_box(sharp[..., 3] > 0.5, x0, y0)
            if box is not None:
                distractor_boxes[t] = box
        _paste(canvases[:1] if layer.role == "target" else canvases, drawn, x0, y0)
    return target_roi, hidden


def _shading(scene: Scene, t: int, width: int, height: int) -> np.ndarray | None:
    """Frame ``t``'s brightness gradient as a per-pixel RGB factor, or None when the scene has none."""
    gradient = scene.lighting.gradient
    if gradient is None:
        return None
    xs = (np.arange(width, dtype=np.float32) + 0.5) / width - 0.5
    ys = (np.arange(height, dtype=np.float32) + 0.5) / height - 0.5
    return cv2.cvtColor(1.0 + float(gradient[0, t]) * xs[None, :] + float(gradient[1, t]) * ys[:, None],
                        cv2.COLOR_GRAY2RGB)


def _develop(canvas: np.ndarray, scene: Scene, t: int, shading: np.ndarray | None) -> np.ndarray:
    """What the camera records: camera-shake blur, light gradient, sensor noise and exposure gain, as uint8."""
    height, width = canvas.shape[:2]
    sensor = scene.sensor
    if sensor.camera_blur[t] > 0:
        canvas = cv2.filter2D(canvas, -1, motion_blur_kernel(sensor.camera_blur[t], sensor.camera_blur_angle),
                              borderType=cv2.BORDER_REFLECT_101)
    if shading is not None:
        cv2.multiply(canvas, shading, dst=canvas)
    dy, dx = sensor.noise_shifts[t]
    cv2.add(canvas, sensor.noise[dy:dy + height, dx:dx + width], dst=canvas)
    return cv2.convertScaleAbs(canvas, alpha=float(scene.lighting.gain[t]))


def _meta(scene: Scene, width: int, height: int) -> dict[str, str]:
    """meta_info.ini's fields: GOT-10k's classes and motion adverb, then what the generator chose."""
    centers = scene.target.centers
    speed = np.linalg.norm(np.diff(centers, axis=0), axis=1).mean() / math.sqrt(max(scene.target_area.mean(), 1.0))
    kind = scene.kind
    return {
        "object_class": kind.object_class,
        "motion_class": "moving (synthetic)",
        "major_class": kind.major_class,
        "root_class": kind.root_class,
        "motion_adverb": "slowly" if speed < 0.05 else "fast" if speed > 0.12 else "moderately",
        "resolution": f"({width}, {height})",
        "object": kind.name,
        "background": scene.background_name,
        "camera": scene.camera_text,
        "occlusion": scene.occlusion_text,
        "distractor": scene.distractor_text,
        "illumination": (("changing" if scene.lighting.changing else "steady")
                         + (", gradient" if scene.lighting.gradient is not None else "")),
        "leaves_frame": "yes" if scene.leaves_frame else "no",
    }


def render_sequence(rng: np.random.Generator, num_frames: int, size: tuple[int, int] = (320, 240),
                    keep_layers: bool = False) -> RenderedSequence:
    """Draw and render one sequence; ``keep_layers`` also returns the object masks and a target-free render."""
    width, height = size
    n = int(num_frames)
    scene = plan_scene(rng, n, width, height)
    target = scene.target
    background_rgba = cv2.cvtColor(scene.background, cv2.COLOR_RGB2RGBA)  # OpenCV warps 4 channels ~2.5x faster
    frames: list[np.ndarray] = []
    clean_frames: list[np.ndarray] = []
    masks = np.zeros((n, height, width), bool) if keep_layers else None
    boxes = np.zeros((n, 4))
    distractor_boxes = np.full((n, 4), np.nan)
    ratios = np.zeros(n)
    cut = np.zeros(n, np.int64)
    for t in range(n):
        frame = _camera_view(background_rgba, scene.camera[t], width, height)
        canvases = [frame, frame.copy()] if keep_layers else [frame]
        target_roi, hidden = _composite(scene.layers, canvases, t, distractor_boxes)
        boxes[t], ratios[t], cut[t] = _target_labels(target_roi, hidden, target.alpha_mass,
                                                     _area_scale(target.linear[t]), boxes[t - 1] if t else None)
        if masks is not None and target_roi is not None:
            x0, y0, alpha = target_roi
            masks[t, y0:y0 + alpha.shape[0], x0:x0 + alpha.shape[1]] = alpha > 0.5
        shading = _shading(scene, t, width, height)
        frames.append(_develop(canvases[0], scene, t, shading))
        if keep_layers:
            clean_frames.append(_develop(canvases[1], scene, t, shading))
    cover = np.array([cover_level(r) for r in ratios], np.int64)
    return RenderedSequence(frames=frames, boxes=boxes, visible_ratio=ratios, cover=cover,
                            absence=(cover == 0).astype(np.int64), cut_by_image=cut, meta=_meta(scene, width, height),
                            target_masks=masks, frames_without_target=clean_frames if keep_layers else None,
                            distractor_boxes=distractor_boxes)
