"""Per-sequence one-pass-evaluation (OPE) metrics, bit-compatible with OSTrack/pytracking.

The rules follow OSTrack's ``calc_seq_err_robust`` (pytracking, April 2020) including its quirks, because
published numbers were computed with them:

* IoU with the "+1 pixel" convention (:func:`lib.utils.boxes.pytracking_box_iou`), centre error and centre
  error normalised by the ground-truth size;
* a NaN, infinite or negative-size prediction is an error; zero-size predictions repeat the previous box;
* a prediction longer than the ground truth is truncated; a shorter one is an error for ``'lasot'`` and is
  padded with zero boxes (failures) for every other tag (the analysis names every such file, see
  :func:`length_fix`, so a cut-off run cannot pass unnoticed);
* frame 0 is replaced by the ground truth and still counted;
* frames with ground-truth w <= 0, h <= 0, NaN, or an invisible target are invalid: IoU -1 (failure),
  centre error -1 (success) for ``'uav'`` and +inf (failure) otherwise, normalised error -1 (success);
  for the tag ``'lasot'`` only, invisible frames are failures for both centre errors;
* success curve over 21 overlap thresholds with strict ``>``; precision curves over 51 pixel / normalised
  thresholds with ``<=``.

Deliberate deviations (OSTrack crashes in these cases, so no published number depends on them): a
zero-size prediction beyond the ground-truth length is simply truncated, and an empty result file is
reported as an error instead of an ``IndexError``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lib.utils.boxes import pytracking_box_iou
from lib.utils.errors import UserError

PLOT_BIN_GAP = 0.05
# Same construction as OSTrack (``arange(0, 1 + gap, gap)`` in float64) so that strict ``>`` ties match.
OVERLAP_THRESHOLDS: np.ndarray = np.arange(0.0, 1.0 + PLOT_BIN_GAP, PLOT_BIN_GAP, dtype=np.float64)
CENTER_THRESHOLDS: np.ndarray = np.arange(0, 51, dtype=np.float64)
NORM_CENTER_THRESHOLDS: np.ndarray = np.arange(0, 51, dtype=np.float64) / 100.0
PRECISION_INDEX = 20  # 20 px and 0.20 of the target size
OP50_INDEX = int(np.flatnonzero(np.isclose(OVERLAP_THRESHOLDS, 0.50))[0])
OP75_INDEX = int(np.flatnonzero(np.isclose(OVERLAP_THRESHOLDS, 0.75))[0])

TAG_UAV = "uav"
TAG_LASOT = "lasot"
# Tags whose result files must have exactly one row per ground-truth frame.
TAGS_REQUIRING_FULL_LENGTH = frozenset({TAG_LASOT})


class InvalidResultError(UserError):
    """A result file cannot be scored (NaN, negative size, wrong length, unreadable, missing).

    ``reason`` says what is wrong and how to fix it; ``path`` (when known) is prefixed to the message.
    """

    def __init__(self, reason: str, path: str | Path | None = None) -> None:
        self.reason = reason
        self.path = Path(path) if path is not None else None
        super().__init__(f"{path}: {reason}" if path is not None else reason)

    def at(self, path: str | Path) -> InvalidResultError:
        """The same error, attributed to ``path`` unless it already names a file."""
        return self if self.path is not None else InvalidResultError(self.reason, path)


class AnnotationError(UserError):
    """The ground truth itself breaks a rule of the metric (e.g. NaN rows outside UAV123)."""


@dataclass(frozen=True)
class SequenceMetrics:
    """Per-sequence curves (fractions in [0, 1]) and the average overlap over valid frames."""

    success: np.ndarray         # (21,) fraction of frames with IoU > threshold
    precision: np.ndarray       # (51,) fraction of frames with centre error <= threshold (px)
    norm_precision: np.ndarray  # (51,) fraction of frames with normalised centre error <= threshold
    avg_overlap: float          # mean IoU over valid frames (NaN when there is none)
    num_frames: int
    num_valid_frames: int

    @property
    def auc(self) -> float:
        return float(self.success.mean())


def box_centers(boxes: np.ndarray) -> np.ndarray:
    return boxes[:, :2] + 0.5 * (boxes[:, 2:] - 1.0)


def center_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Euclidean distance in pixels between box centres."""
    return np.sqrt(((box_centers(pred) - box_centers(gt)) ** 2).sum(axis=1))


