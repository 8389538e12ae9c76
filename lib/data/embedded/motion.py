"""Motion: smooth random paths, the camera's pan and zoom, the target's trajectory, and posed sprite layers."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from lib.data.embedded.assets import RGBA


def smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing that keeps the length (edges padded with their value)."""
    radius = max(int(3 * sigma), 1)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return np.convolve(np.pad(values, radius, mode="edge"), kernel / kernel.sum(), mode="valid")


def curve(rng: np.random.Generator, n: int, knots: int = 3) -> np.ndarray:
    """A smooth random path in [-1, 1]; more knots, livelier motion."""
    values = rng.uniform(-1.0, 1.0, knots + 1)
    linear = np.interp(np.linspace(0, knots, n), np.arange(knots + 1), values)
    return smooth(linear, max(n / (knots * 3.0), 1.0))


def motion_blur_kernel(length: float, angle: float) -> np.ndarray:
    """A normalised line of ``length`` pixels at ``angle`` (radians), for cv2.filter2D."""
    size = int(math.ceil(length)) | 1
    kernel = np.zeros((size, size), np.float32)
    steps = np.linspace(-(length - 1) / 2, (length - 1) / 2, 4 * size)
    xs = np.clip(np.rint(size // 2 + steps * math.cos(angle)).astype(int), 0, size - 1)
    ys = np.clip(np.rint(size // 2 + steps * math.sin(angle)).astype(int), 0, size - 1)
    np.add.at(kernel, (ys, xs), 1.0)
    return kernel / kernel.sum()


@dataclass
class Layer:
    """A sprite with a per-frame affine pose; ``linear`` is rotation @ scale (n, 2, 2)."""

    role: str
    sprite: RGBA
    centers: np.ndarray
    linear: np.ndarray
    blur: np.ndarray  # per-frame motion-blur length in pixels (0 = sharp)
    label: str = ""
    alpha_mass: float = field(init=False)

    def __post_init__(self) -> None:
        self.alpha_mass = float(self.sprite[..., 3].sum())

    def warp(self, t: int, width: int, height: int) -> tuple[int, int, np.ndarray, np.ndarray] | None:
        """(x0, y0, sharp, drawn) for the part of the frame the sprite touches, or None if off-frame."""
        sprite_h, sprite_w = self.sprite.shape[:2]
        linear = self.linear[t]
        offset = self.centers[t] - linear @ np.array([(sprite_w - 1) / 2, (sprite_h - 1) / 2])
        corners = linear @ np.array([[-0.5, sprite_w - 0.5, sprite_w - 0.5, -0.5],
                                     [-0.5, -0.5, sprite_h - 0.5, sprite_h - 0.5]]) + offset[:, None]
        pad = int(math.ceil(self.blur[t] / 2)) + 2
        x0 = max(int(math.floor(corners[0].min())) - pad, 0)
        y0 = max(int(math.floor(corners[1].min())) - pad, 0)
        x1 = min(int(math.ceil(corners[0].max())) + pad, width)
        y1 = min(int(math.ceil(corners[1].max())) + pad, height)
        if x0 >= x1 or y0 >= y1:
            return None
        matrix = np.hstack([linear, (offset - [x0, y0])[:, None]])
        sharp = cv2.warpAffine(self.sprite, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        drawn = sharp
        if self.blur[t] >= 2.5:
            speed = self.centers[min(t + 1, len(self.centers) - 1)] - self.centers[max(t - 1, 0)]
            drawn = cv2.filter2D(sharp, -1, motion_blur_kernel(self.blur[t], math.atan2(speed[1], speed[0])),
                                 borderType=cv2.BORDER_CONSTANT)
        return x0, y0, sharp, drawn


def pose(sx: np.ndarray, sy: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Per-frame rotation @ scale matrices (n, 2, 2)."""
    cos, sin = np.cos(theta), np.sin(theta)
    return np.stack([np.stack([cos * sx, -sin * sy], -1), np.stack([sin * sx, cos * sy], -1)], -2)


def extents(sprite: RGBA, sx: np.ndarray, sy: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame width and height of the posed sprite's bounding box."""
    h, w = sprite.shape[:2]
    cos, sin = np.abs(np.cos(theta)), np.abs(np.sin(theta))
    return cos * w * sx + sin * h * sy, sin * w * sx + cos * h * sy


def make_layer(role: str, sprite: RGBA, centers: np.ndarray, sx: np.ndarray, sy: np.ndarray, theta: np.ndarray,
               exposure: float, label: str = "") -> Layer:
    """Shrink the sprite once to its largest on-screen size (area filter, no aliasing), then pose it per frame."""
    h, w = sprite.shape[:2]
    shrink = min(1.0, float(max(sx.max(), sy.max())) * 1.1)
    if shrink < 0.95:
        new_w, new_h = max(int(round(w * shrink)), 2), max(int(round(h * shrink)), 2)
        sprite = cv2.resize(sprite, (new_w, new_h), interpolation=cv2.INTER_AREA)
        sx, sy = sx * w / new_w, sy * h / new_h
    speed = np.linalg.norm(np.diff(centers, axis=0, prepend=centers[:1]), axis=1)
    return Layer(role, sprite, centers, pose(sx, sy, theta), np.minimum(exposure * speed, 15.0), label)


def overlaps(center_a: np.ndarray, ext_a: tuple[float, float], center_b: np.ndarray,
             ext_b: tuple[float, float]) -> bool:
    """Whether two axis-aligned boxes (center, (width, height)) come within 2 px of each other."""
    return bool(abs(center_a[0] - center_b[0]) < (ext_a[0] + ext_b[0]) / 2 + 2
                and abs(center_a[1] - center_b[1]) < (ext_a[1] + ext_b[1]) / 2 + 2)


def camera_path(rng: np.random.Generator, n: int, source_shape: tuple[int, ...], width: int, height: int
                ) -> tuple[np.ndarray, str]:
    """Per-frame inverse maps (frame -> source): a smooth pan and zoom, sometimes a shaky hand."""
    src_h, src_w = source_shape[:2]
    zoom = 1.0 + rng.uniform(0.0, 0.45) * (0.5 + 0.5 * curve(rng, n, int(rng.integers(1, 4))))
    pan = rng.uniform(0.2, 1.0)
    centers = []
    for axis_len, frame_len in ((src_w, width), (src_h, height)):
        half_range = max(axis_len - frame_len, 0) / 2
        start = rng.uniform(-1, 1) * (1 - pan)
        centers.append(axis_len / 2 + half_range * (start + pan * curve(rng, n, int(rng.integers(1, 4)))))
    cx, cy = centers
    shaky = rng.random() < 0.2
    if shaky:
        cx = cx + smooth(rng.normal(0, 2.0, n), 0.7)
        cy = cy + smooth(rng.normal(0, 2.0, n), 0.7)
    inverse = np.zeros((n, 2, 3))
    inverse[:, 0, 0] = inverse[:, 1, 1] = 1 / zoom
    inverse[:, 0, 2] = cx - width / 2 / zoom
    inverse[:, 1, 2] = cy - height / 2 / zoom
    description = f"pan {pan:.2f}, zoom up to {zoom.max():.2f}" + (", shaky" if shaky else "")
    return inverse, description


def target_path(rng: np.random.Generator, n: int, width: int, height: int, sprite: RGBA
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """Centers, scales and angle of the target: smooth motion kept (mostly) inside the frame."""
    mask_area = float(sprite[..., 3].sum())
    s0 = math.sqrt(rng.uniform(0.02, 0.10) * width * height / mask_area)
    scale = s0 * np.exp(rng.uniform(0.05, 0.4) * curve(rng, n, int(rng.integers(1, 4))))
    aspect = np.exp(rng.uniform(0.0, 0.2) * curve(rng, n, int(rng.integers(1, 4))))
    theta = math.radians(rng.uniform(0.0, 12.0)) * curve(rng, n, int(rng.integers(1, 4)))
    sx, sy = scale * np.sqrt(aspect), scale / np.sqrt(aspect)
    ext_w, ext_h = extents(sprite, sx, sy, theta)
    largest = min(0.7 * width / ext_w.max(), 0.7 * height / ext_h.max())  # never more than 70% of the frame
    smallest = 8.0 / max(min(ext_w.min(), ext_h.min()), 1e-6)  # nor thinner than 8 px, if that fits
    factor = min(max(1.0, smallest), largest)
    sx, sy, ext_w, ext_h = sx * factor, sy * factor, ext_w * factor, ext_h * factor
    leaves_frame = rng.random() < 0.25
    knots = int(rng.integers(2, 7))
    centers = np.zeros((n, 2))
    ramp = np.minimum(np.arange(n) / max(0.3 * n, 1), 1.0)
    for axis, (frame_len, ext) in enumerate(((width, ext_w), (height, ext_h))):
        low, high = ext.max() / 2 + 1, frame_len - ext.max() / 2 - 1
        if low > high:
            low = high = frame_len / 2
        slack = (0.5 * ext.max() if leaves_frame else 0.0) * ramp
        raw = (low + high) / 2 + (high - low + 2 * slack.max()) / 2 * curve(rng, n, knots)
        centers[:, axis] = np.clip(raw, low - slack, high + slack)
    return centers, sx, sy, theta, leaves_frame
