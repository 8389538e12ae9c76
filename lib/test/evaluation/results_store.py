"""A run's results folder: the raw result format, whether stored results can be reused, and whose they are.

A sequence's results are reusable only when both files are complete (one parsable line per frame). The
folder's ``manifest.json`` names the run that wrote it (:class:`RunIdentity`: config digest, checkpoint
SHA-256, back-end); results of another run are never reused.
"""
from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lib.test.evaluation.claims import Claim, ClaimBoard, ClaimHolder
from lib.test.evaluation.data import Sequence
from lib.utils import run_layout
from lib.utils.boxes import TableFormatError, parse_box_table, parse_number_table
from lib.utils.errors import UserError
from lib.utils.io import create_exclusive_file, host_tag, move_aside
from lib.utils.provenance import manifest_text, now, read_manifest, write_manifest
from lib.utils.run_layout import (
    CLAIM_SUFFIX,
    MANIFEST_NAME,
    RESULT_SUBFOLDER_TAGS,
    manifest_lock_base,
    result_files,
    runner_claims_folder,
)


class ResultsExistError(UserError):
    """A results folder holds results that another run made."""


def result_path_base(results_dir: str | Path, seq: Sequence) -> Path:
    return run_layout.result_path_base(results_dir, seq.name, seq.dataset)


def result_problem(results_dir: str | Path, seq: Sequence) -> str | None:
    """Why the stored results of ``seq`` cannot be reused (None: both files are complete and parse)."""
    box_file, time_file = result_files(result_path_base(results_dir, seq))
    if not box_file.is_file():
        return "no result file"
    if not time_file.is_file():
        return f"{time_file.name} is missing"
    try:
        boxes = parse_box_table(box_file.read_text())
        times = parse_number_table(time_file.read_text()).ravel()
    except (OSError, UnicodeDecodeError, TableFormatError):
        return f"{box_file.name} or {time_file.name} does not parse"
    if not (np.isfinite(boxes).all() and np.isfinite(times).all()):
        return f"{box_file.name} or {time_file.name} does not parse"
    if len(boxes) != len(seq) or len(times) != len(seq):
        return f"{len(boxes)} boxes and {len(times)} times for {len(seq)} frames"
    return None


@dataclass(frozen=True)
class RunIdentity:
    """What makes results comparable: the merged config's digest, the checkpoint's SHA-256, the back-end.

    ``details`` (config, paths, versions, ...) go into the manifest but do not decide whether results are reused.
    """

    config_digest: str
    checkpoint_sha256: str | None
    backend: str
    details: dict[str, Any] = field(default_factory=dict)

    def manifest_fields(self) -> dict[str, Any]:
        checkpoint = dict(self.details.get("checkpoint") or {}, sha256=self.checkpoint_sha256) \
            if self.checkpoint_sha256 else None
        return {**self.details, "config_digest": self.config_digest, "checkpoint": checkpoint,
                "backend": self.backend}

    def differences(self, manifest: dict[str, Any]) -> list[str]:
        """What differs from the run that wrote ``manifest``."""
        stored = {"config digest": manifest.get("config_digest"),
                  "checkpoint SHA-256": (manifest.get("checkpoint") or {}).get("sha256"),
                  "back-end": manifest.get("backend")}
        current = {"config digest": self.config_digest, "checkpoint SHA-256": self.checkpoint_sha256,
                   "back-end": self.backend}
        return [f"{key} {str(stored[key])[:12]} -> {str(current[key])[:12]}" for key in stored
                if stored[key] != current[key]]


def checkpoint_identity(config: Mapping[str, Any], checkpoint: str | Path | None, backend: str = "eager",
                        **details: Any) -> RunIdentity:
    """The identity of tracking with ``config`` and the weights in ``checkpoint`` on ``backend``."""
    from lib.utils.provenance import config_digest, environment, file_sha256

    checkpoint_details = {"path": str(Path(checkpoint).resolve())} if checkpoint else None
    return RunIdentity(config_digest(config), file_sha256(checkpoint) if checkpoint else None, backend,
                       details={"config": dict(config), "checkpoint": checkpoint_details, **details,
                                "environment": environment()})


def _has_any_results(results_dir: Path) -> bool:
    folders = [results_dir] + [results_dir / tag for tag in RESULT_SUBFOLDER_TAGS]
    return any(path.suffix == ".txt" for folder in folders if folder.is_dir() for path in folder.iterdir())


def _new_session(num_sequences: int) -> dict[str, Any]:
    return {"sequences": num_sequences, "started": now(), "finished": None, "done": 0, "reused": 0, "failed": 0,
            "runners": {}}


def _runner_id(claim_path: Path) -> str:
    return claim_path.name.rsplit(CLAIM_SUFFIX, 1)[0]


def _live_runners(results_dir: Path, board: ClaimBoard, exclude: Claim | None = None) -> dict[str, ClaimHolder]:
    """The runners tracking into ``results_dir`` now, by id (``exclude``: this runner)."""
    holders = board.live_holders(runner_claims_folder(results_dir))
    return {_runner_id(holder.path): holder for holder in holders
            if exclude is None or holder.path != exclude.path}


