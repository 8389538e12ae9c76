"""Draw training pairs: dataset by ratio, sequence uniformly, template frame, then a later search frame.

'causal' mode (OSTrack): the template is a visible frame t (not the last), the search frame a visible frame
in [t + 1, t + max_gap + g) where g grows by 5 until one exists. Image datasets (COCO) use the same image
twice. A sequence is used only if it has at least 20 frames and more than 4 visible ones.

Every attempt at an item is generated from its own seed (base seed, epoch, index, attempt), so a sample does
not depend on which worker process builds it, on what was drawn before, or on how much randomness a failed
attempt used: a resumed run sees exactly the same data. As in the official sampler, a pair that fails while it
is loaded or processed (unreadable frame, bad annotation, bad value) is redrawn; the failure is counted by
cause in ``sample['skipped']`` (keys starting with :data:`FAILED`) and a pair that fails again is named in the
log. Programming errors (:data:`PROGRAMMING_ERRORS`) are never swallowed.
"""
from __future__ import annotations

import hashlib
import logging
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from lib.train.data.datasets.storage import CorruptFrameError
from lib.train.data.processing import PairProcessing, PairRejected, SampleRng
from lib.utils.errors import DatasetError, UserError

log = logging.getLogger(__name__)

MIN_SEQUENCE_LENGTH = 20
MAX_CONSECUTIVE_FAILURES = 1000
MAX_CACHED_SEQUENCE_INFOS = 20_000
#: prefix of the ``skipped`` causes that are data failures (the rest are ordinary rejections of a draw)
FAILED = "failed: "
#: our own bugs: redrawing would hide them
PROGRAMMING_ERRORS: tuple[type[BaseException], ...] = (TypeError, AttributeError, NameError, AssertionError,
                                                       NotImplementedError, ImportError)


class NoUsableSequenceError(UserError):
    """A dataset has no sequence the sampler can draw from."""


