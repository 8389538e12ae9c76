"""Where every run lives: the one place that names training folders, checkpoints, results and caches.

Below the output root (``save_dir``, see :mod:`lib.utils.paths`) the layout is OSTrack's, so official tools
and habits carry over::

    checkpoints/train/<script>/<config>/OSTrack_ep0300.pth.tar   training run (+ manifest.json)
    tensorboard/train/<script>/<config>/                         its TensorBoard events
    test/tracking_results/<script>/<config>[_<runid:03d>][_<backend>]/<seq>.txt, <seq>_time.txt
                                                                 (GOT-10k and TrackingNet one level deeper, in
                                                                  <tag>/, where their packers look) + manifest.json
        claims/[<tag>/]<seq>.claim-<n>, claims/runners/, claims/manifest.lock.claim-<n>
                                                                 who tracks what now (see lib.test.evaluation.claims)
    test/result_plots/<report>/                                  analysis plots and metric cache
    cache/onnx/, cache/backend_choice/, cache/data_checks/,      exported fast-tracker networks, back-end choices,
    cache/*.json                                                 training-data checks, dataset indexes

Folder names never carry digests: what a folder holds is told by its manifest (:mod:`lib.utils.provenance`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lib.utils.paths import Paths

NET_TYPE = "OSTrack"  # the network class name the official checkpoints are named after
MANIFEST_NAME = "manifest.json"
TIME_SUFFIX = "_time"
DEFAULT_BACKEND = "eager"
# Benchmarks whose results go one folder deeper, ``<run>/<tag>/<seq>.txt`` (as in OSTrack), because their
# submission packers read exactly that folder.
RESULT_SUBFOLDER_TAGS = ("got10k", "trackingnet")
_CHECKPOINT_NAME = re.compile(r"^(?P<net>\w+)_ep(?P<epoch>\d{4,})\.pth\.tar$")


def checkpoint_name(epoch: int, net_type: str = NET_TYPE) -> str:
    """Official OSTrack naming: ``OSTrack_ep0300.pth.tar``."""
    return f"{net_type}_ep{epoch:04d}.pth.tar"


def checkpoint_epoch(path: str | Path) -> int | None:
    """The epoch in a checkpoint file name, or None when the name is not one."""
    match = _CHECKPOINT_NAME.match(Path(path).name)
    return int(match["epoch"]) if match else None


def checkpoints_root(paths: Paths) -> Path:
    return paths.save_dir / "checkpoints"


def results_root(paths: Paths) -> Path:
    return paths.save_dir / "test" / "tracking_results"


def plots_root(paths: Paths) -> Path:
    return paths.save_dir / "test" / "result_plots"


def cache_root(paths: Paths) -> Path:
    """Derived files that can be rebuilt at any time (dataset indexes, exported networks)."""
    return paths.save_dir / "cache"


def onnx_cache_dir(paths: Paths) -> Path:
    return cache_root(paths) / "onnx"


def data_check_dir(paths: Paths) -> Path:
    """The training-data start-up check's per-dataset results (one file per dataset and location)."""
    return cache_root(paths) / "data_checks"


def backend_choice_dir(paths: Paths) -> Path:
    """``--backend auto``'s measured choices and accuracy-gate verdicts, one file per machine and model."""
    return cache_root(paths) / "backend_choice"


@dataclass(frozen=True)
class TrainingRun:
    """One training run's folders: ``<script>/<config>`` under the checkpoint and TensorBoard roots."""

    paths: Paths
    script: str
    config_name: str

    @property
    def name(self) -> str:
        return f"{self.script}/{self.config_name}"

    @property
    def checkpoint_dir(self) -> Path:
        return checkpoints_root(self.paths) / "train" / self.script / self.config_name

    @property
    def tensorboard_dir(self) -> Path:
        return self.paths.save_dir / "tensorboard" / "train" / self.script / self.config_name

    @property
    def manifest_path(self) -> Path:
        return self.checkpoint_dir / MANIFEST_NAME

    def checkpoint_path(self, epoch: int) -> Path:
        return self.checkpoint_dir / checkpoint_name(epoch)

    def checkpoints(self) -> dict[int, Path]:
        """Every checkpoint file in the run folder, by epoch (ascending)."""
        return checkpoint_files(self.checkpoint_dir)


