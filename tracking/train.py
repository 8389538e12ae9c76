"""Train a tracker: one process, or one per GPU/CPU rank through torchrun (DDP).

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
import os
import subprocess
import sys
from pathlib import Path

import _init_paths  # noqa: F401

from lib.utils.cli import run_main
from lib.utils.errors import UserError


def _split_launcher_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--mode", default="single", choices=["single", "multiple"])
    parser.add_argument("--nproc_per_node", type=int, default=1)
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--node_rank", type=int, default=0)
    parser.add_argument("--master_addr", default="127.0.0.1")
    parser.add_argument("--master_port", type=int, default=29500)
    return parser.parse_known_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    launcher, worker_args = _split_launcher_args(argv)
    if "-h" in worker_args or "--help" in worker_args:
        print(__doc__)
        from lib.train.run_training import parse_args

        parse_args(["--help"])
    if launcher.mode == "single" or os.environ.get("LORETRACK_TORCHRUN_CHILD"):
        from lib.train.run_training import main as run_worker

        return run_worker(worker_args)
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


if __name__ == "__main__":
    raise SystemExit(run_main(main))
