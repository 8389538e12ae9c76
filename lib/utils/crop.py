"""Square crops around a box, shared by training and tracking (OSTrack's ``sample_target``).

Rules kept for parity with the official code: side = ceil(sqrt(w*h) * factor); the corner is rounded
with Python's round (half to even); zero padding outside the image; once the crop reaches the right or
bottom border, the last image column/row is dropped and replaced by padding (pad = x2 - W + 1); the
padded square is resized bilinearly with OpenCV.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch


@dataclass
class Crop:
    image: np.ndarray  # (S, S, 3) uint8
    resize_factor: float  # output size / crop side in image pixels
    padding_mask: np.ndarray  # (S, S) bool, True where the crop lies outside the image
    crop_size: int  # crop side in image pixels


def crop_geometry(box: Sequence[float], factor: float) -> tuple[int, int, int]:
    """(x1, y1, side) of the square crop around ``box`` = (x, y, w, h)."""
    x, y, w, h = (float(v) for v in box)
    side = math.ceil(math.sqrt(w * h) * factor)
    if side < 1:
        raise ValueError(f"box {list(box)} is too small to crop (side {side} px)")
    return round(x + 0.5 * w - side * 0.5), round(y + 0.5 * h - side * 0.5), side


def crop_misses_image(x1: int, y1: int, side: int, height: int, width: int) -> bool:
    """Whether the square crop at (x1, y1) holds no pixel of a ``width`` x ``height`` image under
    :func:`sample_target`'s rules (its last image column/row is dropped at the border). Training rejects such a
    crop on every side, as the official code does; the tracker never asks (its box stays on the image)."""
    columns = min(x1 + side, width - 1) - max(x1, 0)
    rows = min(y1 + side, height - 1) - max(y1, 0)
    return columns <= 0 or rows <= 0


def crop_memory_bytes(side: int, channels: int = 3) -> int:
    """Peak memory of :func:`sample_target` for a crop of ``side`` pixels: the padded uint8 square, its float64
    padding mask and the boolean copy, all side x side before the resize."""
    return side * side * (channels + 8 + 1)


def sample_target(image: np.ndarray, box: Sequence[float], factor: float, output_size: int | None = None,
                  out: np.ndarray | None = None) -> Crop:
    """Crop ``factor`` times the box's geometric-mean side around its centre and resize to ``output_size``.

    ``out`` may be a preallocated (S, S, 3) uint8 array that receives the resized crop.
    """
    x1, y1, side = crop_geometry(box, factor)
    height, width = image.shape[:2]
    x2, y2 = x1 + side, y1 + side
    pad_left, pad_top = max(0, -x1), max(0, -y1)
    pad_right, pad_bottom = max(x2 - width + 1, 0), max(y2 - height + 1, 0)
    region = image[y1 + pad_top:y2 - pad_bottom, x1 + pad_left:x2 - pad_right]
    padded = np.zeros((side, side) + image.shape[2:], dtype=image.dtype)
    padded[pad_top:pad_top + region.shape[0], pad_left:pad_left + region.shape[1]] = region
    mask = np.ones((side, side), dtype=np.float64)
    mask[pad_top:side - pad_bottom, pad_left:side - pad_right] = 0
    if output_size is None:
        return Crop(padded, 1.0, mask.astype(bool), side)
    resized = cv2.resize(padded, (output_size, output_size), dst=out)
    mask = cv2.resize(mask, (output_size, output_size)).astype(bool)
    return Crop(resized, output_size / side, mask, side)


def box_to_crop(box: torch.Tensor, box_extract: torch.Tensor, resize_factor: float, output_size: int,
                normalize: bool = False) -> torch.Tensor:
    """Map an image box (x, y, w, h) into the crop made around ``box_extract``."""
    extract_centre = box_extract[0:2] + 0.5 * box_extract[2:4]
    centre = box[0:2] + 0.5 * box[2:4]
    size = torch.tensor([float(output_size), float(output_size)])
    out_centre = (size - 1) / 2 + (centre - extract_centre) * resize_factor
    out_wh = box[2:4] * resize_factor
    out = torch.cat((out_centre - 0.5 * out_wh, out_wh))
    return out / size[0] if normalize else out
