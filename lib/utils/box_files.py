"""The one parser of box/label text files (ground truth, raw results, flags).

Commas, tabs and spaces are all accepted, even mixed within one file (OTB's BlurCar1 has a single
space-separated line among comma lines), so nobody needs per-benchmark delimiter guessing. 'NaN' is kept.
Callers turn :class:`TableFormatError` into their own user-facing error with the file's context.
"""
from __future__ import annotations

import io

import numpy as np


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
