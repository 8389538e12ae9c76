"""What ``tracking/test.py`` does: track a benchmark with one config and checkpoint into its results folder."""
from __future__ import annotations

from dataclasses import dataclass, field

from lib.test.evaluation.claims import DEFAULT_LEASE_S, ClaimBoard, RunnerRank
from lib.test.evaluation.running import RunReport, check_batch
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
    batch: int = 1  # sequences tracked in lockstep, one network call per frame step (same results)
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
    claim_lease_min: float | None = None  # a claim without heartbeat for this long is taken over (None: default)

    @property
    def claim_lease_s(self) -> float:
        return DEFAULT_LEASE_S if self.claim_lease_min is None else self.claim_lease_min * 60

    @property
    def num_gpus_per_rank(self) -> int:
        return max(self.num_gpus, 1) if self.device == "cuda" else self.num_gpus


def rank_gpus(run: TestRun, rank: RunnerRank) -> range:
    """The GPUs of this torchrun rank (of this process outside torchrun): ``--num_gpus`` of them (1 with
    ``--device cuda``) from ``LOCAL_RANK * num_gpus`` on, so the ranks of a node never share one."""
    import torch

    first = rank.local_rank * run.num_gpus_per_rank
    gpus = range(first, first + run.num_gpus_per_rank)
    if gpus and gpus[-1] >= torch.cuda.device_count():
        raise UserError(f"{rank.describe()} (local rank {rank.local_rank}) needs cuda:{gpus[0]}..cuda:{gpus[-1]}, "
                        f"but this machine has {torch.cuda.device_count()} GPU(s); start at most "
                        f"{torch.cuda.device_count() // run.num_gpus_per_rank} process(es) per node "
                        "(--nproc_per_node) or lower --num_gpus")
    return gpus


def check_devices(run: TestRun) -> None:
    import torch

    from lib.test.tracker.backends import BACKENDS

    if run.workers < 0 or run.num_gpus < 0:
        raise UserError(f"--threads and --num_gpus must be >= 0, got {run.workers} and {run.num_gpus}")
    if run.run_id is not None and run.run_id < 0:
        raise UserError(f"--runid must be >= 0, got {run.run_id}")
    check_batch(run.batch)
    if not 0 < run.claim_lease_s < float("inf"):
        raise UserError(f"--claim_lease must be a positive number of minutes, got {run.claim_lease_min}")
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
    from lib.test.tracker.factory import TrackerFactory, backend_tracker_options, default_checkpoint
    from lib.utils.io import ensure_writable
    from lib.utils.paths import get_paths
    from lib.utils.run_layout import results_folder

    check_devices(run)
    rank = RunnerRank.from_environment()  # torchrun's; no process group: ranks coordinate through claims
    gpus = rank_gpus(run, rank)
    device = f"cuda:{gpus[0]}" if gpus else run.device
    paths = get_paths(save_dir=run.save_dir)
    config_file = resolve_config_path(run.config, run.script)
    config_name = config_file.stem
    cfg = TrackerFactory(run.config, run.script, run.checkpoint, tuple(run.overrides)).load_config()
    checkpoint = run.checkpoint or str(default_checkpoint(paths, run.script, config_name, cfg.TEST.EPOCH))
    factory = TrackerFactory(run.config, run.script, checkpoint, tuple(run.overrides),
                             tracker_options=backend_tracker_options(run.backend, paths))
    # fail early on a checkpoint that does not fit the config (and export ONNX once, here); 'auto' -> its choice
    factory, backend = factory.resolved(device)
    results_dir = results_folder(paths, run.script, config_name, run.run_id, backend)
    ensure_writable(results_dir, "tracking results")  # before a single frame is tracked

    sequences = get_dataset(run.dataset, paths=paths, root=run.dataset_root, sequences=run.sequences,
                            skip_unreadable=True)
    if run.sequence is not None:
        sequences = [select_sequence(sequences, run.sequence, run.dataset)]
    identity = checkpoint_identity(cfg.to_dict(), checkpoint, backend, config_file=str(config_file.resolve()),
                                   overrides=list(run.overrides), script=run.script, run_id=run.run_id,
                                   batch=run.batch)
    return run_dataset(factory, sequences, results_dir, threads=run.workers, num_gpus=run.num_gpus_per_rank,
                       debug=run.debug, show_progress=run.progress, identity=identity, dataset=run.dataset,
                       force=run.force, board=ClaimBoard(run.claim_lease_s, rank), batch=run.batch)


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
