"""GOT-10k's official AO / SR metric (got10k toolkit ``ExperimentGOT10k.report``) for local val evaluation.

Unlike OPE (:mod:`lib.test.analysis.metrics`):

* frame 0 is excluded; both boxes are first clipped to the image (``x in [0, W]``, ``w <= W - x``);
* only frames whose ``cover`` label is > 0 (target at least partly visible) count;
* IoUs of all repetitions of a sequence and of all sequences are pooled, so AO is frame-weighted;
* SR_t is the fraction of pooled IoUs > t; the success curve has 101 thresholds;
* speed is the mean of 1 / t over all positive frame times.

Sequence inputs: ``Sequence.extras['cover']`` (per-frame cover class, 0 = hidden) and
``Sequence.extras['resolution']`` ``(W, H)``. Without ``cover`` the visibility flags (or all frames) are used;
without ``resolution`` boxes are not clipped. Our IoU has no epsilon in the denominator (the toolkit adds
``eps`` = 2.2e-16), which changes no threshold decision.
"""
from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence as SequenceType
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lib.test.analysis.metrics import InvalidResultError, check_predictions
from lib.test.analysis.result_files import (
    ResultFolder,
    decode,
    load_result_boxes,
    names_needing_exact_match,
    parse_times,
    read_bytes,
)
from lib.test.evaluation.data import Sequence
from lib.utils.boxes import pytracking_box_iou

SUCCESS_THRESHOLDS = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True)
class Got10kScores:
    """AO and success rates as fractions in [0, 1] (the toolkit's ``performance.json`` convention)."""

    ao: float
    sr50: float
    sr75: float
    speed_fps: float | None
    success_curve: np.ndarray
    num_frames: int

    def as_dict(self) -> dict:
        return {"ao": self.ao, "sr": self.sr50, "sr75": self.sr75,
                "speed_fps": -1 if self.speed_fps is None else self.speed_fps,
                "succ_curve": self.success_curve.tolist(), "length": self.num_frames}


def clip_to_image(boxes: np.ndarray, resolution: tuple[float, float] | None) -> np.ndarray:
    if resolution is None:
        return boxes
    width, height = float(resolution[0]), float(resolution[1])
    clipped = boxes.copy()
    clipped[:, 0] = np.clip(clipped[:, 0], 0.0, width)
    clipped[:, 1] = np.clip(clipped[:, 1], 0.0, height)
    clipped[:, 2] = np.clip(clipped[:, 2], 0.0, width - clipped[:, 0])
    clipped[:, 3] = np.clip(clipped[:, 3], 0.0, height - clipped[:, 1])
    return clipped


def counted_frames(seq: Sequence) -> np.ndarray:
    """Mask of the frames GOT-10k scores: cover > 0, from frame 1 on."""
    if seq.extras.get("cover") is not None:
        keep = np.asarray(seq.extras["cover"]) > 0
    elif seq.target_visible is not None:
        keep = np.asarray(seq.target_visible, dtype=bool).copy()
    else:
        keep = np.ones(len(seq.ground_truth_rect), dtype=bool)
    if len(keep) != len(seq.ground_truth_rect):
        raise InvalidResultError(f"sequence '{seq.name}': {len(keep)} cover labels for "
                                 f"{len(seq.ground_truth_rect)} ground-truth frames; fix the dataset files")
    keep[0] = False
    return keep


def sequence_ious(repetitions: SequenceType[np.ndarray], seq: Sequence) -> np.ndarray:
    """Pooled IoUs of all repetitions on the counted frames of one sequence."""
    gt = seq.ground_truth_rect
    if len(gt) < 2:
        raise InvalidResultError(f"sequence '{seq.name}' has only the first-frame box; GOT-10k test results "
                                 "are scored by the evaluation server (pack them with tracking/pack_got10k.py)")
    keep = counted_frames(seq)
    resolution = seq.extras.get("resolution")
    bounded_gt = clip_to_image(gt, resolution)
    pooled = []
    for boxes in repetitions:
        check_predictions(boxes)
        if boxes.shape != gt.shape:
            raise InvalidResultError(f"{len(boxes)} lines for {len(gt)} ground-truth frames; GOT-10k needs one "
                                     "line per frame: re-run the tracker on this sequence")
        iou = pytracking_box_iou(clip_to_image(boxes, resolution), bounded_gt)
        iou = np.clip(np.nan_to_num(iou, nan=0.0), 0.0, 1.0)
        pooled.append(iou[keep])
    return np.concatenate(pooled) if pooled else np.zeros(0)


