"""A picklable recipe for building a tracker inside a benchmark worker process."""
from __future__ import annotations

from dataclasses import dataclass, field
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


def default_checkpoint(paths: Paths, script: str, config_name: str, epoch: int) -> Path:
    """Where training saved the epoch the config's ``TEST.EPOCH`` names (official layout and naming)."""
    path = TrainingRun(paths, script, config_name).checkpoint_path(epoch)
    if not path.is_file():
        raise WeightsError(f"no checkpoint for TEST.EPOCH={epoch} at {path}; train first, pass --checkpoint PATH, "
                           "or set TEST.EPOCH to a saved epoch")
    return path
