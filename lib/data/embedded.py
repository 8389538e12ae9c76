"""Embedded tracking benchmark: realistic sequences generated from images that ship inside installed packages.

A fresh machine has no LaSOT, no GOT-10k and no network, yet the demo must train and evaluate trackers. This
module pastes real objects (crops of scikit-image's astronaut, chelsea, coffee and rocket photos, segmented
coins, the logo, the horse silhouette filled with a real texture, LFW faces, matplotlib's Grace Hopper) onto
real or textured backgrounds (photos, Hubble deep field, brick/grass/gravel textures) and films them with a
moving camera: smooth pan and zoom, object motion with scale, aspect-ratio and small rotation changes,
occluders that hide the object partly or fully, look-alike distractors moving nearby, illumination change,
motion blur and sensor noise. The ground truth is exact: the tight box of the pasted object's mask after its
transform, clipped to the image (it still marks the object while an occluder hides it; ``absence.label`` and
``cover.label`` say how much of it is visible).

The result is written in the GOT-10k layout (``<root>/{train,val,test}/<Seq>/00000001.jpg``, ``groundtruth.txt``,
``absence.label``, ``cover.label``, ``cut_by_image.label``, ``meta_info.ini``, ``list.txt``) so the regular
loaders read it. **Unlike the official GOT-10k test split, our test split carries the boxes of every frame**:
it is evaluated locally, not by a server.

Every sequence is drawn from its own ``numpy`` generator seeded by (seed, split, index), so the same parameters
give byte-identical files and adding sequences to one split leaves the others unchanged. Sources and licences:
scikit-image's bundled images are CC0 / public domain per ``skimage/data/_fetchers.py`` (the LFW subset states
no licence); Grace Hopper's portrait is a US Navy public-domain photo. Keep generated frames out of git.
"""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from lib.utils.errors import UserError
from lib.utils.io import durable_rename, remove_stale_temp_files, temp_sibling

GENERATOR_VERSION = 1
JPEG_QUALITY = 90
SPLITS = ("train", "val", "test")
SEQUENCE_PREFIX = {"train": "EMB_Train", "val": "EMB_Val", "test": "EMB_Test"}
MANIFEST_NAME = "manifest.json"
MIN_FRAMES = 20  # OSTrack's sampler ignores shorter sequences
MAX_FRAMES = 5000
MIN_SIZE = (64, 48)
MAX_SIZE = (4096, 4096)
ANNO_FPS = 10
LFW_FACES = 100  # skimage's lfw_subset: the first 100 images are faces, the other 100 background patches
ABSENT_BELOW = 0.01  # visible share of the object under which a frame counts as fully hidden
FULLY_VISIBLE_FROM = 0.97  # anti-aliased edges never reach exactly 1

RGBA = np.ndarray  # float32 (h, w, 4): premultiplied RGB in 0..255, alpha in 0..1


# ---------------------------------------------------------------------------------------------- parameters

@dataclass(frozen=True)
class EmbeddedParams:
    """Everything that determines the generated files; a change gives a new benchmark folder."""

    seed: int = 0
    num_train: int = 40
    num_val: int = 10
    num_test: int = 10
    frames: tuple[int, int] = (40, 80)
    size: tuple[int, int] = (320, 240)

    def __post_init__(self) -> None:
        def whole(value: object, what: str) -> int:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise UserError(f"embedded benchmark: {what} must be a whole number, got {value!r}")
            return int(value)

        seed = whole(self.seed, "seed")
        if seed < 0:
            raise UserError(f"embedded benchmark: seed must be >= 0, got {seed}")
        counts = [whole(getattr(self, f"num_{split}"), f"num_{split}") for split in SPLITS]
        if min(counts) < 0 or sum(counts) == 0:
            raise UserError(f"embedded benchmark: sequence counts must be >= 0 with at least one sequence, "
                            f"got train/val/test = {counts}")
        frames = tuple(self.frames) if isinstance(self.frames, (tuple, list)) else (self.frames, self.frames)
        if len(frames) != 2:
            raise UserError(f"embedded benchmark: frames must be (min, max), got {self.frames!r}")
        low, high = whole(frames[0], "frames"), whole(frames[1], "frames")
        if not MIN_FRAMES <= low <= high <= MAX_FRAMES:
            raise UserError(f"embedded benchmark: frames per sequence must satisfy {MIN_FRAMES} <= min <= max <= "
                            f"{MAX_FRAMES} (OSTrack's sampler skips sequences under {MIN_FRAMES} frames), "
                            f"got {low}-{high}")
        if not isinstance(self.size, (tuple, list)) or len(self.size) != 2:
            raise UserError(f"embedded benchmark: size must be (width, height), got {self.size!r}")
        width, height = whole(self.size[0], "width"), whole(self.size[1], "height")
        if not (MIN_SIZE[0] <= width <= MAX_SIZE[0] and MIN_SIZE[1] <= height <= MAX_SIZE[1]):
            raise UserError(f"embedded benchmark: frame size must be between {MIN_SIZE[0]}x{MIN_SIZE[1]} and "
                            f"{MAX_SIZE[0]}x{MAX_SIZE[1]}, got {width}x{height}")
        for name, value in (("seed", seed), ("num_train", counts[0]), ("num_val", counts[1]),
                            ("num_test", counts[2]), ("frames", (low, high)), ("size", (width, height))):
            object.__setattr__(self, name, value)

    def count(self, split: str) -> int:
        return getattr(self, f"num_{split}")

    @property
    def folder_name(self) -> str:
        """Readable and unique per parameter set, so changed parameters never reuse an old folder."""
        return (f"v{GENERATOR_VERSION}_seed{self.seed}_{self.size[0]}x{self.size[1]}_f{self.frames[0]}-"
                f"{self.frames[1]}_n{self.num_train}-{self.num_val}-{self.num_test}")

    def as_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


def sequence_name(split: str, index: int) -> str:
    return f"{SEQUENCE_PREFIX[split]}_{index + 1:06d}"


