"""Calibration crops for static int8: real template/search crops cut by our own tracker, plus held-out crops.

Static quantisation fixes every activation's scale from what it sees at build time, so those inputs must look
like what the tracker feeds the network: the crops are cut by :class:`~lib.test.tracker.ostrack.OSTrackTracker`
itself (same crop and normalisation code, the model's own sizes, OSTrack's crop factors), the template from a
sequence's first frame, each search crop around the previous frame's ground-truth box with a small random error
(as a tracker that is slightly off would cut it). The held-out crops come from other sequences of the same
dataset (never a calibration sequence); a back-end built from the calibration crops is measured on them.

The default dataset is the validation split of the embedded benchmark (generated on first use, ~3 s of CPU).
The OTB sequences that the speed benchmark gates on are refused (their folder, or any name in ``exclude``).
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lib.utils.errors import DatasetError, UserError

log = logging.getLogger(__name__)

EMBEDDED = "embedded"  # the default calibration dataset: the embedded benchmark's validation split
CENTER_JITTER = 0.05  # search-crop centre error, standard deviation as a fraction of the box's mean side
SCALE_JITTER = 0.05  # box scale error, standard deviation of its log
HELD_OUT_EVERY = 2  # every second sequence is held out (the others calibrate)


@dataclass(frozen=True)
class CropSet:
    """Network inputs cut by the tracker: (N, 3, T, T) templates, (N, 3, S, S) search crops, CE masks (or None),
    and the sequences they came from."""

    sequences: tuple[str, ...]
    template: torch.Tensor
    search: torch.Tensor
    ce_template_mask: torch.Tensor | None

    def __len__(self) -> int:
        return int(self.search.shape[0])

    def inputs(self, index: int) -> tuple[torch.Tensor, ...]:
        """Crop ``index`` as a batch of one, in graph input order (the mask only where there is one)."""
        one = slice(index, index + 1)
        mask = () if self.ce_template_mask is None else (self.ce_template_mask[one],)
        return (self.template[one], self.search[one], *mask)

    def each(self) -> Iterator[tuple[torch.Tensor, ...]]:
        """Every crop in turn as :meth:`inputs` gives it (how calibration and the gate feed them: batch 1)."""
        return (self.inputs(index) for index in range(len(self)))

    def digest(self) -> str:
        """SHA-256 over the crops' bytes and the sequence names (a cache key for what was calibrated on)."""
        hasher = hashlib.sha256("|".join(self.sequences).encode())
        for tensor in (self.template, self.search, self.ce_template_mask):
            if tensor is not None:
                hasher.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
                hasher.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy())
        return hasher.hexdigest()


@dataclass(frozen=True)
class CalibrationData:
    """Crops to calibrate on and disjoint held-out crops to measure the result on."""

    source: str
    calibration: CropSet
    held_out: CropSet

    def __post_init__(self) -> None:
        shared = set(self.calibration.sequences) & set(self.held_out.sequences)
        if shared:
            raise ValueError(f"held-out crops must come from other sequences than the calibration crops: {shared}")


class _Captured(Exception):
    """Raised by the capturing network function: the tracker's crops are all we need from a frame."""


class _Capture:
    """``network_fn`` that keeps the tracker's inputs and stops the frame (the network is never run)."""

    def __init__(self) -> None:
        self.inputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []

    def __call__(self, template, search, ce_template_mask=None):
        mask = None if ce_template_mask is None else ce_template_mask.detach().cpu().clone()
        self.inputs.append((template.detach().cpu().clone(), search.detach().cpu().clone(), mask))
        raise _Captured


def _valid_box(box: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(box)) and box[2] >= 2 and box[3] >= 2)


def jittered(box: Sequence[float], rng: np.random.Generator, center: float = CENTER_JITTER,
             scale: float = SCALE_JITTER) -> list[float]:
    """``box`` (x, y, w, h) with a random centre error (a fraction of its mean side) and a random scale error."""
    x, y, w, h = (float(v) for v in box)
    side = float(np.sqrt(w * h))
    cx, cy = x + 0.5 * w + rng.normal(0, center) * side, y + 0.5 * h + rng.normal(0, center) * side
    factor = float(np.exp(rng.normal(0, scale)))
    w, h = w * factor, h * factor
    return [cx - 0.5 * w, cy - 0.5 * h, w, h]


