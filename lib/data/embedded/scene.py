"""What one sequence shows: background, camera, target, look-alike, occluder, lighting and sensor, all drawn at random.

Every random draw of a sequence happens here (through :func:`plan_scene`), in a fixed order, so the frames that
:mod:`lib.data.embedded.rendering` draws from a plan follow from the sequence's generator alone. Reordering any
draw changes every generated file.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from lib.data.embedded.assets import RGBA, bundled_image, rgba_sprite, soft_rounded_rect, tinted
from lib.data.embedded.catalog import BACKGROUNDS, OBJECT_KINDS, OCCLUDER_SURFACES, TEXTURE_TINTS, ObjectKind
from lib.data.embedded.motion import Layer, camera_path, curve, extents, make_layer, overlaps, smooth, target_path

NOISE_MARGIN = 32  # the noise field is this much larger than a frame and shifted per frame, so it never repeats


@dataclass
class Lighting:
    """Per-frame exposure gain and an optional brightness gradient (2, n): horizontal and vertical slope."""

    changing: bool
    gain: np.ndarray
    gradient: np.ndarray | None


@dataclass
class Sensor:
    """Sensor noise (a field larger than the frame, shifted per frame) and short bursts of camera shake blur."""

    noise: np.ndarray
    noise_shifts: np.ndarray
    camera_blur: np.ndarray  # per-frame blur length in pixels (0 = sharp)
    camera_blur_angle: float


@dataclass
class Scene:
    """Everything a sequence shows; ``layers`` are drawn back to front and include ``target``."""

    background_name: str
    background: np.ndarray  # RGB uint8, larger than the frame so the camera can pan and zoom inside it
    camera: np.ndarray  # (n, 2, 3) inverse maps, frame -> background
    camera_text: str
    kind: ObjectKind
    target: Layer
    target_area: np.ndarray  # per-frame area of the target's mask in pixels
    leaves_frame: bool
    layers: list[Layer]
    distractor_text: str
    occlusion_text: str
    lighting: Lighting
    sensor: Sensor


@dataclass
class _Crossing:
    """How an occluder crosses the target: its direction and sprite, and the lengths that set its speed."""

    angle: float
    sprite: RGBA
    along: float  # the target's extent along the direction of travel
    occluder_along: float  # the occluder's extent along the direction of travel
    perp_offset: float  # sideways offset from the target's center (0 for a full occlusion)


def background_image(rng: np.random.Generator, width: int, height: int,
                     choices: Sequence[tuple[str, str]] = BACKGROUNDS) -> tuple[str, np.ndarray]:
    """A random real or textured image, rescaled so the camera window can pan and zoom inside it."""
    name, kind = choices[int(rng.integers(len(choices)))]
    image = bundled_image(name)
    if kind == "texture":
        image = tinted(image, rng, TEXTURE_TINTS[name])
    image = np.ascontiguousarray(image[..., :3])
    base = max(width / image.shape[1], height / image.shape[0]) * rng.uniform(1.15, 2.2)
    size = (max(int(round(image.shape[1] * base)), width + 2), max(int(round(image.shape[0] * base)), height + 2))
    interpolation = cv2.INTER_AREA if base < 1 else cv2.INTER_LINEAR
    return name, cv2.resize(image, size, interpolation=interpolation)


def _distractor(rng: np.random.Generator, kind: ObjectKind, token: object, n: int, width: int, height: int,
                target: Layer, target_area: np.ndarray, target_ext: tuple[np.ndarray, np.ndarray],
                exposure: float) -> Layer | None:
    """A look-alike that stays near the target and sometimes crosses it; None if it cannot start apart."""
    sprite, label = kind.lookalike(rng, token)
    scale = np.sqrt(target_area * rng.uniform(0.7, 1.3) / float(sprite[..., 3].sum()))
    theta = math.radians(rng.uniform(0.0, 12.0)) * curve(rng, n, 2)
    ext_w, ext_h = extents(sprite, scale, scale, theta)
    diag_target = np.hypot(*target_ext)
    radius0 = 0.5 * (diag_target[0] + math.hypot(ext_w[0], ext_h[0])) * rng.uniform(1.1, 1.5)
    swing, wander = curve(rng, n, 3), curve(rng, n, 2)
    radius = radius0 * np.clip(1 + 0.8 * (swing - swing[0]), 0.2, 2.0)
    towards_middle = math.atan2(height / 2 - target.centers[0, 1], width / 2 - target.centers[0, 0])
    for _ in range(8):
        phi = towards_middle + rng.uniform(-math.pi / 2, math.pi / 2) + math.pi * 0.7 * (wander - wander[0])
        centers = target.centers + radius[:, None] * np.stack([np.cos(phi), np.sin(phi)], -1)
        centers = np.clip(centers, [0, 0], [width, height])
        if not overlaps(centers[0], (ext_w[0], ext_h[0]), target.centers[0], (target_ext[0][0], target_ext[1][0])):
            return make_layer("distractor", sprite, centers, scale, scale, theta, exposure, label)
    return None


def _pole_crossing(rng: np.random.Generator, full: bool, box_w: float, height: int) -> _Crossing:
    """A strip of surface taller than the frame, sweeping sideways through the target."""
    angle = 0.0 if rng.random() < 0.5 else math.pi
    size_w = box_w * (rng.uniform(1.6, 2.4) if full else rng.uniform(0.3, 0.6))
    size_h = height * 1.6
    _, source = background_image(rng, int(size_w) + 2, int(size_h) + 2, OCCLUDER_SURFACES)
    column = int(rng.integers(0, source.shape[1] - int(size_w) - 1))
    rgb = source[:int(size_h) + 2, column:column + int(size_w) + 2]
    sprite = rgba_sprite(rgb, soft_rounded_rect(rgb.shape[0], rgb.shape[1], corner=0.0))
    return _Crossing(angle, sprite, along=box_w, occluder_along=sprite.shape[1], perp_offset=0.0)


def _board_sprite(rng: np.random.Generator, size_w: float, size_h: float) -> RGBA:
    """A rounded panel cut from an occluder surface."""
    _, source = background_image(rng, int(size_w) + 2, int(size_h) + 2, OCCLUDER_SURFACES)
    y = int(rng.integers(0, source.shape[0] - int(size_h) - 1))
    x = int(rng.integers(0, source.shape[1] - int(size_w) - 1))
    rgb = source[y:y + int(size_h) + 2, x:x + int(size_w) + 2]
    return rgba_sprite(rgb, soft_rounded_rect(rgb.shape[0], rgb.shape[1], corner=0.15 * min(rgb.shape[:2])))


def _object_sprite(rng: np.random.Generator, size_w: float, size_h: float, target_kind: ObjectKind) -> RGBA:
    """An object of another kind than the target, scaled to cover the wanted box."""
    others = [kind for kind in OBJECT_KINDS if kind.name != target_kind.name]
    raw = others[int(rng.integers(len(others)))].make(rng)[0]
    fit = max(size_w / raw.shape[1], size_h / raw.shape[0])  # keep its shape, cover the wanted box
    return cv2.resize(raw, (max(int(raw.shape[1] * fit), 2), max(int(raw.shape[0] * fit), 2)),
                      interpolation=cv2.INTER_AREA if fit < 1 else cv2.INTER_LINEAR)


def _panel_crossing(rng: np.random.Generator, full: bool, style: str, box_w: float, box_h: float,
                    target_kind: ObjectKind) -> _Crossing:
    """A board or another object passing the target in a random direction."""
    angle = rng.uniform(0, 2 * math.pi)
    factor = (rng.uniform(1.6, 2.2) if style == "board" else rng.uniform(2.1, 2.6)) if full \
        else rng.uniform(0.5, 0.9)
    size_w, size_h = box_w * factor, box_h * factor
    if style == "board":
        sprite = _board_sprite(rng, size_w, size_h)
    else:
        sprite = _object_sprite(rng, size_w, size_h, target_kind)
    cos, sin = abs(math.cos(angle)), abs(math.sin(angle))
    along = cos * box_w + sin * box_h
    occluder_along = cos * sprite.shape[1] + sin * sprite.shape[0]
    across = sin * box_w + cos * box_h
    perp_offset = 0.0 if full else rng.choice([-1, 1]) * rng.uniform(0.3, 0.6) * across
    return _Crossing(angle, sprite, along, occluder_along, perp_offset)


def _occluder(rng: np.random.Generator, n: int, width: int, height: int, target: Layer,
              target_ext: tuple[np.ndarray, np.ndarray], target_kind: ObjectKind) -> tuple[Layer, str]:
    """Something that passes in front of the target once, hiding it partly or fully for a while."""
    full = rng.random() < 0.55
    style = ("pole", "board", "object")[int(rng.choice(3, p=[0.4, 0.35, 0.25]))]
    duration = int(rng.integers(max(6, n // 8), max(8, n // 3) + 1))
    tc = int(rng.integers(int(0.3 * n + duration / 2) + 1, max(int(0.85 * n), int(0.3 * n + duration / 2) + 2)))
    tc = min(tc, n - 1)
    box_w, box_h = float(target_ext[0][tc]), float(target_ext[1][tc])
    if style == "pole":
        crossing = _pole_crossing(rng, full, box_w, height)
    else:
        crossing = _panel_crossing(rng, full, style, box_w, box_h, target_kind)
    speed = (crossing.occluder_along + crossing.along) / duration
    direction = np.array([math.cos(crossing.angle), math.sin(crossing.angle)])
    normal = np.array([-direction[1], direction[0]])
    steps = (np.arange(n) - tc)[:, None]
    centers = target.centers + steps * speed * direction + crossing.perp_offset * normal
    if style == "pole":
        centers[:, 1] = height / 2
    ones = np.ones(n)
    layer = make_layer("occluder", crossing.sprite, centers, ones, ones, np.zeros(n), 0.0, style)
    return layer, f"{'full' if full else 'partial'} ({style}) around frame {tc + 1}"


def _lighting(rng: np.random.Generator, n: int) -> Lighting:
    """Slow illumination drift (strong in half the sequences), sometimes a light switch and a gradient."""
    changing = rng.random() < 0.5
    amplitude = rng.uniform(0.15, 0.35) if changing else rng.uniform(0.0, 0.05)
    gain = np.exp(amplitude * curve(rng, n, int(rng.integers(1, 4))))
    if rng.random() < 0.2:  # a light switched on or off
        switch = int(rng.integers(n // 4, n))
        gain = gain * np.exp(rng.choice([-1, 1]) * rng.uniform(0.25, 0.45)
                             * smooth((np.arange(n) >= switch).astype(float), 1.0))
    gradient = rng.uniform(-0.35, 0.35, 2)[:, None] * np.stack([curve(rng, n, 2), curve(rng, n, 2)]) \
        if rng.random() < 0.4 else None
    return Lighting(changing, gain, gradient)


def _sensor(rng: np.random.Generator, n: int, width: int, height: int) -> Sensor:
    """Gaussian sensor noise of a random strength, and in a quarter of the sequences a few camera-shake frames."""
    noise = rng.standard_normal((height + NOISE_MARGIN, width + NOISE_MARGIN, 3), dtype=np.float32) \
        * np.float32(rng.uniform(0.5, 4.0))
    noise_shifts = rng.integers(0, NOISE_MARGIN, (n, 2))
    camera_blur = np.zeros(n)
    camera_blur_angle = rng.uniform(0, math.pi)
    if rng.random() < 0.25:
        start = int(rng.integers(1, max(n - 4, 2)))
        camera_blur[start:start + int(rng.integers(2, 5))] = rng.uniform(5, 11)
    return Sensor(noise, noise_shifts, camera_blur, camera_blur_angle)


def plan_scene(rng: np.random.Generator, n: int, width: int, height: int) -> Scene:
    """Draw everything ``n`` frames of ``width`` x ``height`` will show."""
    background_name, background = background_image(rng, width, height)
    camera, camera_text = camera_path(rng, n, background.shape, width, height)
    kind = OBJECT_KINDS[int(rng.integers(len(OBJECT_KINDS)))]
    sprite, token = kind.make(rng)
    centers, sx, sy, theta, leaves_frame = target_path(rng, n, width, height, sprite)
    exposure = rng.uniform(0.3, 0.9)
    target = make_layer("target", sprite, centers, sx, sy, theta, exposure, kind.name)
    target_ext = extents(sprite, sx, sy, theta)
    target_area = float(sprite[..., 3].sum()) * sx * sy
    layers = [target]
    distractor_text, occlusion_text = "none", "none"
    if rng.random() < 0.5:
        distractor = _distractor(rng, kind, token, n, width, height, target, target_area, target_ext, exposure)
        if distractor is not None:
            in_front = rng.random() < 0.3
            layers.insert(len(layers) if in_front else 0, distractor)
            distractor_text = f"{distractor.label}, {'in front of' if in_front else 'behind'} the target"
    if rng.random() < 0.65:
        occluder, occlusion_text = _occluder(rng, n, width, height, target, target_ext, kind)
        layers.append(occluder)
    lighting = _lighting(rng, n)
    sensor = _sensor(rng, n, width, height)
    return Scene(background_name, background, camera, camera_text, kind, target, target_area, leaves_frame, layers,
                 distractor_text, occlusion_text, lighting, sensor)