def sequence_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """One independent stream per sequence: order, worker count and other splits never change its content."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), index, GENERATOR_VERSION]))


# -------------------------------------------------------------------------------------------------- assets

@lru_cache(maxsize=None)
def _image(name: str) -> np.ndarray:
    """A bundled image (read-only), loaded once per process; a clear error when the package is missing."""
    if name == "grace_hopper":
        from matplotlib import cbook
        with cbook.get_sample_data("grace_hopper.jpg") as handle:
            data = np.frombuffer(handle.read(), np.uint8)
        image = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    else:
        try:
            import skimage.data
        except ImportError:
            raise UserError("the embedded benchmark is built from scikit-image's bundled images, but scikit-image "
                            "is not installed; run install.sh (or pip install scikit-image==0.26.0)") from None
        image = getattr(skimage.data, name)()
        if name == "stereo_motorcycle":
            image = image[0]
    image = np.ascontiguousarray(image)
    image.setflags(write=False)
    return image


def _soft_ellipse(height: int, width: int, feather: float = 1.2) -> np.ndarray:
    ys = (np.arange(height, dtype=np.float32) + 0.5 - height / 2) / (height / 2)
    xs = (np.arange(width, dtype=np.float32) + 0.5 - width / 2) / (width / 2)
    radius = np.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)
    return np.clip((1.0 - radius) * min(height, width) / 2 / feather + 0.5, 0.0, 1.0)


def _soft_rounded_rect(height: int, width: int, corner: float, feather: float = 1.0) -> np.ndarray:
    """Signed-distance rounded rectangle with an anti-aliased rim."""
    corner = min(corner, height / 2, width / 2)
    ys = np.abs(np.arange(height, dtype=np.float32) + 0.5 - height / 2) - (height / 2 - corner)
    xs = np.abs(np.arange(width, dtype=np.float32) + 0.5 - width / 2) - (width / 2 - corner)
    outside = np.sqrt(np.maximum(ys[:, None], 0) ** 2 + np.maximum(xs[None, :], 0) ** 2)
    inside = np.minimum(np.maximum(ys[:, None], xs[None, :]), 0)
    distance = outside + inside - corner
    return np.clip(0.5 - distance / feather, 0.0, 1.0)


def _rgba(rgb: np.ndarray, alpha: np.ndarray) -> RGBA:
    """Premultiplied sprite cropped to its mask, so warps and blurs keep clean edges and small ROIs."""
    alpha = alpha.astype(np.float32)
    rows, cols = np.flatnonzero(alpha.max(1) > 0), np.flatnonzero(alpha.max(0) > 0)
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    alpha = alpha[y0:y1, x0:x1]
    sprite = np.empty((y1 - y0, x1 - x0, 4), np.float32)
    sprite[..., :3] = rgb[y0:y1, x0:x1].astype(np.float32) * alpha[..., None]
    sprite[..., 3] = alpha
    return sprite


def _photo_crop(name: str, box: tuple[int, int, int, int], shape: str = "ellipse") -> RGBA:
    x0, y0, x1, y1 = box
    crop = _image(name)[y0:y1, x0:x1, :3]
    height, width = crop.shape[:2]
    mask = (_soft_ellipse(height, width) if shape == "ellipse"
            else _soft_rounded_rect(height, width, corner=min(height, width) / 3))
    return _rgba(crop, mask)


def _recoloured(sprite: RGBA, rng: np.random.Generator, strength: float = 0.25, flip: bool | None = None) -> RGBA:
    """Another instance of the same kind of object: other colours, maybe mirrored."""
    out = sprite.copy()
    out[..., :3] *= rng.uniform(1 - strength, 1 + strength, 3).astype(np.float32)
    np.minimum(out[..., :3], 255.0 * out[..., 3:], out=out[..., :3])
    if flip if flip is not None else rng.random() < 0.5:
        out = out[:, ::-1].copy()
    return out


@lru_cache(maxsize=None)
def _coin_sprites() -> tuple[RGBA, ...]:
    """The coins photo is a tray of look-alike objects; segment each coin once."""
    gray = _image("coins")
    blurred = cv2.GaussianBlur(gray, (5, 5), 0)
    mask = cv2.adaptiveThreshold(blurred, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 51, -10)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    height, width = gray.shape
    coins = []
    for contour in sorted(contours, key=lambda c: tuple(cv2.boundingRect(c)[:2][::-1])):
        area = cv2.contourArea(contour)
        x, y, w, h = cv2.boundingRect(contour)
        if not 600 < area < 8000 or x == 0 or y == 0 or x + w >= width or y + h >= height:
            continue
        if 4 * math.pi * area / cv2.arcLength(contour, True) ** 2 < 0.75:
            continue
        filled = np.zeros((height, width), np.uint8)
        cv2.drawContours(filled, [cv2.convexHull(contour)], -1, 255, -1)
        soft = cv2.GaussianBlur(filled, (3, 3), 0)[y - 1:y + h + 1, x - 1:x + w + 1].astype(np.float32) / 255
        rgb = np.repeat(gray[y - 1:y + h + 1, x - 1:x + w + 1, None], 3, axis=2)
        coins.append(_rgba(rgb, soft))
    return tuple(coins)


def _coin(rng: np.random.Generator, exclude: int | None = None) -> tuple[RGBA, int]:
    coins = _coin_sprites()
    index = int(rng.integers(len(coins)))
    if exclude is not None and index == exclude:
        index = (index + 1) % len(coins)
    metal = np.array([[1.0, 0.78, 0.45], [0.95, 0.95, 1.0], [1.0, 0.88, 0.55]][int(rng.integers(3))], np.float32)
    sprite = coins[index].copy()
    sprite[..., :3] *= metal * rng.uniform(0.9, 1.15)
    np.minimum(sprite[..., :3], 255.0 * sprite[..., 3:], out=sprite[..., :3])
    return sprite, index


def _lfw_face(rng: np.random.Generator, exclude: int | None = None) -> tuple[RGBA, int]:
    faces = _image("lfw_subset")[:LFW_FACES]
    index = int(rng.integers(len(faces)))
    if exclude is not None and index == exclude:
        index = (index + 1) % len(faces)
    face = cv2.resize(faces[index].astype(np.float32), (75, 75), interpolation=cv2.INTER_CUBIC)[:, 7:68]
    skin = np.array([1.0, 0.84, 0.72], np.float32) * rng.uniform(0.75, 1.1, 3).astype(np.float32)
    rgb = np.clip(face[..., None] * 255.0 * skin, 0, 255)
    return _rgba(rgb, _soft_ellipse(*face.shape)), index


def _textured_horse(rng: np.random.Generator) -> tuple[RGBA, str]:
    """The horse silhouette filled with a real surface (wood, fur, gravel, grass)."""
    silhouette = (~_image("horse")).astype(np.uint8) * 255
    alpha = cv2.GaussianBlur(silhouette, (3, 3), 0).astype(np.float32) / 255
    height, width = alpha.shape
    surfaces = {"wood": ("coffee", (430, 0, 600, 400)), "fur": ("chelsea", (0, 150, 130, 300)),
                "gravel": ("gravel", None), "grass": ("grass", None)}
    name = list(surfaces)[int(rng.integers(len(surfaces)))]
    source, box = surfaces[name]
    image = _image(source)
    if box is not None:
        image = image[box[1]:box[3], box[0]:box[2]]
    if image.ndim == 2:
        image = _tinted(image, rng, base=(0.75, 0.6, 0.45))
    texture = cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=cv2.INTER_LINEAR)
    return _rgba(texture, alpha), name


def _logo(rng: np.random.Generator, hue_shift: bool = False) -> RGBA:
    """The RGBA logo; its alpha is fully opaque in scikit-image 0.26, so a disk cuts away the white surround."""
    logo = _image("logo")
    alpha = logo[..., 3].astype(np.float32) / 255 * _soft_ellipse(*logo.shape[:2])
    rgb = logo[..., :3]
    if hue_shift:
        rgb = rgb[..., list(rng.permutation(3))]
    return _rgba(rgb, alpha)


@dataclass(frozen=True)
class ObjectKind:
    """A target family: how to cut one instance and a look-alike (second instance or similar object)."""

    name: str
    object_class: str
    major_class: str
    root_class: str
    make: Callable[[np.random.Generator], tuple[RGBA, object]]
    lookalike: Callable[[np.random.Generator, object], tuple[RGBA, str]]


def _fixed(name: str, box: tuple[int, int, int, int], shape: str = "ellipse"
           ) -> Callable[[np.random.Generator], tuple[RGBA, object]]:
    return lambda rng: (_photo_crop(name, box, shape), None)


def _same_recoloured(kind_make: Callable[[np.random.Generator], tuple[RGBA, object]], label: str
                     ) -> Callable[[np.random.Generator, object], tuple[RGBA, str]]:
    return lambda rng, _: (_recoloured(kind_make(rng)[0], rng), label)


_CAT_EYES = {"left": (128, 75, 215, 155), "right": (280, 100, 356, 172)}
_ASTRONAUT_FACE = ("astronaut", (150, 15, 300, 175))
_GRACE_HEAD = ("grace_hopper", (150, 20, 378, 335))


def _cat_eye(rng: np.random.Generator) -> tuple[RGBA, object]:
    side = "left" if rng.random() < 0.5 else "right"
    return _photo_crop("chelsea", _CAT_EYES[side]), side


def _horse_lookalike(rng: np.random.Generator, _: object) -> tuple[RGBA, str]:
    sprite, surface = _textured_horse(rng)
    return (sprite[:, ::-1].copy() if rng.random() < 0.5 else sprite), f"another horse ({surface})"


def _face_lookalike(rng: np.random.Generator, _: object) -> tuple[RGBA, str]:
    choice = int(rng.integers(3))
    if choice == 0:
        return _photo_crop(*_ASTRONAUT_FACE), "another face (astronaut)"
    if choice == 1:
        return _photo_crop(*_GRACE_HEAD), "another face (grace hopper)"
    return _lfw_face(rng)[0], "another face (lfw)"


OBJECT_KINDS: tuple[ObjectKind, ...] = (
    ObjectKind("astronaut face", "human face", "person", "person", _fixed(*_ASTRONAUT_FACE), _face_lookalike),
    ObjectKind("grace hopper head", "human face", "person", "person", _fixed(*_GRACE_HEAD), _face_lookalike),
    ObjectKind("lfw face", "human face", "person", "person", _lfw_face,
               lambda rng, index: (_lfw_face(rng, exclude=index)[0], "another face (lfw)")),
    ObjectKind("cat face", "cat face", "cat", "animal", _fixed("chelsea", (55, 10, 405, 300)),
               _same_recoloured(_fixed("chelsea", (55, 10, 405, 300)), "a second cat face")),
    ObjectKind("cat eye", "cat eye", "cat", "animal", _cat_eye,
               lambda rng, side: (_photo_crop("chelsea", _CAT_EYES["right" if side == "left" else "left"]),
                                  "the cat's other eye")),
    ObjectKind("coffee cup", "cup", "tableware", "artifact", _fixed("coffee", (75, 15, 485, 395)),
               _same_recoloured(_fixed("coffee", (75, 15, 485, 395)), "a second cup")),
    ObjectKind("rocket", "rocket", "vehicle", "artifact", _fixed("rocket", (298, 122, 347, 410), "rect"),
               lambda rng, _: ((_photo_crop("astronaut", (352, 0, 470, 275), "rect"), "a space shuttle model")
                               if rng.random() < 0.5 else
                               (_recoloured(_photo_crop("rocket", (298, 122, 347, 410), "rect"), rng, flip=False),
                                "a second rocket"))),
    ObjectKind("space shuttle model", "spacecraft model", "vehicle", "artifact",
               _fixed("astronaut", (352, 0, 470, 275), "rect"),
               lambda rng, _: (_photo_crop("rocket", (298, 122, 347, 410), "rect"), "a rocket")),
    ObjectKind("mission patch", "badge", "insignia", "artifact", _fixed("astronaut", (130, 343, 216, 429)),
               lambda rng, _: (_coin(rng)[0], "a coin")),
    ObjectKind("coin", "coin", "money", "artifact", _coin,
               lambda rng, index: (_coin(rng, exclude=index)[0], "another coin")),
    ObjectKind("logo", "logo", "sign", "artifact", lambda rng: (_logo(rng), None),
               lambda rng, _: (_logo(rng, hue_shift=True), "the logo in other colours")),
    ObjectKind("horse", "horse", "horse", "animal", _textured_horse, _horse_lookalike),
)

# (image, kind); gray textures are tinted per sequence.
BACKGROUNDS: tuple[tuple[str, str], ...] = (
    ("hubble_deep_field", "photo"), ("coffee", "photo"), ("rocket", "photo"), ("chelsea", "photo"),
    ("astronaut", "photo"), ("grace_hopper", "photo"), ("immunohistochemistry", "photo"), ("retina", "photo"),
    ("stereo_motorcycle", "photo"), ("brick", "texture"), ("grass", "texture"), ("gravel", "texture"),
    ("moon", "texture"), ("camera", "texture"),
)
# Occluder surfaces: no faces or eyes, which would hand the tracker a look-alike exactly where the target hides.
OCCLUDER_SURFACES = tuple(entry for entry in BACKGROUNDS if entry[0] not in ("astronaut", "grace_hopper", "chelsea"))
_TEXTURE_TINTS = {"brick": (1.0, 0.62, 0.5), "grass": (0.6, 0.95, 0.45), "gravel": (0.9, 0.85, 0.75),
                  "moon": (0.9, 0.9, 0.95), "camera": (0.95, 0.9, 0.85)}


def _tinted(gray: np.ndarray, rng: np.random.Generator, base: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    tint = np.asarray(base, np.float32) * rng.uniform(0.85, 1.15, 3).astype(np.float32)
    return np.clip(gray[..., None].astype(np.float32) * tint, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- trajectories

def _smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(int(3 * sigma), 1)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return np.convolve(np.pad(values, radius, mode="edge"), kernel / kernel.sum(), mode="valid")


def _curve(rng: np.random.Generator, n: int, knots: int = 3) -> np.ndarray:
    """A smooth random path in [-1, 1]; more knots, livelier motion."""
    values = rng.uniform(-1.0, 1.0, knots + 1)
    linear = np.interp(np.linspace(0, knots, n), np.arange(knots + 1), values)
    return _smooth(linear, max(n / (knots * 3.0), 1.0))


def _motion_blur_kernel(length: float, angle: float) -> np.ndarray:
    size = int(math.ceil(length)) | 1
    kernel = np.zeros((size, size), np.float32)
    steps = np.linspace(-(length - 1) / 2, (length - 1) / 2, 4 * size)
    xs = np.clip(np.rint(size // 2 + steps * math.cos(angle)).astype(int), 0, size - 1)
    ys = np.clip(np.rint(size // 2 + steps * math.sin(angle)).astype(int), 0, size - 1)
    np.add.at(kernel, (ys, xs), 1.0)
    return kernel / kernel.sum()


@dataclass
class _Layer:
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
            drawn = cv2.filter2D(sharp, -1, _motion_blur_kernel(self.blur[t], math.atan2(speed[1], speed[0])),
                                 borderType=cv2.BORDER_CONSTANT)
        return x0, y0, sharp, drawn


def _pose(sx: np.ndarray, sy: np.ndarray, theta: np.ndarray) -> np.ndarray:
    cos, sin = np.cos(theta), np.sin(theta)
    return np.stack([np.stack([cos * sx, -sin * sy], -1), np.stack([sin * sx, cos * sy], -1)], -2)


def _extents(sprite: RGBA, sx: np.ndarray, sy: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = sprite.shape[:2]
    cos, sin = np.abs(np.cos(theta)), np.abs(np.sin(theta))
    return cos * w * sx + sin * h * sy, sin * w * sx + cos * h * sy


def _make_layer(role: str, sprite: RGBA, centers: np.ndarray, sx: np.ndarray, sy: np.ndarray, theta: np.ndarray,
                exposure: float, label: str = "") -> _Layer:
    """Shrink the sprite once to its largest on-screen size (area filter, no aliasing), then pose it per frame."""
    h, w = sprite.shape[:2]
    shrink = min(1.0, float(max(sx.max(), sy.max())) * 1.1)
    if shrink < 0.95:
        new_w, new_h = max(int(round(w * shrink)), 2), max(int(round(h * shrink)), 2)
        sprite = cv2.resize(sprite, (new_w, new_h), interpolation=cv2.INTER_AREA)
        sx, sy = sx * w / new_w, sy * h / new_h
    speed = np.linalg.norm(np.diff(centers, axis=0, prepend=centers[:1]), axis=1)
    return _Layer(role, sprite, centers, _pose(sx, sy, theta), np.minimum(exposure * speed, 15.0), label)


def _overlaps(center_a: np.ndarray, ext_a: tuple[float, float], center_b: np.ndarray,
              ext_b: tuple[float, float]) -> bool:
    return bool(abs(center_a[0] - center_b[0]) < (ext_a[0] + ext_b[0]) / 2 + 2
                and abs(center_a[1] - center_b[1]) < (ext_a[1] + ext_b[1]) / 2 + 2)


# ---------------------------------------------------------------------------------------------- one sequence

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


def _cover_level(ratio: float) -> int:
    if ratio < ABSENT_BELOW:
        return 0
    if ratio >= FULLY_VISIBLE_FROM:
        return 8
    return int(min(max(math.ceil(ratio * 8), 1), 7))


def _background(rng: np.random.Generator, width: int, height: int,
                choices: Sequence[tuple[str, str]] = BACKGROUNDS) -> tuple[str, np.ndarray]:
    """A random real or textured image, rescaled so the camera window can pan and zoom inside it."""
    name, kind = choices[int(rng.integers(len(choices)))]
    image = _image(name)
    if kind == "texture":
        image = _tinted(image, rng, _TEXTURE_TINTS[name])
    image = np.ascontiguousarray(image[..., :3])
    base = max(width / image.shape[1], height / image.shape[0]) * rng.uniform(1.15, 2.2)
    size = (max(int(round(image.shape[1] * base)), width + 2), max(int(round(image.shape[0] * base)), height + 2))
    interpolation = cv2.INTER_AREA if base < 1 else cv2.INTER_LINEAR
    return name, cv2.resize(image, size, interpolation=interpolation)


def _camera(rng: np.random.Generator, n: int, source_shape: tuple[int, ...], width: int, height: int
            ) -> tuple[np.ndarray, str]:
    """Per-frame inverse maps (frame -> source): a smooth pan and zoom, sometimes a shaky hand."""
    src_h, src_w = source_shape[:2]
    zoom = 1.0 + rng.uniform(0.0, 0.45) * (0.5 + 0.5 * _curve(rng, n, int(rng.integers(1, 4))))
    pan = rng.uniform(0.2, 1.0)
    centers = []
    for axis_len, frame_len in ((src_w, width), (src_h, height)):
        half_range = max(axis_len - frame_len, 0) / 2
        start = rng.uniform(-1, 1) * (1 - pan)
        centers.append(axis_len / 2 + half_range * (start + pan * _curve(rng, n, int(rng.integers(1, 4)))))
    cx, cy = centers
    shaky = rng.random() < 0.2
    if shaky:
        cx = cx + _smooth(rng.normal(0, 2.0, n), 0.7)
        cy = cy + _smooth(rng.normal(0, 2.0, n), 0.7)
    inverse = np.zeros((n, 2, 3))
    inverse[:, 0, 0] = inverse[:, 1, 1] = 1 / zoom
    inverse[:, 0, 2] = cx - width / 2 / zoom
    inverse[:, 1, 2] = cy - height / 2 / zoom
    description = f"pan {pan:.2f}, zoom up to {zoom.max():.2f}" + (", shaky" if shaky else "")
    return inverse, description


def _target(rng: np.random.Generator, n: int, width: int, height: int, sprite: RGBA
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """Centers, scales and angle of the target: smooth motion kept (mostly) inside the frame."""
    mask_area = float(sprite[..., 3].sum())
    s0 = math.sqrt(rng.uniform(0.02, 0.10) * width * height / mask_area)
    scale = s0 * np.exp(rng.uniform(0.05, 0.4) * _curve(rng, n, int(rng.integers(1, 4))))
    aspect = np.exp(rng.uniform(0.0, 0.2) * _curve(rng, n, int(rng.integers(1, 4))))
    theta = math.radians(rng.uniform(0.0, 12.0)) * _curve(rng, n, int(rng.integers(1, 4)))
    sx, sy = scale * np.sqrt(aspect), scale / np.sqrt(aspect)
    ext_w, ext_h = _extents(sprite, sx, sy, theta)
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
        raw = (low + high) / 2 + (high - low + 2 * slack.max()) / 2 * _curve(rng, n, knots)
        centers[:, axis] = np.clip(raw, low - slack, high + slack)
    return centers, sx, sy, theta, leaves_frame


def _distractor(rng: np.random.Generator, kind: ObjectKind, token: object, n: int, width: int, height: int,
                target: _Layer, target_area: np.ndarray, target_ext: tuple[np.ndarray, np.ndarray],
                exposure: float) -> _Layer | None:
    """A look-alike that stays near the target and sometimes crosses it; None if it cannot start apart."""
    sprite, label = kind.lookalike(rng, token)
    scale = np.sqrt(target_area * rng.uniform(0.7, 1.3) / float(sprite[..., 3].sum()))
    theta = math.radians(rng.uniform(0.0, 12.0)) * _curve(rng, n, 2)
    ext_w, ext_h = _extents(sprite, scale, scale, theta)
    diag_target = np.hypot(*target_ext)
    radius0 = 0.5 * (diag_target[0] + math.hypot(ext_w[0], ext_h[0])) * rng.uniform(1.1, 1.5)
    swing, wander = _curve(rng, n, 3), _curve(rng, n, 2)
    radius = radius0 * np.clip(1 + 0.8 * (swing - swing[0]), 0.2, 2.0)
    towards_middle = math.atan2(height / 2 - target.centers[0, 1], width / 2 - target.centers[0, 0])
    for _ in range(8):
        phi = towards_middle + rng.uniform(-math.pi / 2, math.pi / 2) + math.pi * 0.7 * (wander - wander[0])
        centers = target.centers + radius[:, None] * np.stack([np.cos(phi), np.sin(phi)], -1)
        centers = np.clip(centers, [0, 0], [width, height])
        if not _overlaps(centers[0], (ext_w[0], ext_h[0]), target.centers[0], (target_ext[0][0], target_ext[1][0])):
            return _make_layer("distractor", sprite, centers, scale, scale, theta, exposure, label)
    return None


def _occluder(rng: np.random.Generator, n: int, width: int, height: int, target: _Layer,
              target_ext: tuple[np.ndarray, np.ndarray], target_kind: ObjectKind) -> tuple[_Layer, str]:
    """Something that passes in front of the target once, hiding it partly or fully for a while."""
    full = rng.random() < 0.55
    style = ("pole", "board", "object")[int(rng.choice(3, p=[0.4, 0.35, 0.25]))]
    duration = int(rng.integers(max(6, n // 8), max(8, n // 3) + 1))
    tc = int(rng.integers(int(0.3 * n + duration / 2) + 1, max(int(0.85 * n), int(0.3 * n + duration / 2) + 2)))
    tc = min(tc, n - 1)
    box_w, box_h = float(target_ext[0][tc]), float(target_ext[1][tc])
    if style == "pole":
        angle = 0.0 if rng.random() < 0.5 else math.pi
        size_w = box_w * (rng.uniform(1.6, 2.4) if full else rng.uniform(0.3, 0.6))
        size_h = height * 1.6
        along, across, perp_offset = box_w, 0.0, 0.0
        _, source = _background(rng, int(size_w) + 2, int(size_h) + 2, OCCLUDER_SURFACES)
        column = int(rng.integers(0, source.shape[1] - int(size_w) - 1))
        rgb = source[:int(size_h) + 2, column:column + int(size_w) + 2]
        sprite = _rgba(rgb, _soft_rounded_rect(rgb.shape[0], rgb.shape[1], corner=0.0))
        occluder_along = sprite.shape[1]
    else:
        angle = rng.uniform(0, 2 * math.pi)
        factor = (rng.uniform(1.6, 2.2) if style == "board" else rng.uniform(2.1, 2.6)) if full \
            else rng.uniform(0.5, 0.9)
        size_w, size_h = box_w * factor, box_h * factor
        if style == "board":
            _, source = _background(rng, int(size_w) + 2, int(size_h) + 2, OCCLUDER_SURFACES)
            y = int(rng.integers(0, source.shape[0] - int(size_h) - 1))
            x = int(rng.integers(0, source.shape[1] - int(size_w) - 1))
            rgb = source[y:y + int(size_h) + 2, x:x + int(size_w) + 2]
            sprite = _rgba(rgb, _soft_rounded_rect(rgb.shape[0], rgb.shape[1], corner=0.15 * min(rgb.shape[:2])))
        else:
            others = [kind for kind in OBJECT_KINDS if kind.name != target_kind.name]
            raw = others[int(rng.integers(len(others)))].make(rng)[0]
            fit = max(size_w / raw.shape[1], size_h / raw.shape[0])  # keep its shape, cover the wanted box
            sprite = cv2.resize(raw, (max(int(raw.shape[1] * fit), 2), max(int(raw.shape[0] * fit), 2)),
                                interpolation=cv2.INTER_AREA if fit < 1 else cv2.INTER_LINEAR)
        cos, sin = abs(math.cos(angle)), abs(math.sin(angle))
        along = cos * box_w + sin * box_h
        occluder_along = cos * sprite.shape[1] + sin * sprite.shape[0]
        across = sin * box_w + cos * box_h
        perp_offset = 0.0 if full else rng.choice([-1, 1]) * rng.uniform(0.3, 0.6) * across
    speed = (occluder_along + along) / duration
    direction = np.array([math.cos(angle), math.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    steps = (np.arange(n) - tc)[:, None]
    centers = target.centers + steps * speed * direction + perp_offset * normal
    if style == "pole":
        centers[:, 1] = height / 2
    ones = np.ones(n)
    layer = _make_layer("occluder", sprite, centers, ones, ones, np.zeros(n), 0.0, style)
    return layer, f"{'full' if full else 'partial'} ({style}) around frame {tc + 1}"


def render_sequence(rng: np.random.Generator, num_frames: int, size: tuple[int, int] = (320, 240),
                    keep_layers: bool = False) -> RenderedSequence:
    """Draw and render one sequence; ``keep_layers`` also returns the object masks and a target-free render."""
    width, height = size
    n = int(num_frames)
    background_name, background = _background(rng, width, height)
    camera, camera_text = _camera(rng, n, background.shape, width, height)
    kind = OBJECT_KINDS[int(rng.integers(len(OBJECT_KINDS)))]
    sprite, token = kind.make(rng)
    centers, sx, sy, theta, leaves_frame = _target(rng, n, width, height, sprite)
    exposure = rng.uniform(0.3, 0.9)
    target = _make_layer("target", sprite, centers, sx, sy, theta, exposure, kind.name)
    target_ext = _extents(sprite, sx, sy, theta)
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

    changing_light = rng.random() < 0.5
    light_amplitude = rng.uniform(0.15, 0.35) if changing_light else rng.uniform(0.0, 0.05)
    gain = np.exp(light_amplitude * _curve(rng, n, int(rng.integers(1, 4))))
    if rng.random() < 0.2:  # a light switched on or off
        switch = int(rng.integers(n // 4, n))
        gain = gain * np.exp(rng.choice([-1, 1]) * rng.uniform(0.25, 0.45)
                             * _smooth((np.arange(n) >= switch).astype(float), 1.0))
    gradient = rng.uniform(-0.35, 0.35, 2)[:, None] * np.stack([_curve(rng, n, 2), _curve(rng, n, 2)]) \
        if rng.random() < 0.4 else None
    xs = (np.arange(width, dtype=np.float32) + 0.5) / width - 0.5
    ys = (np.arange(height, dtype=np.float32) + 0.5) / height - 0.5
    noise_margin = 32
    noise = rng.standard_normal((height + noise_margin, width + noise_margin, 3), dtype=np.float32) \
        * np.float32(rng.uniform(0.5, 4.0))
    noise_shifts = rng.integers(0, noise_margin, (n, 2))
    camera_blur = np.zeros(n)
    camera_blur_angle = rng.uniform(0, math.pi)
    if rng.random() < 0.25:
        start = int(rng.integers(1, max(n - 4, 2)))
        camera_blur[start:start + int(rng.integers(2, 5))] = rng.uniform(5, 11)

    background_rgba = cv2.cvtColor(background, cv2.COLOR_RGB2RGBA)  # OpenCV warps 4 channels ~2.5x faster than 3
    frames: list[np.ndarray] = []
    clean_frames: list[np.ndarray] = []
    masks = np.zeros((n, height, width), bool) if keep_layers else None
    boxes = np.zeros((n, 4))
    distractor_boxes = np.full((n, 4), np.nan)
    ratios = np.zeros(n)
    cut = np.zeros(n, np.int64)
    for t in range(n):
        frame = cv2.cvtColor(cv2.warpAffine(background_rgba, camera[t], (width, height),
                                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                            borderMode=cv2.BORDER_REFLECT_101), cv2.COLOR_RGBA2RGB).astype(np.float32)
        canvases = [frame, frame.copy()] if keep_layers else [frame]
        target_roi: tuple[int, int, np.ndarray] | None = None
        hidden: np.ndarray | None = None
        for layer in layers:
            warped = layer.warp(t, width, height)
            if warped is None:
                continue
            x0, y0, sharp, drawn = warped
            rows, cols = slice(y0, y0 + sharp.shape[0]), slice(x0, x0 + sharp.shape[1])
            if layer.role == "target":
                target_roi = (x0, y0, sharp[..., 3])
                hidden = np.zeros_like(sharp[..., 3])
            elif target_roi is not None:  # drawn above the target: it may hide it
                tx0, ty0, target_alpha = target_roi
                ix0, iy0 = max(x0, tx0), max(y0, ty0)
                ix1 = min(x0 + sharp.shape[1], tx0 + target_alpha.shape[1])
                iy1 = min(y0 + sharp.shape[0], ty0 + target_alpha.shape[0])
                if ix0 < ix1 and iy0 < iy1:
                    above = sharp[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0, 3]
                    covered = hidden[iy0 - ty0:iy1 - ty0, ix0 - tx0:ix1 - tx0]
                    covered += (1.0 - covered) * above
            if layer.role == "distractor":
                box = _mask_box(sharp[..., 3] > 0.5, x0, y0)
                if box is not None:
                    distractor_boxes[t] = box
            premultiplied = cv2.cvtColor(drawn, cv2.COLOR_RGBA2RGB)
            transparency = 1.0 - cv2.cvtColor(cv2.extractChannel(drawn, 3), cv2.COLOR_GRAY2RGB)
            for index, canvas in enumerate(canvases):
                if index == 1 and layer.role == "target":
                    continue
                region = canvas[rows, cols]  # a view: cv2 writes through it
                cv2.multiply(region, transparency, dst=region)
                cv2.add(region, premultiplied, dst=region)
        boxes[t], ratios[t], cut[t] = _target_labels(target_roi, hidden, target.alpha_mass,
                                                     _area_scale(target.linear[t]), boxes[t - 1] if t else None)
        if masks is not None and target_roi is not None:
            x0, y0, alpha = target_roi
            masks[t, y0:y0 + alpha.shape[0], x0:x0 + alpha.shape[1]] = alpha > 0.5
        shade = None
        if gradient is not None:
            shade = cv2.cvtColor(1.0 + float(gradient[0, t]) * xs[None, :] + float(gradient[1, t]) * ys[:, None],
                                 cv2.COLOR_GRAY2RGB)
        dy, dx = noise_shifts[t]
        for index, canvas in enumerate(canvases):
            if camera_blur[t] > 0:
                canvas = cv2.filter2D(canvas, -1, _motion_blur_kernel(camera_blur[t], camera_blur_angle),
                                      borderType=cv2.BORDER_REFLECT_101)
            if shade is not None:
                cv2.multiply(canvas, shade, dst=canvas)
            cv2.add(canvas, noise[dy:dy + height, dx:dx + width], dst=canvas)
            image = cv2.convertScaleAbs(canvas, alpha=float(gain[t]))
            (frames if index == 0 else clean_frames).append(image)

    cover = np.array([_cover_level(r) for r in ratios], np.int64)
    absence = (cover == 0).astype(np.int64)
    speed = np.linalg.norm(np.diff(centers, axis=0), axis=1).mean() / math.sqrt(max(target_area.mean(), 1.0))
    meta = {
        "object_class": kind.object_class,
        "motion_class": "moving (synthetic)",
        "major_class": kind.major_class,
        "root_class": kind.root_class,
        "motion_adverb": "slowly" if speed < 0.05 else "fast" if speed > 0.12 else "moderately",
        "resolution": f"({width}, {height})",
        "object": kind.name,
        "background": background_name,
        "camera": camera_text,
        "occlusion": occlusion_text,
        "distractor": distractor_text,
        "illumination": ("changing" if changing_light else "steady") + (", gradient" if gradient is not None else ""),
        "leaves_frame": "yes" if leaves_frame else "no",
    }
    return RenderedSequence(frames=frames, boxes=boxes, visible_ratio=ratios, cover=cover, absence=absence,
                            cut_by_image=cut, meta=meta, target_masks=masks,
                            frames_without_target=clean_frames if keep_layers else None,
                            distractor_boxes=distractor_boxes)


def _area_scale(linear: np.ndarray) -> float:
    return abs(float(linear[0, 0] * linear[1, 1] - linear[0, 1] * linear[1, 0]))


def _mask_box(mask: np.ndarray, x0: int, y0: int) -> np.ndarray | None:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return None
    return np.array([x0 + cols[0], y0 + rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1], np.float64)


def _target_labels(target_roi: tuple[int, int, np.ndarray] | None, hidden: np.ndarray | None, alpha_mass: float,
                   area_scale: float, previous: np.ndarray | None) -> tuple[np.ndarray, float, int]:
    """Box, visible share and cut-by-image flag of the target in one frame."""
    if target_roi is None or hidden is None:
        return (previous if previous is not None else np.zeros(4)), 0.0, 1
    x0, y0, alpha = target_roi
    box = _mask_box(alpha > 0.5, x0, y0)
    if box is None:
        return (previous if previous is not None else np.zeros(4)), 0.0, 1
    in_image = float(alpha.sum())
    inside = min(in_image / max(alpha_mass * area_scale, 1e-6), 1.0)
    unoccluded = float((alpha * (1.0 - hidden)).sum()) / max(in_image, 1e-6)
    return box, inside * unoccluded, int(inside < FULLY_VISIBLE_FROM)


# -------------------------------------------------------------------------------------------------- writing

def _write_sequence(seq_dir: Path, rendered: RenderedSequence, extra_meta: dict[str, str]) -> int:
    """GOT-10k files of one sequence; returns how many files were written."""
    seq_dir.mkdir(parents=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    for index, frame in enumerate(rendered.frames, start=1):
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise RuntimeError(f"OpenCV could not encode frame {index} of {seq_dir.name} as JPEG")
        (seq_dir / f"{index:08d}.jpg").write_bytes(encoded.tobytes())
    (seq_dir / "groundtruth.txt").write_text(
        "".join(f"{x:.4f},{y:.4f},{w:.4f},{h:.4f}\n" for x, y, w, h in rendered.boxes))
    for name, values in (("absence.label", rendered.absence), ("cover.label", rendered.cover),
                         ("cut_by_image.label", rendered.cut_by_image)):
        (seq_dir / name).write_text("".join(f"{int(v)}\n" for v in values))
    n = len(rendered.frames)
    meta = rendered.meta
    # OSTrack's GOT-10k loader reads lines 6-10 by position: keep the official order of the first 11 lines.
    lines = ["[METAINFO]", f"url: embedded://{seq_dir.name}", "begin: 00:00:00",
             f"end: {_clock(n / ANNO_FPS)}", f"anno_fps: {ANNO_FPS}Hz"]
    lines += [f"{key}: {meta[key]}" for key in ("object_class", "motion_class", "major_class", "root_class",
                                                 "motion_adverb", "resolution")]
    lines += [f"{key}: {value}" for key, value in meta.items() if key not in
              ("object_class", "motion_class", "major_class", "root_class", "motion_adverb", "resolution")]
    lines += [f"{key}: {value}" for key, value in extra_meta.items()]
    (seq_dir / "meta_info.ini").write_text("\n".join(lines) + "\n")
    return n + 5


def _clock(seconds: float) -> str:
    seconds = int(math.ceil(seconds))
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _generate_one(job: tuple[Path, int, str, int, tuple[int, int], tuple[int, int]]) -> tuple[str, int, int, dict]:
    """Render and write one sequence (runs in a worker process); returns counts for the manifest."""
    split_dir, seed, split, index, frames, size = job
    rng = sequence_rng(seed, split, index)
    num_frames = int(rng.integers(frames[0], frames[1] + 1))
    rendered = render_sequence(rng, num_frames, size)
    name = sequence_name(split, index)
    files = _write_sequence(split_dir / name, rendered,
                            {"generator": f"lib.data.embedded v{GENERATOR_VERSION}", "seed": str(seed)})
    summary = {"absent_frames": int(rendered.absence.sum()),
               "occluded": rendered.meta["occlusion"] != "none", "distractor": rendered.meta["distractor"] != "none"}
    return name, num_frames, files, summary


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already (safe here: spawned workers start fresh)


_README = """Embedded tracking benchmark (generated by lib/data/embedded.py; do not commit).

