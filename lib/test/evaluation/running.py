"""Running a tracker over benchmark sequences: timed, parallel, resumable and tolerant of crashes.

Results use OSTrack's raw format so every analysis tool reads them: ``<seq>.txt`` holds one ``x<TAB>y<TAB>w<TAB>h``
line per frame (values truncated toward zero, frame 0 = the initial box) and ``<seq>_time.txt`` the seconds
each frame took (``%f``; frame 0 = initialisation). Both are written atomically once the whole sequence has
been tracked, so a run killed at any point leaves no partial file behind and re-running it tracks only the
missing sequences. A sequence counts as done only when both files are valid (one parsable line per frame);
an invalid one is tracked again. With a :class:`~lib.test.evaluation.results_store.RunIdentity`, the
folder's manifest says whose results it holds, and results of another run are never reused.

Any number of runners (torchrun ranks, ``--threads`` workers, commands on other machines sharing the folder)
may track into one results folder at once: each sequence is claimed before it is tracked
(:mod:`lib.test.evaluation.claims`), so none is tracked twice, and a dead runner's claims are taken over.

A tracker is anything with the pytracking interface: ``initialize(image, {'init_bbox': [x, y, w, h]})`` and
``track(image) -> {'target_bbox': [x, y, w, h]}``, images being RGB uint8 arrays. Workers build their own
tracker by calling a picklable ``build_tracker(device)`` with ``device`` ``'cpu'`` or ``'cuda:<k>'``.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import queue
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from tqdm import tqdm

from lib.test.evaluation.claims import ClaimBoard, remove_empty_folders
from lib.test.evaluation.data import Sequence
from lib.test.evaluation.results_store import (
    RunIdentity,
    close_results_folder,
    format_boxes,
    format_times,
    open_results_folder,
    result_path_base,
    result_problem,
)
from lib.utils.boxes import InvalidBoxError, validate_init_box
from lib.utils.errors import DatasetError, UserError
from lib.utils.image import read_rgb
from lib.utils.io import DiskFullError, atomic_write_text, remove_stale_temp_files, reporting_disk_full
from lib.utils.run_layout import (
    claims_folder,
    result_files,
    results_subfolder,
    runner_claims_folder,
    sequence_claim_base,
    sequence_claims_folder,
)

_THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_PR_SET_PDEATHSIG = 1
RERUN_HINT = "run the same command again: sequences with results are kept and skipped"


class Tracker(Protocol):
    def initialize(self, image: np.ndarray, info: dict[str, Any]) -> Any: ...

    def track(self, image: np.ndarray) -> dict[str, Any]: ...


# Builds a tracker on a device ('cpu', 'cuda:<k>'); picklable, since spawned workers call it
# (e.g. lib.test.tracker.factory.TrackerFactory, or a tracker class).
TrackerBuilder = Callable[[str], Tracker]


class InvalidInitBoxError(InvalidBoxError):
    """The first ground-truth box cannot initialise a tracker."""


class TrackerOutputError(UserError):
    """The tracker returned something that is not a usable box."""


# ------------------------------------------------------------------------------------------ result files

def check_init_box(box: Iterable[float], image_shape: tuple[int, ...], seq_name: str) -> None:
    """Reject boxes no tracker can start from, with a message naming the sequence."""
    try:
        validate_init_box(list(box), image_shape)
    except InvalidBoxError as err:
        raise InvalidInitBoxError(f"sequence '{seq_name}': {err}; fix the first ground-truth row of this "
                                  "sequence (x, y, w, h in pixels)") from None


def _output_box(output: Any, frame_index: int, seq_name: str) -> np.ndarray:
    try:
        box = np.asarray(output["target_bbox"], dtype=np.float64).reshape(4)
    except (TypeError, KeyError, ValueError, IndexError):
        raise TrackerOutputError(f"sequence '{seq_name}', frame {frame_index}: the tracker must return "
                                 f"{{'target_bbox': [x, y, w, h]}}, got {str(output)[:100]}") from None
    if not np.isfinite(box).all():
        raise TrackerOutputError(f"sequence '{seq_name}', frame {frame_index}: the tracker returned the "
                                 f"non-finite box {box.tolist()}")
    return box


def check_trackable(seq: Sequence) -> None:
    """A sequence whose files could not be read, or that has no frames, fails before any tracking."""
    if seq.load_error:
        raise DatasetError(seq.load_error)
    if len(seq) == 0:
        raise UserError(f"sequence '{seq.name}' has no frames; check its frame folder")


def track_sequence(tracker: Tracker, seq: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) and seconds per frame (N,); image reading is not timed, as in OSTrack."""
    check_trackable(seq)
    boxes = np.empty((len(seq), 4), dtype=np.float64)
    seconds = np.empty(len(seq), dtype=np.float64)
    for index, frame in enumerate(seq.frames):
        image = read_rgb(frame)
        if index == 0:
            check_init_box(seq.init_bbox, image.shape, seq.name)
            start = time.perf_counter()
            output = tracker.initialize(image, seq.init_info())
            seconds[0] = time.perf_counter() - start
            has_box = isinstance(output, dict) and output.get("target_bbox") is not None
            boxes[0] = _output_box(output, 0, seq.name) if has_box else seq.init_bbox
        else:
            start = time.perf_counter()
            output = tracker.track(image)
            seconds[index] = time.perf_counter() - start
            boxes[index] = _output_box(output, index, seq.name)
    return boxes, seconds


