"""A run's results folder: the raw result format, whether stored results can be reused, and whose they are.

A sequence's results are reusable only when both files are complete (one parsable line per frame). The
folder's ``manifest.json`` names the run that wrote it (:class:`RunIdentity`: config digest, checkpoint
SHA-256, back-end); results of another run are never reused.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lib.test.evaluation.data import Sequence
from lib.utils import run_layout
from lib.utils.boxes import TableFormatError, parse_box_table, parse_number_table
from lib.utils.errors import UserError
from lib.utils.io import move_aside
from lib.utils.provenance import now, read_manifest, write_manifest
from lib.utils.run_layout import MANIFEST_NAME, RESULT_SUBFOLDER_TAGS, result_files


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


def claim_results_folder(results_dir: Path, identity: RunIdentity, dataset: str, num_sequences: int,
                         force: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Make ``results_dir`` this run's: check the manifest of what is there, write ours; returns it.

    Results of another run (or of an unknown one: results without a manifest) stop the run with an error
    naming the difference, unless ``force`` moves them aside.
    """
    manifest_path = results_dir / MANIFEST_NAME
    manifest = read_manifest(manifest_path) if results_dir.is_dir() else None
    has_results = results_dir.is_dir() and _has_any_results(results_dir)
    if manifest is not None and not has_results:
        manifest = None  # a run that stopped before its first sequence: nothing to keep
    if manifest is not None:
        problem = "; ".join(identity.differences(manifest))
    else:
        problem = "they have no manifest (made by another tool or an older version)" if has_results else ""
    if problem and not force:
        raise ResultsExistError(f"{results_dir} holds results of another run ({problem}); pass --force to move "
                                "them aside and track again, or --runid N to track into a separate folder")
    if problem:
        log(f"--force: moved the results of another run ({problem}) aside to {move_aside(results_dir)}")
        manifest = None
    if manifest is None:
        manifest = {"manifest_version": 1, "kind": "tracking", **identity.manifest_fields(), "datasets": {},
                    "started": now(), "finished": None}
    manifest.setdefault("datasets", {})[dataset] = {"sequences": num_sequences, "started": now(), "finished": None}
    manifest["finished"] = None
    write_manifest(manifest_path, manifest)
    return manifest


def format_boxes(boxes: np.ndarray) -> str:
    """OSTrack's ``astype(int)`` + ``%d``: truncation toward zero, which reproduces its files and scores exactly."""
    truncated = np.trunc(np.asarray(boxes, dtype=np.float64)).astype(np.int64)
    return "".join("\t".join(str(value) for value in row) + "\n" for row in truncated)


def format_times(seconds: np.ndarray) -> str:
    return "".join(f"{value:f}\n" for value in seconds)
