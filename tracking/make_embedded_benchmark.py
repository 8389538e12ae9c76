"""Generate (or reuse) the embedded tracking benchmark: GOT-10k-style sequences built from bundled images.

    python tracking/make_embedded_benchmark.py                        # 40/10/10 sequences, 320x240, 40-80 frames
    python tracking/make_embedded_benchmark.py --train 8 --val 2 --test 2 --size 160x120 --frames 20-30
    ROOT=$(python tracking/make_embedded_benchmark.py --quiet)        # just the benchmark root on stdout

The benchmark is cached under <data root>/embedded/<parameters>/ (or --root); a second run with the same
parameters returns at once, other parameters get their own folder. The printed root has the GOT-10k layout
({train,val,test}/list.txt, ...); unlike the official GOT-10k, its test split has the boxes of every frame.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence

import _init_paths  # noqa: F401
from lib.data.embedded import MANIFEST_NAME, SPLITS, EmbeddedParams, embedded_root, ensure_embedded_benchmark
from lib.utils.cli import OneLineErrorParser, add_common_flags, run_main
from lib.utils.errors import UserError


def _frames(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected N or MIN-MAX frames per sequence, e.g. 40-80; got '{text}'")
    low = int(match.group(1))
    return low, int(match.group(2) or low)


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 320x240; got '{text}'")
    return int(match.group(1)), int(match.group(2))


def _whole(what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.strip().isdigit():
            raise argparse.ArgumentTypeError(f"expected {what} (a whole number >= 0), got '{text}'")
        return int(text)
    return parse


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineErrorParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=_whole("a seed"), default=0, help="random seed (same seed, same files)")
    sequences = _whole("a number of sequences")
    parser.add_argument("--train", type=sequences, default=40, help="training sequences (default 40)")
    parser.add_argument("--val", type=sequences, default=10, help="validation sequences (default 10)")
    parser.add_argument("--test", type=sequences, default=10, help="test sequences (default 10)")
    parser.add_argument("--frames", type=_frames, default=(40, 80), help="frames per sequence, N or MIN-MAX "
                        "(default 40-80, at least 20)")
    parser.add_argument("--size", type=_size, default=(320, 240), help="frame size WIDTHxHEIGHT (default 320x240)")
    parser.add_argument("--root", default=None, help="cache folder (default <data root>/embedded)")
    parser.add_argument("--workers", type=_whole("a number of processes"), default=None,
                        help="worker processes (default: one per core)")
    parser.add_argument("--force", action="store_true", help="regenerate even if a cached copy exists")
    parser.add_argument("--quiet", action="store_true", help="print only the benchmark root")
    add_common_flags(parser, "debug")
    args = parser.parse_args(argv)
    if args.workers == 0:
        raise UserError("--workers must be at least 1")
    params = EmbeddedParams(seed=args.seed, num_train=args.train, num_val=args.val, num_test=args.test,
                            frames=args.frames, size=args.size)  # validates before anything is written
    root = ensure_embedded_benchmark(embedded_root(args.root), seed=params.seed, num_train=params.num_train,
                                     num_val=params.num_val, num_test=params.num_test, frames=params.frames,
                                     size=params.size, progress=not args.quiet, workers=args.workers,
                                     force=args.force)
    if not args.quiet:
        manifest = json.loads((root / MANIFEST_NAME).read_text())
        for split in SPLITS:
            info = manifest["splits"][split]
            print(f"{split:>5}: {info['sequences']} sequences, {info['frames']} frames, "
                  f"{info['with_occluder']} with an occluder, {info['with_distractor']} with a distractor, "
                  f"{info['absent_frames']} frames fully hidden", file=sys.stderr)
    print(root)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
