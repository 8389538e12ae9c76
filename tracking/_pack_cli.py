"""The command line of ``pack_got10k.py`` and ``pack_trackingnet.py``, declared once: they differ only in the
benchmark they pack for."""
from __future__ import annotations

import argparse
from collections.abc import Sequence

import _init_paths  # noqa: F401
from lib.test.utils.packing import pack_results, results_folder_to_pack
from lib.utils import run_layout
from lib.utils.cli import base_parser


def build_parser(description: str) -> argparse.ArgumentParser:
    """The packers' flags: where the results are (our run or any folder) and where the zip goes."""
    parser = base_parser(description, "save_dir")
    source = parser.add_argument_group("results to pack (either --tracker/--param or --result_dir)")
    source.add_argument("--tracker", help="tracker name, e.g. ostrack")
    source.add_argument("--param", help="parameter/config name, e.g. vitb_256_mae_ce_32x4_ep300")
    source.add_argument("--run_id", type=int, default=None, help="run id the results were written with")
    source.add_argument("--backend", default=run_layout.DEFAULT_BACKEND,
                        help="back-end the results were written with (tracking/test.py --backend)")
    source.add_argument("--result_dir", help="any folder of <seq>.txt results (instead of --tracker/--param)")
    parser.add_argument("--output", default=None, help="zip to write (default: <result folder>_submit.zip beside it)")
    parser.add_argument("--force", action="store_true", help="replace the zip if it exists (results are never touched)")
    return parser


def pack_command(argv: Sequence[str] | None, tag: str, description: str) -> int:
    """Parse ``argv``, pack the ``tag`` results it names and print what was packed."""
    args = build_parser(description).parse_args(argv)
    folder = results_folder_to_pack(tag, args.result_dir, args.tracker, args.param, args.run_id, args.backend,
                                    args.save_dir)
    summary = pack_results(tag, folder, args.output, args.force)
    for warning in summary.warnings:
        print(f"warning: {warning}")
    print(f"packed {len(summary.sequences)} sequences from {folder} into {summary.zip_path}")
    return 0