def summarise(ious: np.ndarray, times: np.ndarray) -> Got10kScores:
    times = times[np.isfinite(times) & (times > 0)]
    return Got10kScores(ao=float(ious.mean()) if len(ious) else float("nan"),
                        sr50=float((ious > 0.5).mean()) if len(ious) else float("nan"),
                        sr75=float((ious > 0.75).mean()) if len(ious) else float("nan"),
                        speed_fps=float((1.0 / times).mean()) if len(times) else None,
                        success_curve=(ious[:, None] > SUCCESS_THRESHOLDS[None, :]).mean(axis=0)
                        if len(ious) else np.zeros(len(SUCCESS_THRESHOLDS)),
                        num_frames=len(ious))


@dataclass
class Got10kReport:
    overall: Got10kScores
    per_sequence: dict[str, Got10kScores]
    failures: list[InvalidResultError]


def evaluate_got10k(sequences: SequenceType[Sequence], run_dirs: SequenceType[Path]) -> Got10kReport:
    """AO/SR of one tracker; every run folder (and every ``_NNN`` file in it) is one repetition.

    A sequence with a missing or invalid result is listed in ``failures`` and left out of the pooled
    numbers, which are then not comparable with the server's; callers must show the failures.
    """
    per_sequence: dict[str, Got10kScores] = {}
    all_ious, all_times, failures = [], [], []
    exact_names = names_needing_exact_match((seq.name, seq.dataset) for seq in sequences)
    folders = [ResultFolder(run_dir, exact_names) for run_dir in run_dirs]
    for seq in sequences:
        found = [files for folder in folders if (files := folder.find(seq.name, seq.dataset)) is not None]
        files = [path for entry in found for path in entry.box_files]
        try:
            if not files:
                raise InvalidResultError(f"no result file for sequence '{seq.name}' in "
                                         f"{', '.join(str(d) for d in run_dirs)}; run the tracker on it")
            repetitions = []
            for path in files:
                try:
                    repetitions.append(load_result_boxes(path))
                    check_predictions(repetitions[-1])
                except InvalidResultError as err:
                    raise err.at(path) from None
            try:
                ious = sequence_ious(repetitions, seq)
            except InvalidResultError as err:
                raise err.at(files[0]) from None
        except InvalidResultError as err:
            failures.append(err)
            continue
        times = []
        for time_file in (entry.time_file for entry in found):
            if time_file is not None:
                try:
                    times.append(parse_times(decode(read_bytes(time_file), time_file), time_file))
                except InvalidResultError as err:
                    failures.append(err)
        seq_times = np.concatenate(times) if times else np.zeros(0)
        per_sequence[seq.name] = summarise(ious, seq_times)
        all_ious.append(ious)
        all_times.append(seq_times)
    overall = summarise(np.concatenate(all_ious) if all_ious else np.zeros(0),
                        np.concatenate(all_times) if all_times else np.zeros(0))
    return Got10kReport(overall, per_sequence, failures)


def got10k_rows(reports: Mapping[str, Got10kReport]) -> dict[str, dict[str, float | None]]:
    """Table rows in percent (AO, SR0.50, SR0.75) and FPS."""
    return {name: {"AO": r.overall.ao * 100.0, "SR0.50": r.overall.sr50 * 100.0, "SR0.75": r.overall.sr75 * 100.0,
                   "FPS": r.overall.speed_fps} for name, r in reports.items()}
