"""Score tracking results on a benchmark and print OSTrack's table (AUC, OP50, OP75, Precision, Norm Precision).

    python tracking/analysis_results.py --dataset lasot --tracker ostrack --param vitb_256_mae_ce_32x4_ep300
    python tracking/analysis_results.py --dataset otb --tracker ostrack --param vitb_256 --run_ids 0 1 2 \\
        --result_dir /data/raw_results/ATOM --name ATOM --plots --json otb_report.json

    python tracking/analysis_results.py --dataset lasot --result_root /data/published_lasot --plots --json cmp.json

Our own runs are found under <save_dir>/test/tracking_results/<tracker>/<param>[_<run:03d>][_<backend>];
several --run_ids are merged by averaging their per-sequence curves. Any folder of raw results can be added with
--result_dir (and --name), and a folder of such folders, one per tracker named after it, with --result_root.
Raw results are read as other toolkits write them: <seq>.txt or got10k-toolkit's <seq>/<seq>_001.txt, any case,
'-', '.' or '_' (Human4-2, jogging-1, Skating2.1 for Human4_2, Jogging_1, Skating2_1), a benchmark prefix
(uav_bike1), Human4 for OTB's Human4_2, tab/comma/space delimiters; files of other sequences are ignored. Two
files for one sequence are an error naming both. The rules: lib/test/analysis/result_files.py.

Every tracker in the table is scored on the same sequences. A tracker missing some sequences is left out of the
table and listed with the sequences it lacks (also in --json, "missing_sequences"); --skip_missing_seq instead
scores every tracker on the sequences all of them have. Per-sequence metrics are cached by the content of each
result file, so re-running a tracker never reuses stale numbers; --no_cache (alias --force) ignores the cache.

A result file with fewer rows than ground-truth frames is padded with failures, a longer one truncated, as the
reference toolkit does; each such file is named in a warning (and in --json), and --strict makes it invalid.
--json also records what was scored: each run folder's manifest (config digest, checkpoint, back-end, code),
or, for results made elsewhere, the SHA-256 of the result files.

Exit status: 0 when every tracker was scored on every sequence; 1 when some result files were missing or
invalid (they are listed, the others are scored); 2 on a usage error or when nothing could be scored.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence

import _init_paths  # noqa: F401
from lib.test.analysis.report import write_json
from lib.test.analysis.workflow import AnalysisRequest, run_analysis
from lib.utils import run_layout
from lib.utils.cli import add_common_flags, base_parser, run_main

EXIT_PARTIAL = 1


def build_parser() -> argparse.ArgumentParser:
    """The flags, grouped as the help shows them; the module docstring is the help's description and epilog."""
    lines = __doc__.splitlines()
    parser = base_parser(lines[0], "save_dir", epilog="\n".join(lines[1:]))
    parser.add_argument("--dataset", required=True, help="benchmark name, e.g. lasot, otb, uav, got10k_val")
    parser.add_argument("--dataset_root", default=None, help="benchmark folder (default: from the path settings)")
    ours = parser.add_argument_group("our own runs")
    ours.add_argument("--tracker", action="append", default=[], help="tracker name (repeatable)")
    ours.add_argument("--param", action="append", default=[],
                      help="parameter/config name, one per --tracker or one for all")
    ours.add_argument("--run_ids", type=int, nargs="+", default=None,
                      help="run ids to merge (results in <param>_<run:03d>); default: the run without id")
    ours.add_argument("--separate_runs", action="store_true", help="one table row per run id instead of merging")
    ours.add_argument("--backend", default=run_layout.DEFAULT_BACKEND,
                      help="back-end the runs were made with (tracking/test.py --backend): <param>_<backend>")
    other = parser.add_argument_group("other raw results")
    other.add_argument("--result_dir", action="append", default=[], help="folder of <seq>.txt files (repeatable)")
    other.add_argument("--name", action="append", default=[], help="display name for each --result_dir, in order")
    other.add_argument("--result_root", action="append", default=[],
                       help="folder of trackers: each sub-folder is one tracker's raw results, named after it "
                            "(repeatable)")
    options = parser.add_argument_group("evaluation")
    options.add_argument("--exclude_invalid_frames", action="store_true",
                         help="divide by the number of valid frames instead of all frames (OSTrack option)")
    options.add_argument("--skip_missing_seq", action="store_true",
                         help="drop sequences with a missing/invalid result for ALL trackers (default: leave out "
                              "the tracker that lacks them)")
    options.add_argument("--sequences", nargs="+", default=None, help="evaluate only these sequences")
    options.add_argument("--strict", action="store_true",
                         help="a result file with more or fewer rows than ground-truth frames is invalid instead of "
                              "being truncated or padded with failures")
    options.add_argument("--no_cache", "--force", dest="no_cache", action="store_true",
                         help="recompute every per-sequence metric instead of reading the cache (which is rewritten)")
    output = parser.add_argument_group("output")
    output.add_argument("--report_name", default=None, help="table title and plot sub-folder (default: --dataset)")
    output.add_argument("--per_sequence", action="store_true", help="print the average overlap of each sequence")
    output.add_argument("--per_attribute", action="store_true", help="print scores per attribute (OTB, UAV, LaSOT)")
    output.add_argument("--plots", action="store_true", help="write success / precision plots (PNG + PDF)")
    output.add_argument("--plot_dir", default=None,
                        help="folder for plots (default: <save_dir>/test/result_plots/<report_name>)")
    add_common_flags(output, "json")
    return parser


def request_from(args: argparse.Namespace) -> AnalysisRequest:
    """The library's request for the parsed flags (flag names stay OSTrack's; field names say what they do)."""
    return AnalysisRequest(
        dataset=args.dataset, dataset_root=args.dataset_root, sequences=args.sequences,
        trackers=args.tracker, params=args.param, run_ids=args.run_ids, separate_runs=args.separate_runs,
        backend=args.backend, result_dirs=args.result_dir, names=args.name, result_roots=args.result_root,
        exclude_invalid_frames=args.exclude_invalid_frames, skip_failed_sequences=args.skip_missing_seq,
        strict_length=args.strict, use_cache=not args.no_cache, report_name=args.report_name,
        per_sequence=args.per_sequence, per_attribute=args.per_attribute, plots=args.plots, plot_dir=args.plot_dir,
        save_dir=args.save_dir)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    outcome = run_analysis(request_from(args), say=print)
    if args.json:
        print(f"report: {write_json(args.json, outcome.content)}")
    return EXIT_PARTIAL if outcome.partial else 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
