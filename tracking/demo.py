"""Smoke run of the tracking network on a generated clip (the full LoReTrack demo will replace it).

    python tracking/demo.py [--config vitb_256_mae_ce_32x4_ep300] [--checkpoint PATH] [--frames 30]

Builds the tracker from an experiment config (random weights unless --checkpoint is given), tracks a
textured square moving over a textured background and prints the boxes' IoU with the true motion and the
tracker's speed. Without trained weights the IoU is meaningless; the run proves the install, the
network and the tracker end to end.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import _init_paths  # noqa: F401

from lib.config import load_config
from lib.test.tracker import OSTrackTracker
from lib.utils.cli import run_main
from lib.utils.errors import UserError
from lib.utils.synthetic import moving_square_clip


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    tl = np.maximum(a[:, :2], b[:, :2])
    br = np.minimum(a[:, :2] + a[:, 2:], b[:, :2] + b[:, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=1)
    return inter / (a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="vitb_256_mae_ce_32x4_ep300", help="experiment name or YAML path")
    parser.add_argument("--script", default="ostrack", help="experiments/<script>/ folder to look in")
    parser.add_argument("--checkpoint", default=None, help="weights to load (official .pth.tar, ours)")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    if args.frames < 2:
        raise UserError("--frames must be at least 2")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but no CUDA GPU is available; use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(args.config, script=args.script)
    tracker = OSTrackTracker.from_config(cfg, checkpoint=args.checkpoint, device=args.device)
    frames, truth = moving_square_clip(args.frames)
    print(f"config {args.config}: template {cfg.TEST.TEMPLATE_SIZE} px, search {cfg.TEST.SEARCH_SIZE} px, "
          f"ViT {cfg.MODEL.BACKBONE.EMBED_DIM}x{cfg.MODEL.BACKBONE.DEPTH}, "
          f"weights: {args.checkpoint or 'random (no --checkpoint)'}")
    boxes = [tracker.initialize(frames[0], {"init_bbox": truth[0].tolist()})["target_bbox"]]
    times = []
    for frame in frames[1:]:
        start = time.perf_counter()
        boxes.append(tracker.track(frame)["target_bbox"])
        if args.device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    overlaps = iou(np.array(boxes), truth)
    warm = times[1:] or times
    print(f"tracked {len(frames)} frames: mean IoU {overlaps[1:].mean():.3f}, "
          f"{1.0 / np.median(warm):.1f} fps (median {1000 * np.median(warm):.1f} ms/frame on {args.device})")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