@dataclass
class SequenceResult:
    name: str
    status: str  # "done", "skipped" (results already existed), "elsewhere" (another runner has it) or "failed"
    num_frames: int = 0
    seconds: float = 0.0
    error: str | None = None
    details: str | None = None  # traceback, for errors that are not user errors

    @property
    def fps(self) -> float | None:
        return self.num_frames / self.seconds if self.status == "done" and self.seconds > 0 else None

    def describe(self) -> str:
        if self.status == "failed":
            return f"{self.name}: FAILED: {self.error}"
        if self.status == "skipped":
            return f"{self.name}: skipped (results exist)"
        if self.status == "elsewhere":
            return f"{self.name}: tracked by another runner" + (f" ({self.error})" if self.error else "")
        return f"{self.name}: {self.num_frames} frames, {self.fps or float('inf'):.1f} FPS"


def write_sequence_results(seq: Sequence, boxes: np.ndarray, seconds: np.ndarray,
                           result_path_base: str | Path) -> SequenceResult:
    """Write a whole sequence's boxes and per-frame seconds atomically, in the official raw format."""
    box_file, time_file = result_files(result_path_base)
    times, box_text = format_times(seconds), format_boxes(boxes)
    with reporting_disk_full(f"the results of sequence '{seq.name}'", box_file.parent, len(times) + len(box_text),
                             RERUN_HINT):
        atomic_write_text(time_file, times)
        atomic_write_text(box_file, box_text)
    return SequenceResult(seq.name, "done", len(seq), float(seconds.sum()))


def taken_over(name: str) -> SequenceResult:
    """A sequence whose claim another runner took over while this one tracked it: its boxes are dropped."""
    return SequenceResult(name, "elsewhere", error="its claim was taken over while this runner tracked it (no "
                          "heartbeat for a whole lease: was the process suspended?); the new holder writes the results")


def _failure(name: str, err: BaseException, context: str = "") -> SequenceResult:
    if isinstance(err, UserError):
        return SequenceResult(name, "failed", error=context + str(err))
    details = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return SequenceResult(name, "failed", error=f"{context}{type(err).__name__}: {err}", details=details)


def _attempt(tracker: Tracker, seq: Sequence, results_dir: Path, debug: bool, board: ClaimBoard) -> SequenceResult:
    """Claim ``seq`` and track it, unless another runner holds it or finished it since this run started."""
    with board.claim(sequence_claim_base(results_dir, seq.name, seq.dataset)) as claim:
        if claim is None or result_problem(results_dir, seq) is None:
            return SequenceResult(seq.name, "elsewhere")
        try:
            boxes, seconds = track_sequence(tracker, seq)
            if not board.holds(claim):
                return taken_over(seq.name)
            return write_sequence_results(seq, boxes, seconds, result_path_base(results_dir, seq))
        except DiskFullError:
            raise  # every other sequence would fail the same way: stop the run
        except Exception as err:
            if debug:
                raise
            return _failure(seq.name, err)


# ------------------------------------------------------------------------------------------ whole dataset