def checkpoint_files(folder: Path) -> dict[int, Path]:
    """Checkpoint files of ``folder`` by epoch, ascending (an empty dict for a missing folder)."""
    found = {}
    if folder.is_dir():
        for path in folder.iterdir():
            epoch = checkpoint_epoch(path)
            if epoch is not None and path.is_file():
                found[epoch] = path
    return dict(sorted(found.items()))


def results_run_name(config_name: str, run_id: int | None = None, backend: str = DEFAULT_BACKEND) -> str:
    """``<config>[_<runid:03d>][_<backend>]``: the name analysis and the packers look for."""
    name = config_name if run_id is None else f"{config_name}_{run_id:03d}"
    return name if backend == DEFAULT_BACKEND else f"{name}_{backend}"


def results_folder(paths: Paths, script: str, config_name: str, run_id: int | None = None,
                   backend: str = DEFAULT_BACKEND) -> Path:
    """The results folder of one (config, run id, back-end); what it holds is told by its manifest."""
    return results_root(paths) / script / results_run_name(config_name, run_id, backend)


def results_subfolder(run_folder: str | Path, tag: str) -> Path:
    """Where the runner puts sequences of dataset ``tag`` inside a results folder."""
    run_folder = Path(run_folder)
    return run_folder / tag if tag in RESULT_SUBFOLDER_TAGS else run_folder


def result_path_base(run_folder: str | Path, seq_name: str, tag: str) -> Path:
    """``<run>/[<tag>/]<seq>``: the result files are this path plus ``.txt`` / ``_time.txt``."""
    return results_subfolder(run_folder, tag) / seq_name


def result_files(path_base: str | Path) -> tuple[Path, Path]:
    """The box file and the time file of one sequence."""
    return Path(f"{path_base}.txt"), Path(f"{path_base}{TIME_SUFFIX}.txt")


CLAIMS_FOLDER = "claims"
CLAIM_SUFFIX = ".claim-"


def claims_folder(run_folder: str | Path) -> Path:
    """Where runners sharing a results folder say which sequence each is tracking (never holds results)."""
    return Path(run_folder) / CLAIMS_FOLDER


def sequence_claims_folder(run_folder: str | Path, tag: str) -> Path:
    """``claims/[<tag>/]``: sequences are claimed in a folder of their own where their results have one."""
    folder = claims_folder(run_folder)
    return folder / tag if tag in RESULT_SUBFOLDER_TAGS else folder


def sequence_claim_base(run_folder: str | Path, seq_name: str, tag: str) -> Path:
    """``claims/[<tag>/]<seq>``: the claim files of one sequence are this path plus :func:`claim_file`'s suffix."""
    return sequence_claims_folder(run_folder, tag) / seq_name


def runner_claims_folder(run_folder: str | Path) -> Path:
    """One claim per live runner (a process tracking into the folder), held for the runner's whole run."""
    return claims_folder(run_folder) / "runners"


def manifest_lock_base(run_folder: str | Path) -> Path:
    """The claim that serialises updates of the folder's manifest."""
    return claims_folder(run_folder) / "manifest.lock"


def claim_file(base: str | Path, generation: int) -> Path:
    """``<base>.claim-<generation>``: a claim taken over from a dead runner gets the next generation."""
    return Path(f"{base}{CLAIM_SUFFIX}{generation}")


def claim_generation(base: str | Path, path: str | Path) -> int | None:
    """The generation of ``path`` if it is a claim file of ``base`` (None otherwise)."""
    prefix = f"{Path(base).name}{CLAIM_SUFFIX}"
    name = Path(path).name
    suffix = name[len(prefix):] if name.startswith(prefix) else ""
    return int(suffix) if suffix.isdigit() else None
