"""Natural order of file and folder names ('frame2' before 'frame10'), the one order for frames and sequences.

Training (:class:`~lib.train.data.datasets.custom.CustomFolder`) and evaluation (the ``folder`` benchmark) read
the same ``<root>/<seq>/`` folders and pair frame i with ground-truth row i, so both must sort frames alike.
Letter case is ignored ('IMG_2' before 'img_10'), as file browsers do.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> list[int | str]:
    """Sort key that orders ``frame2`` before ``frame10``, ignoring letter case."""
    return [int(part) if part.isdigit() else part.lower() for part in _DIGITS.split(text)]


def natural_sorted(items: Iterable[str]) -> list[str]:
    """``items`` in natural order (:func:`natural_key`)."""
    return sorted(items, key=natural_key)
