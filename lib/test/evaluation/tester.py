"""What ``tracking/test.py`` does: track a benchmark with one config and checkpoint into its results folder."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lib.test.evaluation.running import RunReport
from lib.utils.errors import DatasetError, UserError


@dataclass(frozen=True)
class TestRun:
    """One tracking run, as the command line describes it."""

    script: str
    config: str
    dataset: str = "otb"
    dataset_root: str | None = None
    sequence: str | None = None  # one sequence, by name or index
    sequences: list[str] | None = None
    workers: int = 0  # parallel worker processes (OSTrack's --threads); 0 runs in this process
    num_gpus: int = 0
    checkpoint: str | None = None  # default: the TEST.EPOCH checkpoint of this config's training run
    device: str = "cpu"
    run_id: int | None = None
    backend: str = "eager"
    save_dir: str | None = None
    overrides: list[str] = field(default_factory=list)
    force: bool = False
    progress: bool = True
    debug: bool = False


def check_devices(run: TestRun) -> None:
    import torch

    from lib.test.tracker.backends import BACKENDS

    if run.workers < 0 or run.num_gpus < 0:
        raise UserError(f"--threads and --num_gpus must be >= 0, got {run.workers} and {run.num_gpus}")
    if run.run_id is not None and run.run_id < 0:
        raise UserError(f"--runid must be >= 0, got {run.run_id}")
    if run.backend not in BACKENDS:
        raise UserError(f"unknown --backend '{run.backend}'; choose one of {list(BACKENDS)}")
    wants_gpu = run.device == "cuda" or run.num_gpus > 0
    if run.backend != "eager" and wants_gpu:
        raise UserError(f"--backend {run.backend} runs on the CPU only; use --backend eager on the GPU")
    if wants_gpu and not torch.cuda.is_available():
        raise UserError("a GPU run was asked for (--device cuda / --num_gpus), but CUDA is not available; "
                        "use --device cpu")


def track_benchmark(run: TestRun) -> RunReport:
    """Track every sequence of ``run.dataset`` that has no valid results of this very run yet."""
    from lib.config import resolve_config_path
    from lib.test.evaluation.datasets import get_dataset
    from lib.test.evaluation.results_store import checkpoint_identity
    from lib.test.evaluation.running import run_dataset
    from lib.test.tracker.factory import TrackerFactory, default_checkpoint
    from lib.utils.io import ensure_writable
    from lib.utils.paths import get_paths
    from lib.utils.run_layout import backend_choice_dir, onnx_cache_dir, results_folder

    check_devices(run)
    paths = get_paths(save_dir=run.save_dir)
    config_file = resolve_config_path(run.config, run.script)
    config_name = config_file.stem
    cfg = TrackerFactory(run.config, run.script, run.checkpoint, tuple(run.overrides)).load_config()
    checkpoint = run.checkpoint or str(default_checkpoint(paths, run.script, config_name, cfg.TEST.EPOCH))
    options: dict[str, Any] = {}
    if run.backend != "eager":
        options = {"backend": run.backend,
                   "backend_options": {"cache_dir": str(ensure_writable(onnx_cache_dir(paths), "the ONNX cache")),
                                       "choice_dir": str(backend_choice_dir(paths))}}
    factory = TrackerFactory(run.config, run.script, checkpoint, tuple(run.overrides), tracker_options=options)
    # fail early on a checkpoint that does not fit the config (and export ONNX once, here); 'auto' -> its choice
    factory, backend = factory.resolved(run.device)
    results_dir = results_folder(paths, run.script, config_name, run.run_id, backend)
    ensure_writable(results_dir, "tracking results")  # before a single frame is tracked

    sequences = get_dataset(run.dataset, paths=paths, root=run.dataset_root, sequences=run.sequences,
                            skip_unreadable=True)
    if run.sequence is not None:
        sequences = [select_sequence(sequences, run.sequence, run.dataset)]
    identity = checkpoint_identity(cfg.to_dict(), checkpoint, backend, config_file=str(config_file.resolve()),
                                   overrides=list(run.overrides), script=run.script, run_id=run.run_id)
    num_gpus = max(run.num_gpus, 1) if run.device == "cuda" else run.num_gpus
    return run_dataset(factory, sequences, results_dir, threads=run.workers, num_gpus=num_gpus, debug=run.debug,
                       show_progress=run.progress, identity=identity, dataset=run.dataset, force=run.force)


def select_sequence(sequences, key: str, dataset: str):
    """One sequence by index or by name (an unreadable one is an error of its own, not of the others)."""
    chosen = None
    if key.isdigit() and int(key) < len(sequences):
        chosen = sequences[int(key)]
    elif key in sequences.names():
        chosen = sequences[key]
    if chosen is not None and chosen.load_error:
        raise DatasetError(chosen.load_error)
    if chosen is not None:
        return chosen
    raise UserError(f"sequence '{key}' is not in dataset '{dataset}' ({len(sequences)} sequences; give a name "
                    "or an index)")
