r"""Train a tracker: one process, or one per GPU/CPU rank through torchrun (DDP).

    python tracking/train.py --script ostrack --config vitb_256_mae_ce_32x4_ep300 --save_dir ./output \
        --mode multiple --nproc_per_node 4 [--nnodes 2 --node_rank 0 --master_addr HOST --master_port 29500] \
        [--max_restarts 1] [--collective_timeout 600] [--use_wandb 0|1] [--resume [--accept_config_changes]] [--force]

``--mode multiple`` runs this script once per rank through torch's elastic launcher (as torchrun does) with the
same arguments, so one command scales from a laptop to several machines. A killed or frozen worker ends the
job with one line naming the rank and the last good checkpoint; ``--max_restarts N`` restarts the workers up to
N times instead, and they continue the run from its last checkpoint. Any further ``KEY=VALUE`` after ``--opts``
overrides the config (e.g. ``--opts TRAIN.EPOCH=10 TRAIN.BATCH_SIZE=8``). A run folder that holds another run's
checkpoints is never written over: ``--resume`` continues that run, ``--force`` moves it aside first.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import _init_paths  # noqa: F401
from lib.train.launch import (
    DEFAULT_COLLECTIVE_TIMEOUT_S,
    LAUNCH_ID_ENV,
    LaunchOptions,
    collective_timeout,
    launch,
    run_worker,
    training_run,
)
from lib.utils.cli import base_parser, run_main, setup_logging


def launcher_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("launcher (torchrun)")
    group.add_argument("--mode", default="single", choices=["single", "multiple"])
    group.add_argument("--nproc_per_node", type=int, default=1)
    group.add_argument("--nnodes", type=int, default=1)
    group.add_argument("--node_rank", type=int, default=0)
    group.add_argument("--master_addr", default="127.0.0.1")
    group.add_argument("--master_port", type=int, default=29500)
    group.add_argument("--max_restarts", type=int, default=0,
                       help="restart the workers this often after a failure; they resume from the last checkpoint")
    return parser


def worker_parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.splitlines()[0], "save_dir", "device", "opts", "no_progress",
                         device={"default": None, "help": "where to train (default: the GPU when there is one)"})
    parser.add_argument("--script", default="ostrack", help="experiments/<script>/ folder of the config")
    parser.add_argument("--config", required=True, help="config name or YAML path")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint of this run")
    parser.add_argument("--accept_config_changes", action="store_true",
                        help="with --resume: continue with a config that differs from the run's (the changes, "
                             "learning rate included, take effect from the next epoch)")
    parser.add_argument("--force", action="store_true",
                        help="start a new run even if the run folder holds one: the old run is moved aside to "
                             "<folder>.moved-<time>, never deleted")
    parser.add_argument("--use_wandb", type=int, default=0, choices=[0, 1])
    parser.add_argument("--num_workers", type=int, default=None, help="override TRAIN.NUM_WORKER")
    parser.add_argument("--strict_data", action="store_true",
                        help="any skipped sequence or bad annotation value is an error (sets DATA.STRICT)")
    parser.add_argument("--collective_timeout", type=collective_timeout, default=DEFAULT_COLLECTIVE_TIMEOUT_S,
                        metavar="SECONDS", help="with --mode multiple: how long a rank waits for the others before "
                                                "the job stops (a frozen process or a lost node)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    launcher, worker_args = launcher_parser().parse_known_args(argv)
    if "-h" in worker_args or "--help" in worker_args:
        print(__doc__)
        launcher_parser().print_help()
    args = worker_parser().parse_args(worker_args)  # bad flags fail here once, not once per rank
    if launcher.mode == "single":
        return train_here(args)
    if os.environ.get(LAUNCH_ID_ENV):  # one rank, started by the launch below
        return run_worker(lambda: train_here(args), debug=args.debug)
    options = LaunchOptions(launcher.nproc_per_node, launcher.nnodes, launcher.node_rank, launcher.master_addr,
                            launcher.master_port, launcher.max_restarts)
    result = launch(options, Path(__file__).resolve(), ["--mode", "multiple", *worker_args],
                    training_run(args.config, args.script, args.save_dir), debug=args.debug,
                    timeout_s=args.collective_timeout)
    if result.message:
        print(f"error: {result.message}", file=sys.stderr)
    return result.exit_code


def train_here(args: argparse.Namespace) -> int:
    """This process's share of the run (all of it, or one torchrun rank)."""
    from lib.train.run_training import train_config

    setup_logging(logging.INFO, "%(asctime)s %(levelname)s %(message)s")
    train_config(args.config, args.script, [*args.opts, *(["DATA.STRICT=true"] if args.strict_data else [])],
                 device=args.device, save_dir=args.save_dir,
                 resume=args.resume, use_wandb=bool(args.use_wandb), num_workers=args.num_workers,
                 progress=not args.no_progress, force=args.force, accept_config_changes=args.accept_config_changes,
                 collective_timeout=args.collective_timeout)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