GOT-10k layout: {train,val,test}/list.txt and {split}/<Seq>/00000001.jpg..., groundtruth.txt (x,y,w,h per
frame), absence.label (1 = object fully hidden), cover.label (visible share of the object: 0 = under 1 %,
else ceil(8 x share), 8 from 97 % on), cut_by_image.label (1 = partly outside the image) and meta_info.ini
(resolution: (W, H); the first lines follow the official order). Boxes are the tight box of the pasted object's
mask, clipped to the image; while the object is hidden they still mark where it is.

Unlike the official GOT-10k test split, test/*/groundtruth.txt holds the boxes of ALL frames, because this
benchmark is evaluated locally. manifest.json records the parameters that reproduce these files exactly.
"""


def _count_files(root: Path) -> int:
    count = 0
    for _, _, files in os.walk(root):
        count += len(files)
    return count


def _read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None


def is_complete(folder: Path, params: EmbeddedParams) -> bool:
    """A finished benchmark of exactly these parameters (manifest matches and no file is missing)."""
    manifest = _read_manifest(folder)
    return (manifest is not None and manifest.get("generator_version") == GENERATOR_VERSION
            and manifest.get("params") == params.as_dict()
            and manifest.get("file_count") == _count_files(folder) - 1)


class _Progress:
    def __init__(self, total: int, target: Path, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, 0, enabled
        self.start = time.perf_counter()
        self.tty = enabled and sys.stderr.isatty()
        self.next_report = 0.25
        if enabled:
            print(f"embedded benchmark: generating {total} sequences into {target}", file=sys.stderr, flush=True)

    def step(self) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self.tty:
            print(f"\r  {self.done}/{self.total} sequences", end="", file=sys.stderr, flush=True)
        elif self.done / self.total >= self.next_report:
            print(f"  {self.done}/{self.total} sequences", file=sys.stderr, flush=True)
            self.next_report += 0.25

    def finish(self) -> None:
        if self.enabled:
            print(("\n" if self.tty else "") + f"embedded benchmark: done in {time.perf_counter() - self.start:.1f} s",
                  file=sys.stderr, flush=True)


def default_workers(total: int) -> int:
    """Worker processes: one per core, but a pool costs more than it saves for a handful of sequences."""
    if total < 8:
        return 1
    return max(1, min(os.cpu_count() or 1, 8, total // 4))


def generate_embedded_benchmark(target: str | Path, params: EmbeddedParams, progress: bool = True,
                                workers: int | None = None, replace: bool = False) -> Path:
    """Generate into a temporary folder beside ``target`` and rename it into place only when complete.

    An existing complete benchmark at ``target`` is kept unless ``replace`` is set.
    """
    target = Path(target)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(parent, target.name)  # generations killed outright (their process is gone)
    partial = temp_sibling(target)
    jobs = [(partial / split, params.seed, split, index, params.frames, params.size)
            for split in SPLITS for index in range(params.count(split))]
    workers = default_workers(len(jobs)) if workers is None else max(1, int(workers))
    tracker = _Progress(len(jobs), target, progress)
    try:
        for split in SPLITS:
            (partial / split).mkdir(parents=True)
        results = {}
        if workers == 1:
            for job in jobs:
                results[(job[2], job[3])] = _generate_one(job)
                tracker.step()
        else:
            # 'spawn', not fork: a forked child inherits OpenCV's (or torch's) thread-pool locks and can hang.
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_init_worker) as pool:
                futures = {pool.submit(_generate_one, job): (job[2], job[3]) for job in jobs}
                try:
                    for future in as_completed(futures):
                        results[futures[future]] = future.result()
                        tracker.step()
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
        splits = {}
        for split in SPLITS:
            rows = [results[(split, index)] for index in range(params.count(split))]
            (partial / split / "list.txt").write_text("".join(f"{row[0]}\n" for row in rows))
            splits[split] = {"sequences": len(rows), "frames": sum(row[1] for row in rows),
                             "absent_frames": sum(row[3]["absent_frames"] for row in rows),
                             "with_occluder": sum(row[3]["occluded"] for row in rows),
                             "with_distractor": sum(row[3]["distractor"] for row in rows)}
        (partial / "README.txt").write_text(_README)
        manifest = {"generator": "lib.data.embedded", "generator_version": GENERATOR_VERSION,
                    "layout": "GOT-10k (test split with boxes for all frames)", "params": params.as_dict(),
                    "jpeg_quality": JPEG_QUALITY, "splits": splits, "file_count": _count_files(partial),
                    "sources": "scikit-image 0.26 bundled images (CC0/public domain; LFW subset without stated "
                               "licence), matplotlib sample grace_hopper.jpg (US Navy, public domain)"}
        (partial / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _publish(partial, target, params, replace)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    tracker.finish()
    return target


def _publish(partial: Path, target: Path, params: EmbeddedParams, replace: bool) -> None:
    """Rename the finished folder into place; a complete copy made meanwhile by another process wins."""
    if target.exists():
        if not replace and is_complete(target, params):
            return
        stale = temp_sibling(target)  # our own cache: regenerated, so the old copy is deleted, not kept aside
        os.rename(target, stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        durable_rename(partial, target)
    except OSError:
        if not is_complete(target, params):
            raise


def embedded_root(root: str | Path | None = None) -> Path:
    """Where benchmarks are cached: ``root``, else the 'embedded' dataset folder of the data root."""
    if root is not None:
        return Path(root)
    from lib.utils.paths import get_paths
    return get_paths().dataset_dir("embedded", must_exist=False)


def ensure_embedded_benchmark(root: str | Path | None = None, seed: int = 0, num_train: int = 40,
                              num_val: int = 10, num_test: int = 10, frames: tuple[int, int] = (40, 80),
                              size: tuple[int, int] = (320, 240), progress: bool = True,
                              workers: int | None = None, force: bool = False) -> Path:
    """The GOT-10k-style root of the benchmark for these parameters, generated on first use and cached.

    ``root`` is the cache folder (default ``<data root>/embedded``); each parameter set gets its own sub-folder,
    so the returned path is what a GOT-10k loader should be pointed at. ``force`` regenerates a cached copy.
    """
    params = EmbeddedParams(seed=seed, num_train=num_train, num_val=num_val, num_test=num_test, frames=frames,
                            size=size)
    target = embedded_root(root) / params.folder_name
    if not force and is_complete(target, params):
        return target
    return generate_embedded_benchmark(target, params, progress=progress, workers=workers, replace=force)
