"""Tracking several sequences in lockstep: one network call per frame step for up to ``batch`` sequences.

Used by :func:`lib.test.evaluation.running.run_dataset` with ``batch`` > 1 (``tracking/test.py --batch N``).
Up to ``batch`` sequences are tracked at once; each step cuts every member's next search crop, runs the network
once on all of them and finishes each member's frame. A sequence that ends leaves the batch and the next pending
one joins, initialised on its first frame. A sequence that fails (unreadable frame, bad first box, unusable
tracker output) is reported as failed and leaves; the others go on. An error of the batched network call itself
cannot be attributed to one sequence and fails every member of that step.

The boxes are those of tracking one sequence at a time: the tracker keeps one state (template, CE mask, last box)
per sequence, and a back-end either computes each sample of a batch as it would alone (eager fp32: bit for bit)
or, when a frame would depend on its batch mates (``supports_batch`` False, e.g. dynamic int8), gets the samples
one by one. Results are written atomically with :func:`~lib.test.evaluation.running.write_sequence_results`, in
the same files and format as a run without ``batch``. Timing: a sequence's frame 0 is its own initialisation;
every later frame gets an equal share of its step's time (crops, the network call and the decoding of all
members; image reading is not timed, as in OSTrack), so summed frame times still add up to the run's tracking
time and ``FPS`` is frames per second of this process.

The tracker needs the batch interface of :class:`~lib.test.tracker.ostrack.OSTrackTracker`: ``start_sequence``,
``prepare``, ``network_batch`` and ``finish``.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lib.test.evaluation.claims import Claim, ClaimBoard
from lib.test.evaluation.data import Sequence
from lib.test.evaluation.results_store import result_path_base, result_problem
from lib.test.evaluation.running import (
    SequenceResult,
    _failure,
    _output_box,
    check_batch,
    check_init_box,
    check_trackable,
    taken_over,
    write_sequence_results,
)
from lib.utils.errors import UserError
from lib.utils.image import read_rgb
from lib.utils.io import DiskFullError
from lib.utils.run_layout import sequence_claim_base

BATCH_METHODS = ("start_sequence", "prepare", "network_batch", "finish")


class LockstepTracker(Protocol):
    """What lockstep needs of a tracker; the state ``start_sequence`` returns has the first box as ``box``."""

    def start_sequence(self, image: np.ndarray, info: dict[str, Any]) -> Any: ...

    def prepare(self, image: np.ndarray, state: Any) -> Any: ...

    def network_batch(self, states: list[Any], crops: list[Any]) -> list[Any]: ...

    def finish(self, state: Any, crop: Any, out: Any) -> dict[str, Any]: ...


def check_lockstep_tracker(tracker: Any) -> None:
    missing = [name for name in BATCH_METHODS if not callable(getattr(tracker, name, None))]
    if missing:
        raise UserError(f"the tracker {type(tracker).__name__} cannot track sequences in lockstep (it lacks "
                        f"{', '.join(missing)}); run with batch 1")


@dataclass
class _Member:
    """A sequence in the batch: its tracker state, its results so far and the claim that reserves it."""

    seq: Sequence
    state: Any
    boxes: np.ndarray
    seconds: np.ndarray
    claim: Claim | None
    next_frame: int = 1


class Lockstep:
    """Runs ``sequences`` through ``tracker`` ``batch`` at a time; ``record`` receives each sequence's result.

    ``board`` claims each sequence as it joins (another runner's sequence is recorded as 'elsewhere') and releases
    it when it leaves. ``debug`` re-raises the first error instead of reporting it.
    """

    def __init__(self, tracker: LockstepTracker, results_dir: Path, batch: int,
                 record: Callable[[SequenceResult], None], board: ClaimBoard | None = None,
                 debug: bool = False) -> None:
        check_batch(batch)
        check_lockstep_tracker(tracker)
        self.tracker, self.results_dir, self.batch = tracker, results_dir, batch
        self.record, self.board, self.debug = record, board, debug
        self.members: list[_Member] = []

    def run(self, sequences: Iterable[Sequence]) -> None:
        """Track ``sequences``, taking the next one only when a batch slot is free (it may be a shared queue)."""
        pending = iter(sequences)
        try:
            while True:
                while len(self.members) < self.batch and (seq := next(pending, None)) is not None:
                    self._join(seq)
                if not self.members:  # nothing joined: ``sequences`` is exhausted
                    break
                self._step()
        finally:
            for member in self.members:  # stopped by a full disk or --debug: free the claims
                self._release(member)
            self.members = []

    # -- joining and leaving
    def _join(self, seq: Sequence) -> None:
        claim = None
        if self.board is not None:
            claim = self.board.try_acquire(sequence_claim_base(self.results_dir, seq.name, seq.dataset))
            if claim is None or result_problem(self.results_dir, seq) is None:
                if claim is not None:
                    self.board.release(claim)
                self.record(SequenceResult(seq.name, "elsewhere"))
                return
        try:
            check_trackable(seq)
            image = read_rgb(seq.frames[0])
            check_init_box(seq.init_bbox, image.shape, seq.name)
            start = time.perf_counter()
            state = self.tracker.start_sequence(image, seq.init_info())
            seconds = time.perf_counter() - start
            first_box = _output_box({"target_bbox": state.box}, 0, seq.name)
        except DiskFullError:
            raise
        except Exception as err:
            if claim is not None:
                self.board.release(claim)
            if self.debug:
                raise
            self.record(_failure(seq.name, err))
            return
        member = _Member(seq, state, np.empty((len(seq), 4), dtype=np.float64), np.empty(len(seq), dtype=np.float64),
                         claim)
        member.boxes[0], member.seconds[0] = first_box, seconds
        self.members.append(member)
        if len(seq) == 1:
            self._leave(member, None)

    def _leave(self, member: _Member, error: BaseException | None) -> None:
        """Write a finished member's results, or report its error; either way it leaves the batch."""
        self.members.remove(member)
        try:
            if error is not None:
                if self.debug:
                    raise error
                self.record(_failure(member.seq.name, error))
                return
            if member.claim is not None and not self.board.holds(member.claim):
                self.record(taken_over(member.seq.name))
                return
            try:
                base = result_path_base(self.results_dir, member.seq)
                result = write_sequence_results(member.seq, member.boxes, member.seconds, base)
            except DiskFullError:
                raise
            except Exception as err:
                if self.debug:
                    raise
                result = _failure(member.seq.name, err)
            self.record(result)
        finally:
            self._release(member)

    def _release(self, member: _Member) -> None:
        if member.claim is not None:
            self.board.release(member.claim)
            member.claim = None

    # -- one frame of every member
    def _step(self) -> None:
        failed: list[tuple[_Member, BaseException]] = []
        live: list[tuple[_Member, np.ndarray]] = []
        for member in self.members:  # reading is not timed
            try:
                live.append((member, read_rgb(member.seq.frames[member.next_frame])))
            except Exception as err:
                failed.append((member, err))
        start = time.perf_counter()
        prepared = []
        for member, image in live:
            try:
                prepared.append((member, self.tracker.prepare(image, member.state)))
            except Exception as err:
                failed.append((member, err))
        finished = []
        if prepared:
            try:
                outputs = self.tracker.network_batch([m.state for m, _ in prepared], [crop for _, crop in prepared])
            except Exception as err:
                if self.debug:
                    raise
                failed += [(member, err) for member, _ in prepared]
                prepared, outputs = [], []
            for (member, crop), out in zip(prepared, outputs, strict=True):
                try:
                    output = self.tracker.finish(member.state, crop, out)
                    finished.append((member, _output_box(output, member.next_frame, member.seq.name)))
                except Exception as err:
                    failed.append((member, err))
        share = (time.perf_counter() - start) / max(1, len(finished))
        for member, box in finished:
            member.boxes[member.next_frame], member.seconds[member.next_frame] = box, share
            member.next_frame += 1
            if member.next_frame == len(member.seq):
                self._leave(member, None)
        for member, err in failed:
            self._leave(member, err)


def run_lockstep(tracker: LockstepTracker, sequences: Iterable[Sequence], results_dir: Path, batch: int,
                 record: Callable[[SequenceResult], None], board: ClaimBoard | None = None,
                 debug: bool = False) -> None:
    """Track ``sequences`` ``batch`` at a time in lockstep into ``results_dir`` (see the module docstring)."""
    Lockstep(tracker, Path(results_dir), batch, record, board, debug).run(sequences)
