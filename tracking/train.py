r"""Train a tracker: one process, or one per GPU/CPU rank through torchrun (DDP).

    python tracking/train.py --script ostrack --config vitb_256_mae_ce_32x4_ep300 --save_dir ./output \
        --mode multiple --nproc_per_node 4 [--nnodes 2 --node_rank 0 --master_addr HOST --master_port 29500] \
        [--use_wandb 0|1] [--resume [--accept_config_changes]] [--force]

``--mode multiple`` re-launches this script under ``torch.distributed.run`` with the same arguments, so one
command scales from a laptop to several machines. Any further ``KEY=VALUE`` after ``--opts`` overrides
the config (e.g. ``--opts TRAIN.EPOCH=10 TRAIN.BATCH_SIZE=8``). A run folder that holds another run's
checkpoints is never written over: ``--resume`` continues that run, ``--force`` moves it aside first.
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

import _init_paths  # noqa: F401
from lib.utils.cli import base_parser, run_main
from lib.utils.errors import UserError


def launcher_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("launcher (torchrun)")
    group.add_argument("--mode", default="single", choices=["single", "multiple"])
    group.add_argument("--nproc_per_node", type=int, default=1)
    group.add_argument("--nnodes", type=int, default=1)
    group.add_argument("--node_rank", type=int, default=0)
    group.add_argument("--master_addr", default="127.0.0.1")
    group.add_argument("--master_port", type=int, default=29500)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    launcher, worker_args = launcher_parser().parse_known_args(argv)
    if "-h" in worker_args or "--help" in worker_args:
        print(__doc__)
        launcher_parser().print_help()
    if launcher.mode == "single" or os.environ.get("LORETRACK_TORCHRUN_CHILD"):
        return train_here(worker_parser().parse_args(worker_args))
    if launcher.nproc_per_node < 1 or launcher.nnodes < 1:
        raise UserError("--nproc_per_node and --nnodes must be at least 1")
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={launcher.nproc_per_node}",
               f"--nnodes={launcher.nnodes}", f"--node_rank={launcher.node_rank}",
               f"--master_addr={launcher.master_addr}", f"--master_port={launcher.master_port}",
               str(Path(__file__).resolve()), *worker_args]
    env = dict(os.environ, LORETRACK_TORCHRUN_CHILD="1")
    env.setdefault("GLOO_SOCKET_IFNAME", "lo" if launcher.master_addr in ("127.0.0.1", "localhost") else "")
    if not env["GLOO_SOCKET_IFNAME"]:
        env.pop("GLOO_SOCKET_IFNAME")
    print(" ".join(command), flush=True)
    return subprocess.call(command, env=env)


def train_here(args: argparse.Namespace) -> int:
    """This process's share of the run (all of it, or one torchrun rank)."""
    from lib.train.run_training import train_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    train_config(args.config, args.script, args.opts, device=args.device, save_dir=args.save_dir,
                 resume=args.resume, use_wandb=bool(args.use_wandb), num_workers=args.num_workers,
                 progress=not args.no_progress, force=args.force, accept_config_changes=args.accept_config_changes)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
