"""Boxes: reading box files, checking user-given boxes, conversions and IoU (torch for training, numpy for analysis).

Box text files (ground truth, raw results, flags) have one parser, :func:`parse_number_table`: commas, tabs and
spaces are all accepted, even mixed within one file (OTB's BlurCar1 has a single space-separated line among comma
lines), so nobody needs per-benchmark delimiter guessing; 'NaN' is kept. Callers turn :class:`TableFormatError`
into their own user-facing error with the file's context.

The torch functions import torch when called, not here: evaluation, analysis and packing use this module and start
without torch (seconds). Their results are bit-identical to torchvision's ``box_convert`` and (diagonal of)
``box_iou`` / ``generalized_box_iou`` (tests/test_boxes.py), which are not used because importing torchvision
costs seconds more and its IoUs are all-pairs (N x M) where the losses need row-paired ones.
"""
from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from lib.utils.errors import UserError

if TYPE_CHECKING:
    import torch


# ------------------------------------------------------------------------------------------- box text files

class TableFormatError(ValueError):
    """The text is not a table of numbers of the expected shape; the message is the reason."""


def parse_number_table(text: str) -> np.ndarray:
    """Numbers of a text table as a 2-D float64 array."""
    if not text.strip():
        raise TableFormatError("the file is empty")
    try:
        return np.loadtxt(io.StringIO(text.replace(",", " ").replace("\t", " ")), ndmin=2, dtype=np.float64)
    except ValueError as err:
        raise TableFormatError(f"not a table of numbers ({err})") from None


def parse_box_table(text: str) -> np.ndarray:
    """``x, y, w, h`` lines as an (N, 4) float64 array."""
    boxes = parse_number_table(text)
    if boxes.shape[1] != 4:
        raise TableFormatError(f"{boxes.shape[1]} values per line, expected 4 (x, y, w, h)")
    return boxes


# ------------------------------------------------------------------------------------------ user-given boxes

class InvalidBoxError(UserError, ValueError):
    """The initial box cannot be tracked (NaN, zero or negative size, outside the image)."""


def validate_init_box(box: Sequence[float], image_shape: Sequence[int]) -> list[float]:
    """``box`` as four floats (x, y, w, h), or :class:`InvalidBoxError` saying what is wrong with it."""
    values = list(box)
    if len(values) != 4:
        raise InvalidBoxError(f"initial box must be [x, y, w, h], got {values}")
    try:
        x, y, w, h = (float(v) for v in values)
    except (TypeError, ValueError):
        raise InvalidBoxError(f"initial box {values} is not 4 numbers") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise InvalidBoxError(f"initial box {values} contains NaN or infinity")
    if w <= 0 or h <= 0:
        raise InvalidBoxError(f"initial box {values} has zero or negative size; expected [x, y, w, h] with w, h > 0")
    height, width = image_shape[:2]
    if x + w <= 0 or y + h <= 0 or x >= width or y >= height:
        raise InvalidBoxError(f"initial box {values} lies entirely outside the {width}x{height} image")
    return [x, y, w, h]


# ----------------------------------------------------------------------- torch: conversions and (G)IoU (training)

def box_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    import torch

    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    import torch

    x1, y1, w, h = boxes.unbind(-1)
    return torch.stack([x1, y1, x1 + w, y1 + h], dim=-1)


def _area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def paired_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and union of row-paired (N, 4) xyxy boxes."""
    import torch

    top_left = torch.max(boxes1[:, :2], boxes2[:, :2])
    bottom_right = torch.min(boxes1[:, 2:], boxes2[:, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = _area(boxes1) + _area(boxes2) - inter
    return inter / union, union


class DegenerateBoxError(ValueError):
    """A box with x2 < x1 or y2 < y1: GIoU is undefined for it."""


def generalized_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """GIoU and IoU of row-paired (N, 4) xyxy boxes."""
    import torch

    if not ((boxes1[:, 2:] >= boxes1[:, :2]).all() and (boxes2[:, 2:] >= boxes2[:, :2]).all()):
        raise DegenerateBoxError("GIoU needs boxes with x2 >= x1 and y2 >= y1")
    iou, union = paired_iou(boxes1, boxes2)
    top_left = torch.min(boxes1[:, :2], boxes2[:, :2])
    bottom_right = torch.max(boxes1[:, 2:], boxes2[:, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    enclosing = wh[:, 0] * wh[:, 1]
    return iou - (enclosing - union) / enclosing, iou


# --------------------------------------------------------------------------------- numpy: IoU of the analysis

def pytracking_box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of ``[x, y, w, h]`` boxes, computed exactly as pytracking's analysis (OSTrack's toolkit) does.

    Its pixel-inclusive "+1" form equals the continuous IoU mathematically but not always in floating point
    (the last bit differs on about 1 in 10,000 random pairs), and the success curves' strict ``>`` ties depend on
    those bits, so the formula is kept as it is. A zero union gives NaN (callers decide what that means); no
    clipping, no epsilon.
    """
    top_left = np.maximum(boxes_a[:, :2], boxes_b[:, :2])
    bottom_right = np.minimum(boxes_a[:, :2] + boxes_a[:, 2:] - 1.0, boxes_b[:, :2] + boxes_b[:, 2:] - 1.0)
    size = np.clip(bottom_right - top_left + 1.0, 0.0, None)
    intersection = size[:, 0] * size[:, 1]
    union = boxes_a[:, 2] * boxes_a[:, 3] + boxes_b[:, 2] * boxes_b[:, 3] - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return intersection / union
