"""The one checkpointer of a training run: start or resume it, save, keep, find (detectron2's model).

It owns a run folder (:class:`~lib.utils.run_layout.TrainingRun`) and its manifest, and guarantees:

* a new run never writes into a folder that holds another run's checkpoints (``force`` moves it aside);
* a resumed run trains with the config it was started with, unless changes are accepted explicitly;
* a corrupt or truncated newest checkpoint falls back to the previous readable one, with a warning;
* retention deletes only checkpoints this run wrote (as listed in its manifest);
* leftovers of a killed save (stale temporary files) are removed at the next start;
* the run's folders are proved writable before anything is built, free space is checked before each save, and
  a save that runs out of space stops the run with one line (nothing partial is left; ``--resume`` continues).
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lib.models.weights import load_state_dict_adapted, read_checkpoint, save_checkpoint
from lib.utils.errors import UserError, WeightsError
from lib.utils.io import (
    check_free_space,
    ensure_writable,
    move_aside,
    remove_stale_temp_files,
    reporting_disk_full,
)
from lib.utils.provenance import (
    config_differences,
    describe_differences,
    file_sha256,
    new_manifest,
    now,
    read_manifest,
    write_manifest,
)
from lib.utils.run_layout import TrainingRun, checkpoint_name

log = logging.getLogger(__name__)
KEEP_NEWEST = 2  # the newest checkpoints are always kept, so a corrupt newest one can fall back
SAVE_OVERHEAD_BYTES = 1 << 16  # a checkpoint's pickled structure and the manifest, beyond its tensors


class RunExistsError(UserError):
    """A new run would write into a folder that holds another run."""


class ResumeError(UserError):
    """A run cannot be resumed as asked."""


@dataclass
class ResumePoint:
    """The checkpoint a run continues from, and the config changes accepted on the way."""

    path: Path
    checkpoint: dict[str, Any]
    accepted_changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def epoch(self) -> int:
        return int(self.checkpoint["epoch"])


def retained_epochs(epochs: list[int], keep_every: int, keep_last: int, max_epoch: int) -> set[int]:
    """Which of ``epochs`` retention keeps: every ``keep_every``-th, the last ``keep_last`` epochs of the
    schedule, and the :data:`KEEP_NEWEST` newest."""
    newest = set(sorted(epochs)[-KEEP_NEWEST:])
    return {e for e in epochs if e in newest or (keep_every > 0 and e % keep_every == 0)
            or e > max_epoch - keep_last}


class Checkpointer:
    """Checkpoints and manifest of one training run; only the main process writes."""

    def __init__(self, run: TrainingRun, keep_every: int, keep_last: int, max_epoch: int,
                 is_main: bool = True, launch_id: str | None = None) -> None:
        """``launch_id`` names the ``train.py --mode multiple`` launch this process belongs to (None: none), so
        workers that torchrun restarts can tell their own run from another one."""
        self.run = run
        self.launch_id = launch_id
        self.keep_every = keep_every
        self.keep_last = keep_last
        self.max_epoch = max_epoch
        self.is_main = is_main
        self.manifest: dict[str, Any] = {}

    @property
    def folder(self) -> Path:
        return self.run.checkpoint_dir

    # ------------------------------------------------------------------------------------------ start
    def check_start(self, resume: bool, force: bool) -> None:
        """Refuse to start a new run over another one, or one whose folders cannot be written.

        It changes nothing (a probe file is made and removed where the folders will be), so every DDP rank can ask.
        """
        ensure_writable(self.folder, "checkpoints", create=False)
        ensure_writable(self.run.tensorboard_dir, "training logs", create=False)
        existing = self.run.checkpoints()
        if existing and not resume and not force:
            epochs = list(existing)
            raise RunExistsError(
                f"{self.folder} already holds the checkpoints of a run (epochs {epochs[0]}..{epochs[-1]}); "
                "continue it with --resume, train into another --save_dir, or pass --force to move the old run "
                "aside (nothing is deleted)")

    def start(self, config: Mapping[str, Any], config_file: str | Path | None, resume: bool = False,
              force: bool = False, accept_changes: bool = False) -> ResumePoint | None:
        """Prepare the run folder (the main process writes) and return where to resume from (None: from scratch).

        Every rank may call it: the checks and the resume point only read.
        """
        self.check_start(resume, force)
        if self.is_main:
            for path in remove_stale_temp_files(self.folder):
                log.warning("removed %s, left by a killed save", path)
            if force and not resume:
                self._move_old_run_aside()
        point = self.resume_point(config, config_file, accept_changes) if resume else None
        if point is None and resume:
            log.info("--resume: no checkpoint in %s yet; starting from scratch", self.folder)
        if self.is_main:
            self._open_manifest(config, config_file, point)
        return point

    def _move_old_run_aside(self) -> None:
        for folder in (self.folder, self.run.tensorboard_dir):
            if folder.exists():
                log.warning("--force: moved the old run %s aside to %s", folder, move_aside(folder))

    def _open_manifest(self, config: Mapping[str, Any], config_file: str | Path | None,
                       point: ResumePoint | None) -> None:
        previous = read_manifest(self.run.manifest_path)
        if point is not None and point.epoch >= self.max_epoch and not point.accepted_changes:
            self.manifest = previous or {}  # a finished run: nothing will be written
            return
        if point is not None and previous is not None:
            self.manifest = previous
            self.manifest["config"] = dict(config)
            self.manifest["finished"] = None
            self.manifest.setdefault("resumes", []).append(
                {"epoch": point.epoch, "started": now(), "checkpoint": point.path.name,
                 "accepted_changes": {k: list(v) for k, v in point.accepted_changes.items()}})
        else:
            if previous is not None and previous.get("config_file") and config_file \
                    and Path(previous["config_file"]) != Path(config_file).resolve():
                log.warning("%s was last started from %s; it now holds a new run of %s", self.folder,
                            previous["config_file"], config_file)
            self.manifest = new_manifest("training", config, config_file, run_id=uuid.uuid4().hex,
                                         script=self.run.script, config_name=self.run.config_name, checkpoints={})
            if point is not None:  # a run from before manifests: adopt its checkpoints
                self.manifest["checkpoints"] = {path.name: {"epoch": epoch} for epoch, path in
                                                self.run.checkpoints().items()}
        self.manifest["launch_id"] = self.launch_id
        write_manifest(self.run.manifest_path, self.manifest)

    def started_by_launch(self) -> bool:
        """Whether this run folder's manifest was last opened by this process's launch (a restarted worker's)."""
        manifest = read_manifest(self.run.manifest_path) or {}
        return self.launch_id is not None and manifest.get("launch_id") == self.launch_id

    # ----------------------------------------------------------------------------------------- resume
    def latest_readable(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest checkpoint that reads; unreadable newer ones are named in a warning and skipped."""
        for path in reversed(self.run.checkpoints().values()):
            try:
                return path, read_checkpoint(path)
            except WeightsError as err:
                log.warning("skipping the unreadable checkpoint %s (%s); falling back to an earlier epoch",
                            path, err)
        return None

    def resume_point(self, config: Mapping[str, Any], config_file: str | Path | None = None,
                     accept_changes: bool = False) -> ResumePoint | None:
        found = self.latest_readable()
        if found is None:
            if self.run.checkpoints():
                raise ResumeError(f"--resume: no checkpoint in {self.folder} can be read; move the folder aside "
                                  "(--force without --resume) to start again")
            return None
        path, checkpoint = found
        if "trainer" not in checkpoint:
            raise ResumeError(f"{path} has no trainer state (not written by this framework); it can initialise a "
                              "model (MODEL.PRETRAIN_FILE) but not resume a run")
        stored = checkpoint.get("config")
        differences = config_differences(stored, config) if isinstance(stored, Mapping) else {}
        if differences and not accept_changes:
            manifest = read_manifest(self.run.manifest_path) or {}
            origin = manifest.get("config_file")
            started = f" (it was started from {origin})" if origin and config_file and \
                Path(origin) != Path(config_file).resolve() else ""
            raise ResumeError(
                f"--resume: the config differs from the one {self.run.name} was trained with{started}: "
                f"{describe_differences(differences)}; undo the change, pass --accept_config_changes to apply it "
                "from the next epoch on, or start a new run in another --save_dir")
        if differences:
            log.warning("--resume with --accept_config_changes: from epoch %d on, %s", int(checkpoint["epoch"]) + 1,
                        describe_differences(differences, limit=100))
        return ResumePoint(path, checkpoint, differences)

    def load_model(self, model: torch.nn.Module, point: ResumePoint) -> None:
        load_state_dict_adapted(model, point.checkpoint["net"], str(point.path), "tracker", strict=True)

    # ------------------------------------------------------------------------------------------- save
    def save(self, model: torch.nn.Module, epoch: int, **extra: Any) -> Path | None:
        """Write epoch ``epoch`` atomically, record it in the manifest, then apply retention."""
        if not self.is_main:
            return None
        target = self.folder / checkpoint_name(epoch)
        needed = tensor_bytes((model.state_dict(), extra)) + SAVE_OVERHEAD_BYTES
        what = f"the checkpoint of epoch {epoch}"
        hint = self._resume_hint()
        check_free_space(self.folder, needed, what, hint)
        with reporting_disk_full(what, target, needed, hint):
            path = save_checkpoint(target, model, epoch=epoch, **extra)
            written = self.manifest.setdefault("checkpoints", {})
            written[path.name] = {"epoch": epoch, "sha256": file_sha256(path), "saved": now()}
            self._apply_retention()
            write_manifest(self.run.manifest_path, self.manifest)
        log.info("saved %s", path)
        return path

    def _resume_hint(self) -> str:
        saved = self.run.checkpoints()
        since = f"epoch {list(saved)[-1]}, the last checkpoint" if saved else "scratch (no checkpoint yet)"
        return f"run the same command with --resume to continue from {since}"

    def _apply_retention(self) -> None:
        written = self.manifest.get("checkpoints", {})
        epochs = {name: int(entry["epoch"]) for name, entry in written.items()}
        keep = retained_epochs(list(epochs.values()), self.keep_every, self.keep_last, self.max_epoch)
        for name, epoch in epochs.items():
            if epoch not in keep:
                (self.folder / name).unlink(missing_ok=True)
                del written[name]

    def finish(self) -> None:
        if self.is_main and self.manifest:
            self.manifest["finished"] = now()
            write_manifest(self.run.manifest_path, self.manifest)


def tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor in a nest of dicts, lists and tuples: what a checkpoint of it needs on disk."""
    if isinstance(obj, torch.Tensor):
        return obj.element_size() * obj.nelement()
    if isinstance(obj, Mapping):
        return sum(tensor_bytes(value) for value in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(value) for value in obj)
    return 0
