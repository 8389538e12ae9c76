"""Bundled images and the sprites cut from them: soft masks, premultiplied RGBA crops, coins, faces, horse, logo.

Sources: scikit-image's bundled images are CC0 / public domain per ``skimage/data/_fetchers.py`` (the LFW subset
states no licence); Grace Hopper's portrait (matplotlib's sample data) is a US Navy public-domain photo.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

import cv2
import numpy as np

from lib.utils.errors import UserError

RGBA = np.ndarray  # float32 (h, w, 4): premultiplied RGB in 0..255, alpha in 0..1
LFW_FACES = 100  # skimage's lfw_subset: the first 100 images are faces, the other 100 background patches


@cache
def bundled_image(name: str) -> np.ndarray:
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


def soft_ellipse(height: int, width: int, feather: float = 1.2) -> np.ndarray:
    """Ellipse mask filling the box, with an anti-aliased rim."""
    ys = (np.arange(height, dtype=np.float32) + 0.5 - height / 2) / (height / 2)
    xs = (np.arange(width, dtype=np.float32) + 0.5 - width / 2) / (width / 2)
    radius = np.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)
    return np.clip((1.0 - radius) * min(height, width) / 2 / feather + 0.5, 0.0, 1.0)


def soft_rounded_rect(height: int, width: int, corner: float, feather: float = 1.0) -> np.ndarray:
    """Signed-distance rounded rectangle with an anti-aliased rim."""
    corner = min(corner, height / 2, width / 2)
    ys = np.abs(np.arange(height, dtype=np.float32) + 0.5 - height / 2) - (height / 2 - corner)
    xs = np.abs(np.arange(width, dtype=np.float32) + 0.5 - width / 2) - (width / 2 - corner)
    outside = np.sqrt(np.maximum(ys[:, None], 0) ** 2 + np.maximum(xs[None, :], 0) ** 2)
    inside = np.minimum(np.maximum(ys[:, None], xs[None, :]), 0)
    distance = outside + inside - corner
    return np.clip(0.5 - distance / feather, 0.0, 1.0)


def rgba_sprite(rgb: np.ndarray, alpha: np.ndarray) -> RGBA:
    """Premultiplied sprite cropped to its mask, so warps and blurs keep clean edges and small ROIs."""
    alpha = alpha.astype(np.float32)
    rows, cols = np.flatnonzero(alpha.max(1) > 0), np.flatnonzero(alpha.max(0) > 0)
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    alpha = alpha[y0:y1, x0:x1]
    sprite = np.empty((y1 - y0, x1 - x0, 4), np.float32)
    sprite[..., :3] = rgb[y0:y1, x0:x1].astype(np.float32) * alpha[..., None]
    sprite[..., 3] = alpha
    return sprite


def photo_crop(name: str, box: tuple[int, int, int, int], shape: str = "ellipse") -> RGBA:
    """A region of a bundled photo, cut out as an ellipse or (``shape="rect"``) a rounded rectangle."""
    x0, y0, x1, y1 = box
    crop = bundled_image(name)[y0:y1, x0:x1, :3]
    height, width = crop.shape[:2]
    mask = (soft_ellipse(height, width) if shape == "ellipse"
            else soft_rounded_rect(height, width, corner=min(height, width) / 3))
    return rgba_sprite(crop, mask)


def recoloured(sprite: RGBA, rng: np.random.Generator, strength: float = 0.25, flip: bool | None = None) -> RGBA:
    """Another instance of the same kind of object: other colours, maybe mirrored."""
    out = sprite.copy()
    out[..., :3] *= rng.uniform(1 - strength, 1 + strength, 3).astype(np.float32)
    np.minimum(out[..., :3], 255.0 * out[..., 3:], out=out[..., :3])
    if flip if flip is not None else rng.random() < 0.5:
        out = out[:, ::-1].copy()
    return out


def tinted(gray: np.ndarray, rng: np.random.Generator, base: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """A gray image coloured with ``base`` and a random per-sequence shift, as RGB uint8."""
    tint = np.asarray(base, np.float32) * rng.uniform(0.85, 1.15, 3).astype(np.float32)
    return np.clip(gray[..., None].astype(np.float32) * tint, 0, 255).astype(np.uint8)


@cache
def _coin_sprites() -> tuple[RGBA, ...]:
    """The coins photo is a tray of look-alike objects; segment each coin once."""
    gray = bundled_image("coins")
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
        coins.append(rgba_sprite(rgb, soft))
    return tuple(coins)


def coin(rng: np.random.Generator, exclude: int | None = None) -> tuple[RGBA, int]:
    """A random coin in a random metal colour, and its index (so a look-alike can pick another one)."""
    coins = _coin_sprites()
    index = int(rng.integers(len(coins)))
    if exclude is not None and index == exclude:
        index = (index + 1) % len(coins)
    metal = np.array([[1.0, 0.78, 0.45], [0.95, 0.95, 1.0], [1.0, 0.88, 0.55]][int(rng.integers(3))], np.float32)
    sprite = coins[index].copy()
    sprite[..., :3] *= metal * rng.uniform(0.9, 1.15)
    np.minimum(sprite[..., :3], 255.0 * sprite[..., 3:], out=sprite[..., :3])
    return sprite, index


def lfw_face(rng: np.random.Generator, exclude: int | None = None) -> tuple[RGBA, int]:
    """A random LFW face in a random skin tone, and its index (so a look-alike can pick another one)."""
    faces = bundled_image("lfw_subset")[:LFW_FACES]
    index = int(rng.integers(len(faces)))
    if exclude is not None and index == exclude:
        index = (index + 1) % len(faces)
    face = cv2.resize(faces[index].astype(np.float32), (75, 75), interpolation=cv2.INTER_CUBIC)[:, 7:68]
    skin = np.array([1.0, 0.84, 0.72], np.float32) * rng.uniform(0.75, 1.1, 3).astype(np.float32)
    rgb = np.clip(face[..., None] * 255.0 * skin, 0, 255)
    return rgba_sprite(rgb, soft_ellipse(*face.shape)), index


def textured_horse(rng: np.random.Generator) -> tuple[RGBA, str]:
    """The horse silhouette filled with a real surface (wood, fur, gravel, grass)."""
    silhouette = (~bundled_image("horse")).astype(np.uint8) * 255
    alpha = cv2.GaussianBlur(silhouette, (3, 3), 0).astype(np.float32) / 255
    height, width = alpha.shape
    surfaces = {"wood": ("coffee", (430, 0, 600, 400)), "fur": ("chelsea", (0, 150, 130, 300)),
                "gravel": ("gravel", None), "grass": ("grass", None)}
    name = list(surfaces)[int(rng.integers(len(surfaces)))]
    source, box = surfaces[name]
    image = bundled_image(source)
    if box is not None:
        image = image[box[1]:box[3], box[0]:box[2]]
    if image.ndim == 2:
        image = tinted(image, rng, base=(0.75, 0.6, 0.45))
    texture = cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=cv2.INTER_LINEAR)
    return rgba_sprite(texture, alpha), name


def logo(rng: np.random.Generator, hue_shift: bool = False) -> RGBA:
    """The RGBA logo; its alpha is fully opaque in scikit-image 0.26, so a disk cuts away the white surround."""
    image = bundled_image("logo")
    alpha = image[..., 3].astype(np.float32) / 255 * soft_ellipse(*image.shape[:2])
    rgb = image[..., :3]
    if hue_shift:
        rgb = rgb[..., list(rng.permutation(3))]
    return rgba_sprite(rgb, alpha)
