"""A picklable recipe for building a tracker inside a benchmark worker process."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lib.config import load_config
from lib.utils.errors import WeightsError
from lib.utils.paths import Paths
from lib.utils.run_layout import TrainingRun


@dataclass(frozen=True)
class TrackerFactory:
    """Config + checkpoint -> :class:`OSTrackTracker` on the device the runner assigns."""

    config: str
    script: str = "ostrack"
    checkpoint: str | None = None
    overrides: tuple[str, ...] = ()
    tracker_options: dict[str, Any] = field(default_factory=dict)

    def load_config(self):
        return load_config(self.config, overrides=list(self.overrides), script=self.script)

    def __call__(self, device: str = "cpu"):
        from lib.test.tracker.ostrack import OSTrackTracker

        return OSTrackTracker.from_config(self.load_config(), checkpoint=self.checkpoint, device=device,
                                          **self.tracker_options)

    def build_checked(self, device: str = "cpu"):
        """The tracker, its back-end checked on this machine: ``auto`` gates its candidates itself; a lossy
        back-end the user named is gated once per machine and model, and a failure is reported in one warning
        line (see :func:`lib.test.tracker.backends.auto.check_named_backend`)."""
        tracker = self(device)
        if tracker.backend is not None:
            from lib.test.tracker.backends.auto import check_named_backend

            choice_dir = (self.tracker_options.get("backend_options") or {}).get("choice_dir")
            check_named_backend(tracker.model, tracker.backend, choice_dir)
        return tracker

    def resolved(self, device: str = "cpu") -> tuple[TrackerFactory, str]:
        """Build the tracker once (a checkpoint that does not fit fails here; exports happen once; the back-end
        is checked, :meth:`build_checked`) and return a factory pinned to the back-end it got, with that
        back-end's name: ``backend='auto'`` becomes what it resolved to on this machine, so workers do not
        measure again and results name the real back-end."""
        backend = self.build_checked(device).backend
        name = backend.name if backend is not None else "eager"
        if self.tracker_options.get("backend", "eager") == name:
            return self, name
        return replace(self, tracker_options={**self.tracker_options, "backend": name}), name


def backend_tracker_options(backend: str, paths: Paths) -> dict[str, Any]:
    """Tracker options for network back-end ``backend`` with its caches (ONNX exports, ``auto``'s choices and
    gate records) in ``paths``' cache folder; none for eager."""
    from lib.utils.io import ensure_writable
    from lib.utils.run_layout import backend_choice_dir, onnx_cache_dir

    if backend == "eager":
        return {}
    return {"backend": backend,
            "backend_options": {"cache_dir": str(ensure_writable(onnx_cache_dir(paths), "the ONNX cache")),
                                "choice_dir": str(backend_choice_dir(paths))}}


def default_checkpoint(paths: Paths, script: str, config_name: str, epoch: int) -> Path:
    """Where training saved the epoch the config's ``TEST.EPOCH`` names (official layout and naming)."""
    path = TrainingRun(paths, script, config_name).checkpoint_path(epoch)
    if not path.is_file():
        raise WeightsError(f"no checkpoint for TEST.EPOCH={epoch} at {path}; train first, pass --checkpoint PATH, "
                           "or set TEST.EPOCH to a saved epoch")
    return path