def normalized_center_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Centre distance with x divided by the GT width and y by the GT height (TrackingNet's definition)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = (box_centers(pred) - box_centers(gt)) / gt[:, 2:]
        return np.sqrt((offset ** 2).sum(axis=1))


def check_predictions(pred: np.ndarray) -> None:
    """Reject boxes no metric can score; the message names the first offending line (1-based)."""
    if pred.ndim != 2 or pred.shape[1] != 4:
        raise InvalidResultError(f"expected 4 values per line (x, y, w, h), got shape {pred.shape}")
    if len(pred) == 0:
        raise InvalidResultError("the result file is empty; re-run the tracker on this sequence")
    bad_value = ~np.isfinite(pred).all(axis=1)
    if bad_value.any():
        line = int(np.flatnonzero(bad_value)[0]) + 1
        raise InvalidResultError(f"{int(bad_value.sum())} line(s) hold NaN or infinite values (first: line {line}); "
                                 "the tracker must write a finite box on every frame")
    negative = (pred[:, 2:] < 0).any(axis=1)
    if negative.any():
        line = int(np.flatnonzero(negative)[0]) + 1
        raise InvalidResultError(f"{int(negative.sum())} line(s) have a negative width or height "
                                 f"(first: line {line}); the tracker must write w, h >= 0")


def repair_zero_size(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Replace zero-size boxes by the previous (repaired) box, as OSTrack does; frame 0 is never replaced.

    Frames whose GT row holds a NaN keep their zero-size box. Only rows that have a GT row are looked at
    (OSTrack crashes on a zero-size box beyond the GT length; those rows are truncated anyway).
    """
    n = min(len(pred), len(gt))
    replace = np.zeros(len(pred), dtype=bool)
    replace[1:n] = (pred[1:n, 2:] == 0.0).any(axis=1) & ~np.isnan(gt[1:n]).any(axis=1)
    if not replace.any():
        return pred
    source = np.where(replace, 0, np.arange(len(pred)))
    np.maximum.accumulate(source, out=source)
    return pred[source]


LENGTH_PADDED = "padded with failures"
LENGTH_TRUNCATED = "truncated"


def length_fix(num_rows: int, num_frames: int) -> str | None:
    """What :func:`fit_length` does to a result of ``num_rows`` rows: pad, truncate, or nothing (None)."""
    if num_rows == num_frames:
        return None
    return LENGTH_PADDED if num_rows < num_frames else LENGTH_TRUNCATED


def fit_length(pred: np.ndarray, num_frames: int, tag: str) -> np.ndarray:
    """Truncate long predictions; pad short ones with zero boxes, except where the benchmark forbids it."""
    if len(pred) >= num_frames:
        return pred[:num_frames]
    if tag in TAGS_REQUIRING_FULL_LENGTH:
        raise InvalidResultError(f"{len(pred)} lines for {num_frames} ground-truth frames; {tag} results need one "
                                 "line per frame: re-run the tracker on this sequence")
    padding = np.zeros((num_frames - len(pred), 4), dtype=pred.dtype)
    return np.concatenate([pred, padding])


def frame_errors(pred: np.ndarray, gt: np.ndarray, tag: str,
                 target_visible: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """IoU, centre error, normalised centre error and validity per GT frame, after every OSTrack rule.

    Returns arrays of length ``len(gt)``; invalid frames carry the sentinel values described in the
    module docstring so that the threshold counts treat them as OSTrack does.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    check_predictions(pred)
    if tag != TAG_UAV and np.isnan(gt).any():
        raise AnnotationError(f"the ground truth holds NaN values but the dataset tag is '{tag}' (only 'uav' "
                              "marks absent targets that way); fix the annotation file or the dataset tag")
    if target_visible is not None and len(target_visible) != len(gt):
        raise AnnotationError(f"{len(target_visible)} visibility flags for {len(gt)} ground-truth frames; "
                              "fix the occlusion/out-of-view files")
    pred = repair_zero_size(pred, gt)
    pred = fit_length(pred, len(gt), tag)
    pred = pred.copy()
    pred[0] = gt[0]

    with np.errstate(invalid="ignore"):
        valid = (gt[:, 2] > 0.0) & (gt[:, 3] > 0.0)
    if target_visible is not None:
        visible = np.asarray(target_visible, dtype=bool)
        valid &= visible

    iou = pytracking_box_iou(pred, gt)
    err = center_error(pred, gt)
    norm_err = normalized_center_error(pred, gt)

    iou[~valid] = -1.0
    err[~valid] = -1.0 if tag == TAG_UAV else np.inf
    norm_err[~valid] = -1.0
    if tag == TAG_LASOT and target_visible is not None:  # exact tag test, as in OSTrack
        err[~visible] = np.inf
        norm_err[~visible] = np.inf
    if np.isnan(iou).any():
        raise InvalidResultError("the overlap is undefined on some frames (zero-area boxes); check the result file")
    return iou, err, norm_err, valid


def count_greater(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Number of values strictly greater than each threshold."""
    ordered = np.sort(values)
    return len(ordered) - np.searchsorted(ordered, thresholds, side="right")


def count_at_most(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Number of values smaller than or equal to each threshold."""
    return np.searchsorted(np.sort(values), thresholds, side="right")


def evaluate_sequence(pred: np.ndarray, gt: np.ndarray, tag: str, target_visible: np.ndarray | None = None,
                      exclude_invalid_frames: bool = False) -> SequenceMetrics:
    """Success/precision/normalised-precision curves of one sequence (OSTrack ``extract_results``).

    With ``exclude_invalid_frames`` the denominator is the number of valid frames while the numerators keep
    OSTrack's sentinels, so precision curves can exceed 1 on sequences with invalid frames (kept for parity).
    """
    iou, err, norm_err, valid = frame_errors(pred, gt, tag, target_visible)
    num_valid = int(valid.sum())
    # A sequence without any valid frame scores 0 when those frames are excluded (OSTrack divides by zero).
    denominator = max(num_valid if exclude_invalid_frames else len(gt), 1)
    avg_overlap = float(iou[valid].mean()) if num_valid else float("nan")
    return SequenceMetrics(
        success=count_greater(iou, OVERLAP_THRESHOLDS) / denominator,
        precision=count_at_most(err, CENTER_THRESHOLDS) / denominator,
        norm_precision=count_at_most(norm_err, NORM_CENTER_THRESHOLDS) / denominator,
        avg_overlap=avg_overlap,
        num_frames=len(gt),
        num_valid_frames=num_valid,
    )


def mean_metrics(runs: list[SequenceMetrics]) -> SequenceMetrics:
    """Average several runs of one sequence (pytracking's ``merge_results``)."""
    if len(runs) == 1:
        return runs[0]
    return SequenceMetrics(
        success=np.mean([r.success for r in runs], axis=0),
        precision=np.mean([r.precision for r in runs], axis=0),
        norm_precision=np.mean([r.norm_precision for r in runs], axis=0),
        avg_overlap=float(np.mean([r.avg_overlap for r in runs])),
        num_frames=runs[0].num_frames,
        num_valid_frames=runs[0].num_valid_frames,
    )