def tracker_crops(model: nn.Module, sequences: Sequence, crops: int, seed: int = 0) -> CropSet:
    """About ``crops`` search crops (with their templates) spread evenly over ``sequences`` (records with
    ``name``, ``frames`` and ``ground_truth_rect``, e.g. from :func:`lib.test.evaluation.datasets.get_dataset`).

    Per sequence the tracker is initialised on the first frame's box; each search crop is cut on a later frame
    from the previous frame's box, jittered (:func:`jittered`). Frames whose previous box is missing are skipped.
    """
    from lib.test.tracker.backends.gate import model_tracker_maker
    from lib.utils.image import read_rgb

    rng = np.random.default_rng(seed)
    capture = _Capture()
    tracker = model_tracker_maker(model)(capture)
    per_sequence = max(1, -(-crops // max(1, len(sequences))))
    used = []
    for seq in sequences:
        boxes = np.asarray(seq.ground_truth_rect, dtype=np.float64).reshape(-1, 4)
        if len(seq.frames) < 2 or len(boxes) < len(seq.frames) or not _valid_box(boxes[0]):
            log.info("calibration: sequence %s skipped (no per-frame boxes or no valid first box)", seq.name)
            continue
        tracker.initialize(read_rgb(seq.frames[0]), {"init_bbox": boxes[0].tolist()})
        candidates = [i for i in range(1, len(seq.frames)) if _valid_box(boxes[i - 1])]
        picks = np.unique(np.linspace(0, len(candidates) - 1, min(per_sequence, len(candidates))).round().astype(int))
        for pick in picks:
            frame = candidates[pick]
            tracker.state = jittered(boxes[frame - 1], rng)
            try:
                tracker.track(read_rgb(seq.frames[frame]))
            except _Captured:
                pass
        used.append(seq.name)
    if not capture.inputs:
        raise DatasetError("no calibration crops: the sequences have no frames with ground-truth boxes")
    templates, searches, masks = zip(*capture.inputs, strict=True)
    mask = None if masks[0] is None else torch.cat(masks)
    return CropSet(tuple(used), torch.cat(templates), torch.cat(searches), mask)


def load_sequences(dataset: str = EMBEDDED, root: str | Path | None = None) -> tuple[str, list]:
    """The sequences of ``dataset`` (a benchmark name of :func:`~lib.test.evaluation.datasets.get_dataset`, or
    'embedded': the embedded benchmark's validation split) and a description of where they came from."""
    from lib.test.evaluation.datasets import get_dataset

    if dataset == EMBEDDED:
        from lib.data.embedded import ensure_embedded_benchmark

        # only the validation split is generated: it is the same whatever the other splits' sizes
        benchmark = ensure_embedded_benchmark(root, num_train=0, num_val=10, num_test=0, progress=False)
        return f"embedded benchmark val ({benchmark})", list(get_dataset("got10k_val", root=benchmark))
    return f"{dataset} ({root or 'configured root'})", list(get_dataset(dataset, root=root))


def calibration_data(model: nn.Module, dataset: str = EMBEDDED, root: str | Path | None = None,
                     calibration_crops: int = 64, held_out_crops: int = 32, seed: int = 0,
                     exclude: Iterable[str] = ()) -> CalibrationData:
    """Calibration and held-out crops for ``model`` from ``dataset``: every :data:`HELD_OUT_EVERY`-th sequence
    is held out, the others calibrate. ``exclude``: sequence names that must not be used (e.g. the sequences
    an accuracy gate is measured on); naming a dataset that contains one is an error."""
    from lib.test.evaluation.speed_benchmark import default_otb_root

    if root is not None and Path(root).resolve() == default_otb_root().resolve():
        raise UserError(f"{root} holds the OTB sequences the speed benchmark's accuracy gate is measured on; "
                        "calibrate on another dataset (the default is the embedded benchmark)")
    source, sequences = load_sequences(dataset, root)
    banned = sorted(set(exclude) & {seq.name for seq in sequences})
    if banned:
        raise UserError(f"calibration dataset {source} contains {banned}, which the accuracy gate is measured on; "
                        "calibrate on another dataset (the default is the embedded benchmark)")
    if len(sequences) < 2:
        raise DatasetError(f"calibration needs at least 2 sequences (calibration and held-out ones); {source} "
                           f"has {len(sequences)}")
    held_out = [seq for i, seq in enumerate(sequences) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]
    calibrate = [seq for i, seq in enumerate(sequences) if i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1]
    return CalibrationData(source, tracker_crops(model, calibrate, calibration_crops, seed),
                           tracker_crops(model, held_out, held_out_crops, seed + 1))
