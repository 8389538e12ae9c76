"""Tolerant parsing of training annotations: one bad row makes one frame unusable, not the whole sequence.

Box files hold ``x, y, w, h`` per line (comma, tab or space separated). A row that is not four finite numbers
of sane magnitude with a positive size marks its frame invalid and is counted by cause; a file in which no row
holds four numbers is unparsable (:class:`~lib.utils.boxes.TableFormatError`). Rows with ``w`` or ``h`` equal
to 0 are how datasets mark an absent target: they are invalid frames but not problems.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from lib.utils.boxes import TableFormatError, parse_number_table

#: no video frame is 100,000 px wide: a coordinate beyond this is a corrupt value (1e30), not a box
MAX_COORDINATE = 1e5

NOT_A_NUMBER = "not a number"
WRONG_LENGTH = "not 4 values"
NAN = "NaN"
INFINITE = "infinite"
HUGE = "absurdly large"
NEGATIVE_SIZE = "negative size"
MISSING_LABEL = "no label value"


@dataclass
class ParsedRows:
    """Rows as floats (bad rows are NaN), the problems found by cause and the first one in words."""

    values: np.ndarray
    problems: Counter = field(default_factory=Counter)
    example: str | None = None

    def add(self, cause: str, count: int, example: str) -> None:
        if count:
            self.problems[cause] += count
            self.example = self.example or example


def usable_boxes(boxes: np.ndarray) -> np.ndarray:
    """Rows that are finite, of sane magnitude and of positive size (the frames a crop can be cut from)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    with np.errstate(invalid="ignore"):
        return (np.isfinite(boxes).all(axis=1) & (np.abs(boxes) <= MAX_COORDINATE).all(axis=1)
                & (boxes[:, 2] > 0) & (boxes[:, 3] > 0))


def box_problems(boxes: np.ndarray, first_row: int = 1) -> ParsedRows:
    """The bad-value causes of ``boxes`` (N, 4); zero-size rows (absent target) are not problems."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    parsed = ParsedRows(boxes)
    if boxes.size == 0:
        return parsed
    nan = np.isnan(boxes).any(axis=1)
    infinite = ~nan & np.isinf(boxes).any(axis=1)
    finite = ~nan & ~infinite
    with np.errstate(invalid="ignore"):
        huge = finite & (np.abs(boxes) > MAX_COORDINATE).any(axis=1)
        negative = finite & ~huge & ((boxes[:, 2] < 0) | (boxes[:, 3] < 0))
    for cause, rows in ((NAN, nan), (INFINITE, infinite), (HUGE, huge), (NEGATIVE_SIZE, negative)):
        hits = np.flatnonzero(rows)
        if len(hits):
            parsed.add(cause, len(hits), f"row {hits[0] + first_row} {boxes[hits[0]].tolist()} is {cause}")
    return parsed


def parse_box_rows(text: str) -> ParsedRows:
    """``x, y, w, h`` lines as an (N, 4) float64 array with bad rows as NaN; blank lines are ignored."""
    if not text.strip():
        return ParsedRows(np.zeros((0, 4)))
    try:
        boxes = parse_number_table(text)  # the common, clean file: one vectorised parse
    except TableFormatError:
        boxes = None
    if boxes is not None and boxes.shape[1] == 4:
        parsed = box_problems(boxes)
    else:
        parsed = _parse_rows_one_by_one(text)
    parsed.values = parsed.values.copy()
    parsed.values[~usable_boxes(parsed.values) & _nonzero_size(parsed.values)] = np.nan
    return parsed


def _nonzero_size(boxes: np.ndarray) -> np.ndarray:
    """Rows that are not the 'absent target' convention (w or h exactly 0 with finite values)."""
    with np.errstate(invalid="ignore"):
        zero = np.isfinite(boxes).all(axis=1) & ((boxes[:, 2] == 0) | (boxes[:, 3] == 0))
    return ~zero


def _spaces(text: str) -> str:
    return text.replace(",", " ").replace("\t", " ")


def _parse_rows_one_by_one(text: str) -> ParsedRows:
    rows: list[list[float]] = []
    parsed = ParsedRows(np.zeros((0, 4)))
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = _spaces(line).split()
        if not tokens:
            continue
        try:
            values = [float(token) for token in tokens]
        except ValueError:
            parsed.add(NOT_A_NUMBER, 1, f"row {number} {line.strip()[:40]!r} is {NOT_A_NUMBER}")
            rows.append([np.nan] * 4)
            continue
        if len(values) != 4:
            parsed.add(WRONG_LENGTH, 1, f"row {number} has {len(values)} values, expected 4 (x, y, w, h)")
            rows.append([np.nan] * 4)
            continue
        checked = box_problems(np.array([values]), first_row=number)
        for cause, count in checked.problems.items():
            parsed.add(cause, count, checked.example or "")
        rows.append(values)
    values = np.array(rows, dtype=np.float64).reshape(-1, 4)
    if len(values) and not np.isfinite(values).all(axis=1).any() and (
            parsed.problems[NOT_A_NUMBER] + parsed.problems[WRONG_LENGTH]) == len(values):
        raise TableFormatError(f"no line holds 4 numbers ({parsed.example})")
    parsed.values = values
    return parsed


def parse_label_values(text: str, length: int) -> ParsedRows:
    """Per-frame numbers (one per line, or one comma-separated line) fitted to ``length`` frames; a value that
    is not a finite number, and a frame the file has no value for, is NaN (so it is never 'visible')."""
    tokens = _spaces(text).split()
    values = np.full(len(tokens), np.nan)
    parsed = ParsedRows(values)
    bad = []
    for index, token in enumerate(tokens):
        try:
            values[index] = float(token)
        except ValueError:
            bad.append(index)
    if tokens and len(bad) == len(tokens):
        raise TableFormatError(f"no value is a number (first: {tokens[0][:40]!r})")
    if bad:
        parsed.add(NOT_A_NUMBER, len(bad), f"value {bad[0] + 1} {tokens[bad[0]][:40]!r} is {NOT_A_NUMBER}")
    not_finite = np.flatnonzero(~np.isfinite(values) & ~np.isin(np.arange(len(values)), bad))
    if len(not_finite):
        parsed.add(NAN if np.isnan(values[not_finite[0]]) else INFINITE, len(not_finite),
                   f"value {not_finite[0] + 1} is {values[not_finite[0]]}")
    if len(values) < length:
        parsed.add(MISSING_LABEL, length - len(values), f"{len(values)} values for {length} frames")
        values = np.concatenate([values, np.full(length - len(values), np.nan)])
    parsed.values = values[:length]
    return parsed
