"""Checks on user-given boxes, shared by the trackers and the benchmark runner."""
from __future__ import annotations

import math
from collections.abc import Sequence

from lib.utils.errors import UserError


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