def open_results_folder(results_dir: Path, identity: RunIdentity, dataset: str, num_sequences: int,
                        board: ClaimBoard, force: bool = False, log: Callable[[str], None] = print) -> Claim:
    """Make ``results_dir`` this run's and join it as a runner; returns the runner's claim (hold it to the end,
    then :func:`close_results_folder`).

    The manifest is created exactly once, exclusively, by the first runner; every later runner (another rank,
    machine or command) checks it: results of another run (or of an unknown one: results without a manifest)
    stop the run with an error naming the difference, unless ``force`` moves them aside. A manifest of another
    run with neither results nor live runners (it stopped before its first sequence) is replaced. Runners
    register under ``datasets.<dataset>.runners``; all changes are made under the manifest lock.
    """
    manifest_path = results_dir / MANIFEST_NAME
    lock = manifest_lock_base(results_dir)
    for _ in range(10):  # a retry follows another runner's --force or first manifest
        results_dir.mkdir(parents=True, exist_ok=True)
        with board.lock(lock, f"the manifest lock of {results_dir}", log):
            manifest = read_manifest(manifest_path)
            has_results = _has_any_results(results_dir)
            others = _live_runners(results_dir, board)
            problem = "; ".join(identity.differences(manifest)) if manifest is not None else ""
            if problem and not has_results and not others:
                manifest, problem = None, ""  # a run that stopped before its first sequence: nothing to keep
            elif manifest is None and has_results:
                problem = "they have no manifest (made by another tool or an older version)"
            if problem and others:
                first = next(iter(others.values()))
                raise ResultsExistError(f"{results_dir} is being tracked into by another run ({problem}; "
                                        f"{len(others)} runner(s), e.g. {first.describe()}); wait for it or stop it, "
                                        "or pass --runid N to track into a separate folder")
            if problem and not force:
                raise ResultsExistError(f"{results_dir} holds results of another run ({problem}); pass --force to "
                                        "move them aside and track again, or --runid N to track into a separate "
                                        "folder")
            if problem:
                log(f"--force: moved the results of another run ({problem}) aside to {move_aside(results_dir)}")
                continue  # the lock moved with the folder: start again in a fresh one
            runner = board.try_acquire(runner_claims_folder(results_dir) / f"{host_tag()}-{os.getpid()}-"
                                                                            f"{secrets.token_hex(4)}")
            if runner is None:
                raise RuntimeError("a fresh runner claim was held by another runner")
            created = manifest is None
            if created:
                manifest = {"manifest_version": 1, "kind": "tracking", **identity.manifest_fields(), "datasets": {},
                            "started": now(), "finished": None}
            datasets = manifest.setdefault("datasets", {})
            entry = datasets.get(dataset)
            runners = (entry or {}).get("runners") or {}
            launch = board.rank.launch if board.rank.distributed else None
            joins_live = any(record.get("finished") is None and runner_id in others
                             for runner_id, record in runners.items())
            if not joins_live and (launch is None or (entry or {}).get("launch") != launch):
                # no live runner to join and not a rank of the same torchrun launch (whose other ranks may all
                # have finished before this one started): a new session of this dataset
                entry = _new_session(num_sequences)
                if launch is not None:
                    entry["launch"] = launch
            entry.update(sequences=num_sequences, finished=None)
            entry["runners"][_runner_id(runner.path)] = {"host": socket.gethostname(), "pid": os.getpid(),
                                                    "rank": board.rank.rank, "world_size": board.rank.world_size,
                                                    "started": now(), "finished": None}
            datasets[dataset] = entry
            manifest["finished"] = None
            if created and not create_exclusive_file(manifest_path, manifest_text(manifest)):
                board.release(runner)  # another runner made the manifest first (it had moved ours aside): check it
                continue
            if not created:
                write_manifest(manifest_path, manifest)
            return runner
    raise ResultsExistError(f"{results_dir} keeps changing under this run (other runners with --force?); run "
                            "one command with --force, then the others without it")


def close_results_folder(results_dir: Path, dataset: str, board: ClaimBoard, runner: Claim, tracked: int,
                         failed: Iterable[str], valid: Iterable[str], log: Callable[[str], None] = print) -> None:
    """Record this runner's end in the manifest, merged with what the other runners recorded.

    ``tracked``: sequences this runner tracked; ``failed``: the names of those that failed; ``valid``: the names of
    the dataset's sequences with valid results now. The dataset's ``done`` sums what its runners tracked in
    this session, ``reused`` counts the other valid results, ``failed`` the failures still without results;
    ``finished`` is set by the last runner to end.
    """
    manifest_path = results_dir / MANIFEST_NAME
    with board.lock(manifest_lock_base(results_dir), f"the manifest lock of {results_dir}", log):
        manifest = read_manifest(manifest_path)
        if manifest is None:
            log(f"{manifest_path} is gone (moved aside by another run with --force?); this run's counts are not "
                "recorded")
            return
        entry = manifest.setdefault("datasets", {}).setdefault(dataset, _new_session(0))
        runners = entry.setdefault("runners", {})
        record = runners.setdefault(_runner_id(runner.path), {"host": socket.gethostname(), "pid": os.getpid()})
        record.update(finished=now(), done=tracked, failed=sorted(failed))
        valid = set(valid)
        done = sum(int(other.get("done") or 0) for other in runners.values())
        failures = {name for other in runners.values() for name in other.get("failed") or []} - valid
        entry.update(done=done, reused=max(0, len(valid) - done), failed=len(failures))
        others = _live_runners(results_dir, board, exclude=runner)
        if not any(other.get("finished") is None and runner_id in others for runner_id, other in runners.items()):
            entry["finished"] = now()
        if all((other or {}).get("finished") for other in manifest["datasets"].values()):
            manifest["finished"] = now()
        write_manifest(manifest_path, manifest)


def format_boxes(boxes: np.ndarray) -> str:
    """OSTrack's ``astype(int)`` + ``%d``: truncation toward zero, which reproduces its files and scores exactly."""
    truncated = np.trunc(np.asarray(boxes, dtype=np.float64)).astype(np.int64)
    return "".join("\t".join(str(value) for value in row) + "\n" for row in truncated)


def format_times(seconds: np.ndarray) -> str:
    return "".join(f"{value:f}\n" for value in seconds)