@dataclass
class RunReport:
    results: list[SequenceResult]
    results_dir: Path
    elapsed: float = 0.0  # wall-clock seconds of the run

    def _with_status(self, status: str) -> list[str]:
        return [result.name for result in self.results if result.status == status]

    @property
    def done(self) -> list[str]:
        return self._with_status("done")

    @property
    def skipped(self) -> list[str]:
        return self._with_status("skipped")

    @property
    def failed(self) -> list[str]:
        return self._with_status("failed")

    @property
    def elsewhere(self) -> list[str]:
        """Sequences that other runners sharing the folder tracked (or are tracking) during this run."""
        return self._with_status("elsewhere")

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def num_frames(self) -> int:
        return sum(result.num_frames for result in self.results if result.status == "done")

    @property
    def fps(self) -> float | None:
        """Frames over summed per-frame time of the sequences tracked in this run (OSTrack's FPS)."""
        seconds = sum(result.seconds for result in self.results if result.status == "done")
        return self.num_frames / seconds if seconds > 0 else None

    def summary(self) -> str:
        elsewhere = f"{len(self.elsewhere)} tracked by other runners, " if self.elsewhere else ""
        lines = [f"{len(self.results)} sequences: {len(self.done)} done, {len(self.skipped)} skipped (results "
                 f"existed), {elsewhere}{len(self.failed)} failed; results in {self.results_dir}"]
        if self.done:
            lines.append(f"tracked {self.num_frames} frames at {self.fps or float('inf'):.1f} FPS "
                         f"(frames / summed frame time) in {self.elapsed:.1f} s wall-clock")
        lines += [f"  {result.describe()}" for result in self.results if result.status == "failed" or result.error]
        if self.failed:
            lines.append("fix the errors above and run again: finished sequences are skipped")
        return "\n".join(lines)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def device_for_worker(worker_index: int, num_gpus: int, first_gpu: int = 0) -> str:
    """Worker k's device: GPUs ``first_gpu`` .. ``first_gpu + num_gpus - 1`` in turn (a torchrun rank's own)."""
    return f"cuda:{first_gpu + worker_index % num_gpus}" if num_gpus > 0 else "cpu"


