"""Score tracking results on a benchmark and print OSTrack's table (AUC, OP50, OP75, Precision, Norm Precision).

    python tracking/analysis_results.py --dataset lasot --tracker ostrack --param vitb_256_mae_ce_32x4_ep300
    python tracking/analysis_results.py --dataset otb --tracker ostrack --param vitb_256 --run_ids 0 1 2 \\
        --result_dir /data/raw_results/ATOM --name ATOM --plots --json otb_report.json

Our own runs are found under <save_dir>/test/tracking_results/<tracker>/<param>[_<run:03d>][_<backend>];
several --run_ids are merged by averaging their per-sequence curves. Any folder of raw <seq>.txt files can be
added with --result_dir (and --name). Per-sequence metrics are cached by the content of each result file, so
re-running a tracker never reuses stale numbers; --no_cache (alias --force) ignores the cache.

A result file with fewer rows than ground-truth frames is padded with failures, a longer one truncated, as the
reference toolkit does; each such file is named in a warning (and in --json), and --strict makes it invalid.
--json also records what was scored: each run folder's manifest (config digest, checkpoint, back-end, code),
or, for results made elsewhere, the SHA-256 of the result files.

Exit status: 0 when every tracker was scored on every sequence; 1 when some result files were missing or
invalid (they are listed, the others are scored); 2 on a usage error or when nothing could be scored.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence as SequenceType

import _init_paths  # noqa: F401

from lib.test.analysis.results import (AnalysisReport, MetricsCache, TrackerSpec, analyse, format_attributes,
                                       format_per_sequence, format_report, format_table, write_json)
from lib.test.evaluation.data import Sequence
from lib.utils import run_layout
from lib.utils.cli import run_main
from lib.utils.errors import UserError
from lib.utils.paths import Paths, get_paths

EXIT_PARTIAL = 1
CACHE_FILE_NAME = "metrics_cache.json"
FIRST_FRAME_ONLY_HINT = {"got10k": "tracking/pack_got10k.py", "trackingnet": "tracking/pack_trackingnet.py"}


def load_dataset(name: str, paths: Paths, root: str | None = None,
                 sequences: SequenceType[str] | None = None) -> list[Sequence]:
    """The benchmark's sequences from the dataset readers (imported lazily: they pull in more dependencies)."""
    from lib.test.evaluation.datasets import get_dataset

    return list(get_dataset(name, paths=paths, root=root, sequences=sequences))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
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
    output.add_argument("--json", default=None, help="write every number of the report to this JSON file")
    parser.add_argument("--save_dir", default=None, help="output root (default: from settings / LORETRACK_SAVE_DIR)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def tracker_specs(args: argparse.Namespace, paths: Paths) -> list[TrackerSpec]:
    """Trackers named on the command line; folders that do not exist are a usage error."""
    specs: list[TrackerSpec] = []
    if args.tracker:
        if len(args.param) not in (1, len(args.tracker)):
            raise UserError(f"{len(args.tracker)} --tracker but {len(args.param)} --param; give one --param per "
                            "--tracker, or a single --param for all")
        params = args.param * len(args.tracker) if len(args.param) == 1 else args.param
        run_groups = [[run_id] for run_id in args.run_ids] if args.separate_runs and args.run_ids else [args.run_ids]
        for name, param in zip(args.tracker, params):
            for run_ids in run_groups:
                specs.append(TrackerSpec.from_run(run_layout.results_root(paths), name, param, run_ids,
                                                  backend=args.backend))
    elif args.param or args.run_ids or args.backend != run_layout.DEFAULT_BACKEND:
        raise UserError("--param/--run_ids/--backend need --tracker NAME")
    if args.name and len(args.name) != len(args.result_dir):
        raise UserError(f"{len(args.result_dir)} --result_dir but {len(args.name)} --name; give one --name per "
                        "--result_dir, or none")
    names = args.name or [None] * len(args.result_dir)
    specs += [TrackerSpec.from_folder(Path(folder), name) for folder, name in zip(args.result_dir, names)]
    if not specs:
        raise UserError("no results to analyse: give --tracker NAME --param CONFIG and/or --result_dir PATH")
    for spec in specs:
        for run_dir in spec.run_dirs:
            if not run_dir.is_dir():
                raise UserError(f"no results for '{spec.display_name}': folder {run_dir} does not exist; run "
                                "tracking/test.py first, or fix --tracker/--param/--run_ids/--backend/--result_dir/"
                                "--save_dir")
    return specs


def check_scorable(sequences: list[Sequence], dataset: str) -> list[Sequence]:
    """Test splits that publish only the first box cannot be scored locally; say where they are scored."""
    first_frame_only = [seq for seq in sequences if len(seq.ground_truth_rect) < 2]
    if first_frame_only:
        tag = first_frame_only[0].dataset
        hint = FIRST_FRAME_ONLY_HINT.get(tag)
        raise UserError(f"dataset '{dataset}' publishes only first-frame boxes ({len(first_frame_only)} sequences), "
                        "so it is scored by its evaluation server"
                        + (f": pack the results with {hint} and submit the zip" if hint else ""))
    return sequences


def got10k_section(report: AnalysisReport, specs: list[TrackerSpec]) -> tuple[str, dict]:
    """GOT-10k's own AO / SR numbers (frame-pooled, cover-filtered) in addition to OPE, for validation runs."""
    from lib.test.analysis.got10k import evaluate_got10k, got10k_rows

    scored = {t.name for t in report.scored_trackers}
    got_reports = {spec.display_name: evaluate_got10k(report.sequences, spec.run_dirs)
                   for spec in specs if spec.display_name in scored}
    lines = [format_table(f"{report.report_name} (GOT-10k)", got10k_rows(got_reports),
                          ("AO", "SR0.50", "SR0.75", "FPS"))]
    for name, got_report in got_reports.items():
        lines.extend(f"  GOT-10k numbers of '{name}' leave out: {failure}" for failure in got_report.failures)
    content = {name: {"overall": r.overall.as_dict(),
                      "seq_wise": {seq: scores.as_dict() for seq, scores in r.per_sequence.items()},
                      "failures": [str(f) for f in r.failures]} for name, r in got_reports.items()}
    return "\n".join(lines), content


def main(argv: SequenceType[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    paths = get_paths(save_dir=args.save_dir)
    report_name = args.report_name or args.dataset
    specs = tracker_specs(args, paths)
    sequences = check_scorable(load_dataset(args.dataset, paths, args.dataset_root, args.sequences), args.dataset)

    report_dir = run_layout.plots_root(paths) / report_name
    cache = MetricsCache(report_dir / CACHE_FILE_NAME, load=not args.no_cache)
    if cache.warning:
        print(f"warning: {cache.warning}")
    report = analyse(sequences, specs, report_name, exclude_invalid_frames=args.exclude_invalid_frames,
                     skip_failed_sequences=args.skip_missing_seq, cache=cache, strict_length=args.strict)
    print(format_report(report))
    for mismatch in report.length_mismatches:
        print(f"warning: {mismatch}")
    if not report.scored_trackers or not report.scored_sequences:
        raise UserError("no tracker could be scored; fix the result files listed above")

    identity = report.identity()
    for runs in identity.values():
        for run in runs:
            if "manifest_error" in run:
                print(f"warning: {run['run_dir']} is scored without its manifest, which cannot be read (reason in "
                      f"--json); restore {run_layout.MANIFEST_NAME} or re-run tracking/test.py")
    content = report.to_dict(identity=identity)
    if all(seq.dataset == "got10k" for seq in sequences):
        text, content["got10k"] = got10k_section(report, specs)
        print()
        print(text)
    if args.per_sequence:
        print()
        print(format_per_sequence(report))
    if args.per_attribute:
        print()
        print(format_attributes(report))
    if args.plots:
        from lib.test.analysis.plots import plot_scores

        plot_dir = Path(args.plot_dir) if args.plot_dir else report_dir
        written = plot_scores(report.scores(), plot_dir, report_name)
        print(f"plots: {', '.join(str(p) for p in written)}")
    if args.json:
        print(f"report: {write_json(args.json, content)}")
    return EXIT_PARTIAL if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