def sample_seed(base_seed: int, epoch: int, index: int, attempt: int = 0) -> int:
    """The seed of one attempt at item ``index`` of ``epoch``; attempt 0 keeps the seed of earlier versions."""
    seed = (base_seed * 1_000_003 + epoch * 10_000_019 + index) % (2 ** 63)
    if attempt == 0:
        return seed
    digest = hashlib.blake2b(f"{seed}/{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % (2 ** 63)


def failure_cause(error: BaseException) -> str:
    """A short name for what made a pair fail, for the per-epoch counts."""
    if isinstance(error, CorruptFrameError):
        return FAILED + "unreadable frame"
    if isinstance(error, DatasetError):
        return FAILED + "bad annotation"
    if isinstance(error, OSError):
        return FAILED + "read error"
    return FAILED + getattr(error, "cause", type(error).__name__)


class TrackingSampler(Dataset):
    """A map-style dataset of ``samples_per_epoch`` processed (template, search) pairs."""

    def __init__(self, datasets: Sequence[Any], ratios: Sequence[float], samples_per_epoch: int,
                 max_gap: int, processing: PairProcessing, seed: int = 42,
                 corrupt_errors: tuple[type[BaseException], ...] = (Exception,)) -> None:
        """``corrupt_errors``: the exceptions that count as a data failure and are redrawn (programming errors
        never are)."""
        if not datasets:
            raise UserError("no training datasets configured (DATA.TRAIN.DATASETS_NAME is empty)")
        if len(ratios) != len(datasets):
            raise UserError(f"DATASETS_RATIO has {len(ratios)} entries for {len(datasets)} datasets")
        self.datasets = list(datasets)
        total = float(sum(ratios))
        self.probabilities = [r / total for r in ratios]
        self.samples_per_epoch = samples_per_epoch
        self.max_gap = max_gap
        self.processing = processing
        self.seed = seed
        # in shared memory: persistent DataLoader workers keep their own copy of this object, and a plain
        # attribute set in the main process would never reach them (every epoch would repeat the first)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.corrupt_errors = corrupt_errors
        self._info_cache: dict[tuple[int, int], dict[str, Any]] = {}
        #: failures of this process by what failed (a frame file, or a pair), to name the ones that repeat
        self._failures: Counter = Counter()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One processed pair; ``sample['skipped']`` counts the draws rejected or failed on the way, by cause."""
        skipped: Counter = Counter()
        epoch = self.epoch
        for attempt in range(MAX_CONSECUTIVE_FAILURES):
            seed = sample_seed(self.seed, epoch, index, attempt)
            choices = random.Random(seed)
            rng = SampleRng.from_seed(seed)
            dataset = choices.choices(self.datasets, self.probabilities)[0]
            seq_id, frame_ids = None, None
            try:
                seq_id, info = self._sample_sequence(dataset, choices, skipped)
                frame_ids = self._sample_frames(dataset, info["visible"], choices)
                if frame_ids is None:
                    skipped["no frame pair"] += 1
                    continue
                frames, anno, _ = dataset.get_frames(seq_id, list(frame_ids), info)
                boxes = anno["bbox"]
                sample = self.processing(frames[0], boxes[0], frames[1], boxes[1], rng)
            except PairRejected as rejection:
                skipped[rejection.reason] += 1
                continue
            except (NoUsableSequenceError, MemoryError, *PROGRAMMING_ERRORS):
                raise
            except self.corrupt_errors as err:
                cause = failure_cause(err)
                skipped[cause] += 1
                self._note_failure(dataset, seq_id, frame_ids, cause, err)
                continue
            sample["dataset"] = dataset.get_name()
            sample["skipped"] = dict(skipped)
            return sample
        top = ", ".join(f"{cause} {count}" for cause, count in skipped.most_common(3))
        raise UserError(f"could not draw a valid training pair in {MAX_CONSECUTIVE_FAILURES} attempts; "
                        f"check the training data (most frequent: {top})")

    def _note_failure(self, dataset: Any, seq_id: int | None, frame_ids: tuple[int, int] | None, cause: str,
                      error: BaseException) -> None:
        """Log a failing frame or pair the first time and when it fails again, then stay quiet about it."""
        relpath = getattr(error, "relpath", None)
        if relpath is not None:
            what = f"{dataset.get_name()} file {relpath}"
        elif seq_id is None:
            what = f"{dataset.get_name()} (no sequence drawn)"
        else:
            frames = "" if frame_ids is None else f" frames {frame_ids[0]},{frame_ids[1]}"
            what = f"{dataset.get_name()} sequence {dataset.get_sequence_name(seq_id)}{frames}"
        self._failures[what] += 1
        count = self._failures[what]
        if count == 1:
            log.warning("training pair %s: %s (%s); drawing another", cause.removeprefix(FAILED), what, error)
        elif count == 2:
            log.warning("training pair fails repeatedly: %s (%s: %s); drawing others, not reported again", what,
                        cause.removeprefix(FAILED), error)

    def _sample_sequence(self, dataset: Any, choices: random.Random, skipped: Counter
                         ) -> tuple[int, dict[str, Any]]:
        is_video = dataset.is_video_sequence()
        for _ in range(MAX_CONSECUTIVE_FAILURES):
            seq_id = choices.randint(0, dataset.get_num_sequences() - 1)
            info = self._sequence_info(dataset, seq_id)
            visible = info["visible"]
            if is_video and int(visible.sum()) > 4 and len(visible) >= MIN_SEQUENCE_LENGTH:
                return seq_id, info
            if not is_video and bool(visible[0]):
                return seq_id, info
            skipped["sequence too short or mostly invisible" if is_video else "image box not usable"] += 1
        raise NoUsableSequenceError(f"dataset {dataset.get_name()} has no usable sequence (needs >= "
                                    f"{MIN_SEQUENCE_LENGTH} frames with more than 4 visible, non-empty boxes)")

    def _sequence_info(self, dataset: Any, seq_id: int) -> dict[str, Any]:
        """Annotations are re-read for every draw otherwise (a text file parse per pair); they do not change
        during training. Bounded so that TrackingNet-sized datasets cannot grow it without limit."""
        key = (id(dataset), seq_id)
        info = self._info_cache.get(key)
        if info is None:
            if len(self._info_cache) >= MAX_CACHED_SEQUENCE_INFOS:
                self._info_cache.clear()
            info = self._info_cache[key] = dataset.get_sequence_info(seq_id)
        return info

    def _sample_frames(self, dataset: Any, visible: torch.Tensor, choices: random.Random
                       ) -> tuple[int, int] | None:
        if not dataset.is_video_sequence():
            return 0, 0
        gap_increase = 0
        for _ in range(MAX_CONSECUTIVE_FAILURES):
            template = _choose_visible(visible, 0, len(visible) - 1, choices)
            if template is None:
                return None
            search = _choose_visible(visible, template + 1, template + self.max_gap + gap_increase, choices)
            if search is not None:
                return template, search
            gap_increase += 5
        return None


def _choose_visible(visible: torch.Tensor, min_id: int, max_id: int, choices: random.Random) -> int | None:
    """A uniformly drawn visible frame index in [min_id, max_id) (clipped to the sequence)."""
    min_id, max_id = max(min_id, 0), min(max_id, len(visible))
    candidates = [i for i in range(min_id, max_id) if visible[i]]
    return choices.choice(candidates) if candidates else None


def collate_pairs(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors; keep per-sample strings/ints as lists."""
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return batch