def threads_per_worker(workers: int, cores: int) -> int:
    """Intra-op threads per worker, so that workers x threads does not oversubscribe the cores."""
    return max(1, cores // max(1, workers))


def _limit_threads(count: int) -> None:
    for name in _THREAD_ENV_VARS:
        os.environ[name] = str(count)
    cv2.setNumThreads(count)
    torch = sys.modules.get("torch")  # only if the tracker uses it; importing it here would cost seconds
    if torch is not None:
        torch.set_num_threads(count)


def _select_device(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(torch.device(device))


def _exit_with_parent(parent_pid: int) -> None:
    """A SIGKILLed runner cannot stop its workers, so ask Linux to kill them with it (PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


_worker_state: dict[str, Any] = {}


def _init_worker(build_tracker: TrackerBuilder, slots: Any, num_gpus: int, first_gpu: int, threads: int,
                 parent_pid: int) -> None:
    _exit_with_parent(parent_pid)
    _limit_threads(threads)
    _worker_state.update(build_tracker=build_tracker, device=device_for_worker(slots.get(), num_gpus, first_gpu),
                         threads=threads, tracker=None)


_BUILD_FAILED = "could not build the tracker: "


def _worker_tracker() -> Tracker:
    """This worker's tracker, built on its first task (so that a failure is reported with that task)."""
    if _worker_state["tracker"] is None:
        _select_device(_worker_state["device"])
        _worker_state["tracker"] = _worker_state["build_tracker"](_worker_state["device"])
        _limit_threads(_worker_state["threads"])  # building the tracker may have imported torch
    return _worker_state["tracker"]


def _run_in_worker(seq: Sequence, results_dir: Path, debug: bool, board: ClaimBoard) -> SequenceResult:
    try:
        tracker = _worker_tracker()
    except Exception as err:
        if debug:
            raise
        return _failure(seq.name, err, context=_BUILD_FAILED)
    return _attempt(tracker, seq, results_dir, debug, board)


def _queued(todo: Any) -> Iterator[Sequence]:
    """The sequences of the shared queue ``todo``, taken one at a time until it is empty."""
    while True:
        try:
            yield todo.get_nowait()
        except queue.Empty:
            return


def _run_lockstep_in_worker(todo: Any, done: Any, results_dir: Path, debug: bool, board: ClaimBoard,
                            batch: int) -> str | None:
    """Lockstep batches in a worker: a sequence is taken from the shared ``todo`` queue whenever a batch slot
    frees, so the workers share the sequences as they go; every result is put on ``done``. Returns why the
    tracker could not be built (None when it could: the other workers then take its sequences)."""
    from lib.test.evaluation.lockstep import run_lockstep

    try:
        tracker = _worker_tracker()
    except Exception as err:
        if debug:
            raise
        return _failure("", err, context=_BUILD_FAILED).error
    run_lockstep(tracker, _queued(todo), results_dir, batch, done.put, board, debug)
    return None


def _run_sequential(build_tracker: TrackerBuilder, pending: list[Sequence], results_dir: Path, num_gpus: int,
                    debug: bool, record: Callable[[SequenceResult], None], board: ClaimBoard, batch: int = 1) -> None:
    device = device_for_worker(0, num_gpus, board.rank.local_rank * num_gpus)
    _select_device(device)
    tracker = build_tracker(device)
    if batch > 1:
        from lib.test.evaluation.lockstep import run_lockstep

        run_lockstep(tracker, pending, results_dir, batch, record, board, debug)
        return
    for seq in pending:
        record(_attempt(tracker, seq, results_dir, debug, board))


def _worker_pool(context: Any, build_tracker: TrackerBuilder, workers: int, num_gpus: int,
                 board: ClaimBoard) -> ProcessPoolExecutor:
    """``workers`` spawned processes, each with its device and an equal share of this rank's cores."""
    slots = context.SimpleQueue()
    for index in range(workers):
        slots.put(index)
    cores_here = available_cores() // board.rank.local_world_size  # the other ranks on this node share the cores
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                               initargs=(build_tracker, slots, num_gpus, board.rank.local_rank * num_gpus,
                                         threads_per_worker(workers, cores_here), os.getpid()))


_WORKER_DIED = "a worker process died (out of memory, or a crash in native code); run again to retry this sequence"


def _run_parallel(build_tracker: TrackerBuilder, pending: list[Sequence], results_dir: Path, workers: int,
                  num_gpus: int, debug: bool, record: Callable[[SequenceResult], None], board: ClaimBoard) -> None:
    context = multiprocessing.get_context("spawn")  # CUDA and many libraries are not fork-safe
    pool = _worker_pool(context, build_tracker, workers, num_gpus, board)
    try:
        futures = {pool.submit(_run_in_worker, seq, results_dir, debug, board): seq for seq in pending}
        for future in as_completed(futures):
            name = futures[future].name
            try:
                result = future.result()
            except BrokenProcessPool:
                result = SequenceResult(name, "failed", error=_WORKER_DIED)
            except DiskFullError:
                raise
            except Exception as err:  # building the tracker failed, or a result could not be sent back
                if debug:
                    raise
                result = _failure(name, err)
            record(result)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_parallel_lockstep(build_tracker: TrackerBuilder, pending: list[Sequence], results_dir: Path,
                           workers: int, num_gpus: int, debug: bool, record: Callable[[SequenceResult], None],
                           board: ClaimBoard, batch: int, log: Callable[[str], None]) -> None:
    """``workers`` processes, each tracking ``batch`` sequences in lockstep, fed from one shared queue."""
    context = multiprocessing.get_context("spawn")
    recorded: set[str] = set()
    problems: list[str] = []
    with context.Manager() as manager:
        todo, done = manager.Queue(), manager.Queue()
        for seq in pending:
            todo.put(seq)
        pool = _worker_pool(context, build_tracker, workers, num_gpus, board)
        try:
            futures = [pool.submit(_run_lockstep_in_worker, todo, done, results_dir, debug, board, batch)
                       for _ in range(workers)]
            while True:
                finished = all(future.done() for future in futures)  # read before draining: nothing is missed
                try:
                    while True:
                        result = done.get(timeout=0.05) if not finished else done.get_nowait()
                        recorded.add(result.name)
                        record(result)
                except queue.Empty:
                    pass
                if finished:
                    break
            for future in futures:
                try:
                    problem = future.result()
                except BrokenProcessPool:
                    problem = _WORKER_DIED
                except DiskFullError:
                    raise
                except Exception as err:
                    if debug:
                        raise
                    problem = _failure("", err).error
                if problem:
                    problems.append(problem)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    for problem in dict.fromkeys(problems):
        log(f"a worker stopped: {problem}")
    for seq in pending:  # held by a worker that died or could not start
        if seq.name not in recorded:
            record(SequenceResult(seq.name, "failed", error=problems[0] if problems else _WORKER_DIED))


def check_batch(batch: int) -> None:
    if batch < 1:
        raise UserError(f"--batch must be >= 1, got {batch}")


def run_dataset(build_tracker: TrackerBuilder, sequences: Iterable[Sequence], results_dir: str | Path,
                threads: int = 0, num_gpus: int = 0, debug: bool = False, show_progress: bool = True,
                log: Callable[[str], None] = print, identity: RunIdentity | None = None, dataset: str = "",
                force: bool = False, board: ClaimBoard | None = None, batch: int = 1) -> RunReport:
    """Track every sequence that has no valid results yet in ``results_dir``.

    With ``identity`` the folder's manifest is checked (or created) and this run recorded in it (see
    :func:`open_results_folder`; ``dataset`` names the benchmark and split in it, ``force`` moves another run's
    results aside).

    ``threads`` = 0 runs in this process; otherwise that many spawned workers (each with its own tracker and
    an equal share of the CPU cores) share the sequences, worker k on ``cuda:(k mod num_gpus)`` when
    ``num_gpus`` > 0. Each worker reuses its tracker, so ``initialize`` must reset all per-sequence state.
    A failing sequence is reported and the others go on; ``debug`` re-raises instead. Without workers, a
    tracker that cannot be built raises at once (nothing could run).

    Each sequence is claimed before it is tracked (``board``: the claim lease and this process's torchrun rank),
    so other runners sharing the folder never track it too. A rank tries its own shard of ``sequences`` first,
    then the others' unclaimed ones; its GPUs are ``cuda:(local_rank * num_gpus + k)``.

    ``batch`` > 1 tracks that many sequences at once, one network call per frame step
    (:mod:`lib.test.evaluation.lockstep`; same boxes and result files): in this process, or with workers in
    each worker, the workers taking the next sequence from one shared queue as their batches free a slot.
    """
    check_batch(batch)
    started = time.perf_counter()
    results_dir = Path(results_dir)
    sequences = list(sequences)
    board = board or ClaimBoard()
    tags = {seq.dataset for seq in sequences}
    claim_folders = {claims_folder(results_dir), runner_claims_folder(results_dir)}
    claim_folders |= {sequence_claims_folder(results_dir, tag) for tag in tags}
    runner = None
    try:
        if identity is not None:
            runner = open_results_folder(results_dir, identity, dataset or "unnamed", len(sequences), board, force,
                                         log)
        for folder in {results_dir} | {results_subfolder(results_dir, tag) for tag in tags}:
            for path in remove_stale_temp_files(folder):
                log(f"removed {path}, left by a killed run")
        for folder in claim_folders:  # what killed runners left behind
            remove_stale_temp_files(folder)
            board.remove_stale(folder)
        results: dict[str, SequenceResult] = {}
        for seq in sequences:
            problem = result_problem(results_dir, seq)
            if problem is None:
                results[seq.name] = SequenceResult(seq.name, "skipped")
            elif problem != "no result file":
                log(f"{seq.name}: tracking again, the stored results are invalid ({problem})")
        pending = [seq for seq in board.rank.order(sequences) if seq.name not in results]
        if results:
            log(f"{len(results)} of {len(sequences)} sequences already have results in {results_dir}; skipping them")
        if board.rank.distributed:
            log(f"{board.rank.describe()}: tracking its shard of the sequences first, then any of the other ranks' "
                "that nobody has claimed" if pending else f"{board.rank.describe()}: nothing left to track")
        with tqdm(total=len(pending), unit="seq", disable=not show_progress or not pending) as progress:
            emit = progress.write if show_progress else log  # tqdm.write keeps the bar intact

            def record(result: SequenceResult) -> None:
                results[result.name] = result
                emit(result.describe())
                progress.update()

            if pending and threads <= 0:
                _run_sequential(build_tracker, pending, results_dir, num_gpus, debug, record, board, batch)
            elif pending and batch > 1:
                _run_parallel_lockstep(build_tracker, pending, results_dir, min(threads, len(pending)), num_gpus,
                                       debug, record, board, batch, emit)
            elif pending:
                _run_parallel(build_tracker, pending, results_dir, min(threads, len(pending)), num_gpus, debug,
                              record, board)
        report = RunReport([results[seq.name] for seq in sequences], results_dir, time.perf_counter() - started)
        if runner is not None:
            valid = [seq.name for seq in sequences if result_problem(results_dir, seq) is None]
            close_results_folder(results_dir, dataset or "unnamed", board, runner, len(report.done), report.failed,
                                 valid, log)
    finally:
        if runner is not None:
            board.release(runner)
        remove_empty_folders(claim_folders)  # the claims of a finished run leave no trace
    log(report.summary())
    return report
