"""TrackingNet's official metric (the devkit's ``metrics.py``, which the evaluation server runs).

It differs from the OPE metric in :mod:`lib.test.analysis.metrics`, so server numbers can be checked
locally (e.g. on TRAIN chunks) only with this port:

* GT and submission coordinates are rounded (half-to-even); submission rows past the end of a file are
  missing (failures), extra rows are ignored; frame 0 of the submission is replaced by the GT;
* the submission for a GT file is the submission entry whose name *contains* the GT basename; with
  anything but exactly one match the sequence is scored as all-zero boxes;
* success uses ``IoU >= t`` over 21 thresholds in [0, 1]; precision / normalised precision use ``<=``
  over 21 thresholds in [0, 50] px / [0, 0.5];
* Success, Precision and Normalized Precision are ``trapz(curve, x=linspace(0, 1, 21))`` x 100 of the
  mean curve over *all* GT sequences (the precision areas are normalised areas, not values at 20 px);
* Coverage is the percentage of all GT frames whose submitted ``x + y + w + h > 0``.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lib.test.analysis.metrics import center_error, normalized_center_error
from lib.test.analysis.result_files import decode, parse_result_boxes
from lib.utils.boxes import pytracking_box_iou
from lib.utils.errors import UserError

NUM_THRESHOLDS = 21
SUCCESS_THRESHOLDS = np.linspace(0.0, 1.0, NUM_THRESHOLDS)
PRECISION_THRESHOLDS = np.linspace(0.0, 50.0, NUM_THRESHOLDS)
NORM_PRECISION_THRESHOLDS = np.linspace(0.0, 0.5, NUM_THRESHOLDS)


@dataclass(frozen=True)
class TrackingNetScores:
    coverage: float
    success: float
    precision: float
    norm_precision: float
    per_sequence_success: dict[str, float]

    def as_dict(self) -> dict:
        return {"Coverage": self.coverage, "Success": self.success, "Precision": self.precision,
                "Normalized Precision": self.norm_precision, "per_sequence_success": self.per_sequence_success}


def _text_entries(archive: zipfile.ZipFile) -> list[str]:
    return [name for name in archive.namelist() if name.endswith(".txt") and "__MACOSX" not in name]


def _read_entry(archive: zipfile.ZipFile, name: str, zip_path: Path) -> np.ndarray:
    source = f"{zip_path}:{name}"
    return parse_result_boxes(decode(archive.read(name), Path(source)), source)


def sequence_curves(gt: np.ndarray, submission: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """Success, precision and normalised-precision curves of one sequence plus its per-frame coverage flags."""
    gt = np.round(gt)
    sub = np.full_like(gt, np.nan)
    if submission is None:
        sub[:] = 0.0
    else:
        rows = min(len(submission), len(gt))
        sub[:rows] = np.round(submission[:rows])
    sub[0] = gt[0]
    covered = np.nan_to_num(sub.sum(axis=1), nan=0.0) > 0.0
    iou = pytracking_box_iou(sub, gt)
    dist = center_error(sub, gt)
    norm_dist = normalized_center_error(sub, gt)
    with np.errstate(invalid="ignore"):  # NaN (missing rows) compares false: a failure
        success = (iou[:, None] >= SUCCESS_THRESHOLDS[None, :]).mean(axis=0)
        precision = (dist[:, None] <= PRECISION_THRESHOLDS[None, :]).mean(axis=0)
        norm_precision = (norm_dist[:, None] <= NORM_PRECISION_THRESHOLDS[None, :]).mean(axis=0)
    return success, precision, norm_precision, covered


def evaluate_trackingnet(gt_zip: str | Path, submission_zip: str | Path) -> TrackingNetScores:
    """Score a submission zip against a GT zip exactly like the TrackingNet evaluation server."""
    gt_zip, submission_zip = Path(gt_zip), Path(submission_zip)
    for path in (gt_zip, submission_zip):
        if not zipfile.is_zipfile(path):
            raise UserError(f"{path}: not a zip file; give the ground-truth and submission zip archives")
    with zipfile.ZipFile(gt_zip) as gt_archive, zipfile.ZipFile(submission_zip) as sub_archive:
        gt_names = _text_entries(gt_archive)
        sub_names = _text_entries(sub_archive)
        if not gt_names:
            raise UserError(f"{gt_zip}: holds no .txt annotation files")
        curves = np.zeros((3, NUM_THRESHOLDS))
        coverage_flags = []
        per_sequence = {}
        for gt_name in gt_names:
            gt = _read_entry(gt_archive, gt_name, gt_zip)
            base = os.path.basename(gt_name)
            matches = [name for name in sub_names if base in name]
            submission = _read_entry(sub_archive, matches[0], submission_zip) if len(matches) == 1 else None
            success, precision, norm_precision, covered = sequence_curves(gt, submission)
            curves += np.stack([success, precision, norm_precision])
            coverage_flags.append(covered)
            per_sequence[base] = float(np.trapezoid(success, x=SUCCESS_THRESHOLDS) * 100.0)
    curves /= len(gt_names)
    success, precision, norm_precision = (float(np.trapezoid(c, x=SUCCESS_THRESHOLDS) * 100.0) for c in curves)
    return TrackingNetScores(coverage=float(np.concatenate(coverage_flags).mean() * 100.0), success=success,
                             precision=precision, norm_precision=norm_precision, per_sequence_success=per_sequence)
