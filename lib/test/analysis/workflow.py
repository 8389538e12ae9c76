"""One analysis as ``tracking/analysis_results.py`` runs it: from the options given to the text and JSON content.

The steps live here, not in the script, so they can be run and tested without a command line. Messages name the
script's flags because that is where a user fixes them. Text goes out through ``say`` as it is produced, so what
was printed before an error (the table that lists the broken result files) still reaches the user.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lib.test.analysis.analysis import AnalysisReport, analyse
from lib.test.analysis.cache import MetricsCache
from lib.test.analysis.report import format_attributes, format_per_sequence, format_report, format_table
from lib.test.analysis.result_files import TrackerSpec
from lib.test.evaluation.data import Sequence
from lib.utils import run_layout
from lib.utils.errors import UserError
from lib.utils.paths import Paths, get_paths

CACHE_FILE_NAME = "metrics_cache.json"
FIRST_FRAME_ONLY_HINT = {"got10k": "tracking/pack_got10k.py", "trackingnet": "tracking/pack_trackingnet.py"}


@dataclass(frozen=True)
class AnalysisRequest:
    """What to analyse and what to produce; the fields mirror the flags of ``tracking/analysis_results.py``."""

    dataset: str
    dataset_root: str | None = None
    sequences: list[str] | None = None  # only these sequences; None: all
    trackers: list[str] = field(default_factory=list)  # our own runs: tracker names ...
    params: list[str] = field(default_factory=list)  # ... with one param each, or one for all
    run_ids: list[int] | None = None
    separate_runs: bool = False  # one row per run id instead of their average
    backend: str = run_layout.DEFAULT_BACKEND
    result_dirs: list[str] = field(default_factory=list)  # other raw results ...
    names: list[str] = field(default_factory=list)  # ... and their display names (none, or one each)
    result_roots: list[str] = field(default_factory=list)  # folders of trackers: one sub-folder each, named by it
    exclude_invalid_frames: bool = False
    skip_failed_sequences: bool = False
    strict_length: bool = False
    use_cache: bool = True
    report_name: str | None = None  # default: the dataset name
    per_sequence: bool = False
    per_attribute: bool = False
    plots: bool = False
    plot_dir: str | None = None  # default: <save_dir>/test/result_plots/<report_name>
    save_dir: str | None = None


@dataclass(frozen=True)
class AnalysisOutcome:
    """The report, its JSON content (what ``--json`` writes) and whether some results could not be scored."""

    report: AnalysisReport
    content: dict

    @property
    def partial(self) -> bool:
        return bool(self.report.failures)


def load_dataset(name: str, paths: Paths, root: str | None = None,
                 sequences: list[str] | None = None) -> list[Sequence]:
    """The benchmark's sequences from the dataset readers (imported lazily: they pull in more dependencies)."""
    from lib.test.evaluation.datasets import get_dataset

    return list(get_dataset(name, paths=paths, root=root, sequences=sequences))


def tracker_specs(request: AnalysisRequest, results_root: Path) -> list[TrackerSpec]:
    """The report's rows; inconsistent options and folders that do not exist are usage errors."""
    specs: list[TrackerSpec] = []
    if request.trackers:
        if len(request.params) not in (1, len(request.trackers)):
            raise UserError(f"{len(request.trackers)} --tracker but {len(request.params)} --param; give one --param "
                            "per --tracker, or a single --param for all")
        params = request.params * len(request.trackers) if len(request.params) == 1 else request.params
        run_ids = request.run_ids
        run_groups = [[run_id] for run_id in run_ids] if request.separate_runs and run_ids else [run_ids]
        for name, param in zip(request.trackers, params, strict=True):
            for group in run_groups:
                specs.append(TrackerSpec.from_run(results_root, name, param, group, backend=request.backend))
    elif request.params or request.run_ids or request.backend != run_layout.DEFAULT_BACKEND:
        raise UserError("--param/--run_ids/--backend need --tracker NAME")
    if request.names and len(request.names) != len(request.result_dirs):
        raise UserError(f"{len(request.result_dirs)} --result_dir but {len(request.names)} --name; give one --name "
                        "per --result_dir, or none")
    names = request.names or [None] * len(request.result_dirs)
    specs += [TrackerSpec.from_folder(Path(folder), name)
              for folder, name in zip(request.result_dirs, names, strict=True)]
    specs += [spec for root in request.result_roots for spec in TrackerSpec.from_root(root)]
    if not specs:
        raise UserError("no results to analyse: give --tracker NAME --param CONFIG, --result_dir PATH and/or "
                        "--result_root DIR")
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


def manifest_warnings(identity: Mapping[str, list[dict]]) -> list[str]:
    """One warning per run folder whose manifest exists but cannot be read (its numbers lose their provenance)."""
    return [f"{run['run_dir']} is scored without its manifest, which cannot be read (reason in --json); restore "
            f"{run_layout.MANIFEST_NAME} or re-run tracking/test.py"
            for runs in identity.values() for run in runs if "manifest_error" in run]


def run_analysis(request: AnalysisRequest, say: Callable[[str], None] = print) -> AnalysisOutcome:
    """Score the requested results and ``say`` the tables; raises :class:`UserError` when nothing can be scored."""
    paths = get_paths(save_dir=request.save_dir)
    report_name = request.report_name or request.dataset
    specs = tracker_specs(request, run_layout.results_root(paths))
    sequences = check_scorable(load_dataset(request.dataset, paths, request.dataset_root, request.sequences),
                               request.dataset)

    report_dir = run_layout.plots_root(paths) / report_name
    cache = MetricsCache(report_dir / CACHE_FILE_NAME, load=request.use_cache)
    if cache.warning:
        say(f"warning: {cache.warning}")
    report = analyse(sequences, specs, report_name, exclude_invalid_frames=request.exclude_invalid_frames,
                     skip_failed_sequences=request.skip_failed_sequences, cache=cache,
                     strict_length=request.strict_length)
    say(format_report(report))
    for mismatch in report.length_mismatches:
        say(f"warning: {mismatch}")
    if not report.scored_trackers or not report.scored_sequences:
        hint = (" or pass --skip_missing_seq to score the sequences all trackers have"
                if any(f.missing for f in report.failures) and not report.skip_failed_sequences else "")
        raise UserError(f"no tracker could be scored; fix the result files listed above{hint}")

    identity = report.identity()
    for warning in manifest_warnings(identity):
        say(f"warning: {warning}")
    content = report.to_dict(identity=identity)
    if all(seq.dataset == "got10k" for seq in sequences):
        text, content["got10k"] = got10k_section(report, specs)
        say(f"\n{text}")
    if request.per_sequence:
        say(f"\n{format_per_sequence(report)}")
    if request.per_attribute:
        say(f"\n{format_attributes(report)}")
    if request.plots:
        from lib.test.analysis.plots import plot_scores

        plot_dir = Path(request.plot_dir) if request.plot_dir else report_dir
        written = plot_scores(report.scores(), plot_dir, report_name)
        say(f"plots: {', '.join(str(p) for p in written)}")
    return AnalysisOutcome(report, content)
