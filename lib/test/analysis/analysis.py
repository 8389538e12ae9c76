"""Scoring every tracker on every sequence, collecting what failed, and aggregating the scores.

Broken results never abort an analysis. Every unreadable, missing or unscorable file becomes a
:class:`ResultFailure` that names tracker, sequence, file and reason. Every number in one table is over the same
sequences, so trackers stay comparable: by default a tracker with any failure (e.g. published results that lack
some sequences) is left out of the table, with its missing sequences and other reasons listed, and the others
are scored on all sequences; with ``skip_failed_sequences`` (OSTrack's ``skip_missing_seq``) such sequences are
dropped for *all* trackers instead, so every tracker is scored on the common subset, which the report names.
Only annotation errors (e.g. NaN boxes in a benchmark other than UAV123) and ambiguous result folders (two files
for one sequence) abort, because no choice would be right.

A result file longer or shorter than the ground truth is truncated or padded with failures, as the reference
toolkit does (so scores stay comparable), and listed as a :class:`LengthMismatch`; ``strict_length`` makes it
a failure instead. The report also tells what was scored: each run folder's manifest, or a digest of its files.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Sequence as SequenceType
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lib.test.analysis.cache import MetricsCache, sequence_fingerprint
from lib.test.analysis.metrics import (
    CENTER_THRESHOLDS,
    NORM_CENTER_THRESHOLDS,
    OP50_INDEX,
    OP75_INDEX,
    OVERLAP_THRESHOLDS,
    PRECISION_INDEX,
    InvalidResultError,
    SequenceMetrics,
    evaluate_sequence,
    length_fix,
    mean_metrics,
)
from lib.test.analysis.result_files import (
    ResultFiles,
    ResultFolder,
    TrackerSpec,
    decode,
    names_needing_exact_match,
    parse_result_boxes,
    parse_times,
    read_bytes,
)
from lib.test.evaluation.data import Sequence
from lib.utils.errors import UserError
from lib.utils.provenance import ManifestError, files_digest, read_manifest
from lib.utils.run_layout import MANIFEST_NAME


@dataclass(frozen=True)
class ResultFailure:
    """Why one tracker could not be scored on one sequence."""

    tracker: str
    sequence: str
    path: Path | None
    reason: str

    @property
    def missing(self) -> bool:
        """No result file at all (rather than a file that cannot be scored)."""
        return self.path is None

    def __str__(self) -> str:
        where = f"{self.path}" if self.path is not None else "no result file"
        return f"tracker '{self.tracker}', sequence '{self.sequence}' ({where}): {self.reason}"


@dataclass(frozen=True)
class LengthMismatch:
    """A result file whose row count differs from the ground truth; scored after padding or truncating it."""

    tracker: str
    sequence: str
    path: Path
    rows: int
    expected_rows: int

    @property
    def fix(self) -> str:
        return length_fix(self.rows, self.expected_rows) or ""

    def __str__(self) -> str:
        return (f"{self.path}: {self.rows} rows for {self.expected_rows} ground-truth frames (tracker "
                f"'{self.tracker}', sequence '{self.sequence}'); {self.fix} as the reference toolkit does")

    def as_dict(self) -> dict:
        return {"tracker": self.tracker, "sequence": self.sequence, "path": str(self.path), "rows": self.rows,
                "expected_rows": self.expected_rows, "fix": self.fix}


@dataclass(frozen=True)
class Scores:
    """Dataset-level numbers in percent (OSTrack's table) plus the mean curves."""

    auc: float
    op50: float
    op75: float
    precision: float
    norm_precision: float
    success_curve: np.ndarray
    precision_curve: np.ndarray
    norm_precision_curve: np.ndarray
    num_sequences: int
    fps: float | None = None

    def as_dict(self) -> dict:
        return {"AUC": self.auc, "OP50": self.op50, "OP75": self.op75, "Precision": self.precision,
                "Norm Precision": self.norm_precision, "FPS": self.fps, "num_sequences": self.num_sequences,
                "success_curve": self.success_curve.tolist(), "precision_curve": self.precision_curve.tolist(),
                "norm_precision_curve": self.norm_precision_curve.tolist()}


def aggregate(metrics: Iterable[SequenceMetrics], fps: float | None = None) -> Scores:
    """Unweighted mean over sequences; AUC is the mean of the 21 success points (not a trapezoid)."""
    metrics = list(metrics)
    if not metrics:
        raise UserError("no sequence left to score; check the result files listed above")
    success = np.mean([m.success for m in metrics], axis=0) * 100.0
    precision = np.mean([m.precision for m in metrics], axis=0) * 100.0
    norm_precision = np.mean([m.norm_precision for m in metrics], axis=0) * 100.0
    return Scores(auc=float(success.mean()), op50=float(success[OP50_INDEX]), op75=float(success[OP75_INDEX]),
                  precision=float(precision[PRECISION_INDEX]), norm_precision=float(norm_precision[PRECISION_INDEX]),
                  success_curve=success, precision_curve=precision, norm_precision_curve=norm_precision,
                  num_sequences=len(metrics), fps=fps)


@dataclass
class TrackerResult:
    """Per-sequence metrics of one tracker (runs merged), its failures and its timing."""

    spec: TrackerSpec
    per_sequence: dict[str, SequenceMetrics] = field(default_factory=dict)
    failures: list[ResultFailure] = field(default_factory=list)
    frames_timed: dict[str, tuple[int, float]] = field(default_factory=dict)  # seq -> (frames, seconds)
    length_mismatches: list[LengthMismatch] = field(default_factory=list)
    scored_files: dict[Path, list[Path]] = field(default_factory=dict)  # run folder -> box files scored

    @property
    def name(self) -> str:
        return self.spec.display_name

    def identity(self) -> list[dict]:
        """What was scored, per run folder (see :func:`run_identity`)."""
        return [run_identity(run_dir, self.scored_files.get(run_dir, [])) for run_dir in self.spec.run_dirs]

    def fps(self, sequence_names: Iterable[str]) -> float | None:
        """Frames per second over the given sequences that have time files (total frames / total seconds)."""
        timed = [self.frames_timed[name] for name in sequence_names if name in self.frames_timed]
        seconds = sum(t for _, t in timed)
        return sum(n for n, _ in timed) / seconds if timed and seconds > 0 else None


@dataclass
class AnalysisReport:
    """Everything one analysis produced; scores are computed on :attr:`scored_sequences`."""

    report_name: str
    sequences: list[Sequence]
    trackers: list[TrackerResult]
    scored_sequences: list[str]
    exclude_invalid_frames: bool
    skip_failed_sequences: bool
    strict_length: bool = False

    @property
    def failures(self) -> list[ResultFailure]:
        return [f for t in self.trackers for f in t.failures]

    @property
    def length_mismatches(self) -> list[LengthMismatch]:
        return [m for t in self.trackers for m in t.length_mismatches]

    def identity(self) -> dict[str, list[dict]]:
        """Tracker -> what each of its run folders holds (manifest identity or files digest)."""
        return {t.name: t.identity() for t in self.trackers}

    @property
    def scored_trackers(self) -> list[TrackerResult]:
        """Trackers that have metrics for every scored sequence."""
        return [t for t in self.trackers if all(name in t.per_sequence for name in self.scored_sequences)]

    @property
    def dropped_trackers(self) -> list[TrackerResult]:
        scored = {id(t) for t in self.scored_trackers}
        return [t for t in self.trackers if id(t) not in scored]

    def scores(self, sequence_names: Iterable[str] | None = None) -> dict[str, Scores]:
        names = list(self.scored_sequences if sequence_names is None else sequence_names)
        return {t.name: aggregate((t.per_sequence[n] for n in names), fps=t.fps(names))
                for t in self.scored_trackers}

    def attribute_scores(self) -> dict[str, dict[str, Scores]]:
        """Scores per attribute (``Sequence.extras['attributes']``), over scored sequences that have it."""
        scored = set(self.scored_sequences)
        members: dict[str, list[str]] = {}
        for seq in self.sequences:
            if seq.name in scored:
                for attribute in sequence_attributes(seq):
                    members.setdefault(attribute, []).append(seq.name)
        return {attribute: self.scores(names) for attribute, names in sorted(members.items())}

    def per_sequence_table(self) -> dict[str, dict[str, dict[str, float]]]:
        """sequence -> tracker -> {avg_overlap, auc, precision, norm_precision} in percent."""
        table: dict[str, dict[str, dict[str, float]]] = {}
        for seq in self.sequences:
            row = {}
            for tracker in self.trackers:
                m = tracker.per_sequence.get(seq.name)
                if m is not None:
                    row[tracker.name] = {"avg_overlap": m.avg_overlap * 100.0, "auc": m.auc * 100.0,
                                         "precision": float(m.precision[PRECISION_INDEX]) * 100.0,
                                         "norm_precision": float(m.norm_precision[PRECISION_INDEX]) * 100.0}
            table[seq.name] = row
        return table

    def to_dict(self, per_sequence: bool = True, per_attribute: bool = True,
                identity: Mapping[str, list[dict]] | None = None) -> dict:
        """Every number of the report; ``identity`` (default: computed now) tells what each run folder holds."""
        scored = set(self.scored_sequences)
        content = {
            "report": self.report_name,
            "options": {"exclude_invalid_frames": self.exclude_invalid_frames,
                        "skip_failed_sequences": self.skip_failed_sequences, "strict_length": self.strict_length},
            "thresholds": {"overlap": OVERLAP_THRESHOLDS.tolist(), "center_px": CENTER_THRESHOLDS.tolist(),
                           "center_normalized": NORM_CENTER_THRESHOLDS.tolist()},
            "num_sequences": len(self.sequences),
            "scored_sequences": self.scored_sequences,
            "skipped_sequences": [s.name for s in self.sequences if s.name not in scored],
            "scores": {name: s.as_dict() for name, s in self.scores().items()},
            "dropped_trackers": {t.name: [str(f) for f in t.failures] for t in self.dropped_trackers},
            "missing_sequences": {t.name: [f.sequence for f in t.failures if f.missing] for t in self.trackers
                                  if any(f.missing for f in t.failures)},
            "failures": [str(f) for f in self.failures],
            "length_mismatches": [m.as_dict() for m in self.length_mismatches],
            "identity": dict(self.identity() if identity is None else identity),
        }
        if per_sequence:
            content["per_sequence"] = self.per_sequence_table()
        if per_attribute:
            content["per_attribute"] = {attribute: {name: s.as_dict() for name, s in scores.items()}
                                        for attribute, scores in self.attribute_scores().items()}
        return content


def sequence_attributes(seq: Sequence) -> list[str]:
    """Attribute names that hold for ``seq``; readers store a name->bool dict (a list of names also works)."""
    attributes = seq.extras.get("attributes") or {}
    if isinstance(attributes, Mapping):
        return [str(name) for name, present in attributes.items() if bool(present)]
    return [str(name) for name in attributes]


MANIFEST_IDENTITY_KEYS = ("kind", "config_digest", "config_file", "checkpoint", "backend", "datasets", "started",
                          "finished")


def manifest_identity(manifest: Mapping) -> dict:
    """The fields of a results manifest that say which weights, settings and code made the numbers."""
    identity = {key: manifest.get(key) for key in MANIFEST_IDENTITY_KEYS}
    environment = manifest.get("environment") or {}
    identity["code"] = environment.get("code")
    return identity


def run_identity(run_dir: Path, scored_files: SequenceType[Path]) -> dict:
    """One run folder's identity: its manifest's identity (``None`` for results made elsewhere, or the error
    when it is unreadable) and the SHA-256 of the result files scored, which identifies them even without one."""
    identity: dict = {"run_dir": str(run_dir)}
    try:
        manifest = read_manifest(run_dir / MANIFEST_NAME)
        identity["manifest"] = None if manifest is None else manifest_identity(manifest)
    except ManifestError as err:
        identity["manifest"] = None
        identity["manifest_error"] = str(err)
    files = sorted(set(scored_files))
    identity["files_digest"] = files_digest(files, run_dir)
    identity["num_files"] = len(files)
    return identity


@dataclass(frozen=True)
class ScoredRun:
    """Metrics of one run on one sequence and the file (with its row count) they come from."""

    metrics: SequenceMetrics
    path: Path
    rows: int


def score_file(path: Path, seq: Sequence, gt_fingerprint: str, cache: MetricsCache,
               exclude_invalid_frames: bool) -> ScoredRun:
    """Score one result file on one sequence; raises :class:`InvalidResultError` with the file in the message."""
    data = read_bytes(path)
    key = cache.metrics_key(data, gt_fingerprint, exclude_invalid_frames)
    cached = cache.get_metrics(key)
    if cached is not None:
        return ScoredRun(cached[0], path, cached[1])
    try:
        boxes = parse_result_boxes(decode(data, path), path)
        metrics = evaluate_sequence(boxes, seq.ground_truth_rect, seq.dataset, seq.target_visible,
                                    exclude_invalid_frames)
    except InvalidResultError as err:
        raise err.at(path) from None
    cache.put_metrics(key, metrics, len(boxes))
    return ScoredRun(metrics, path, len(boxes))


def score_files(folder: ResultFolder, seq: Sequence, gt_fingerprint: str, cache: MetricsCache,
                exclude_invalid_frames: bool, strict_length: bool) -> tuple[list[ScoredRun], ResultFiles]:
    """Score every repetition of ``seq`` in one run folder; a missing or invalid file raises InvalidResultError."""
    files = folder.find(seq.name, seq.dataset)
    if files is None:
        raise folder.missing_error(seq.name)
    runs = [score_file(path, seq, gt_fingerprint, cache, exclude_invalid_frames) for path in files.box_files]
    for run in runs:
        check_length(run, seq, strict_length)
    return runs, files


def check_length(run: ScoredRun, seq: Sequence, strict: bool) -> None:
    """With ``strict``, a result whose row count differs from the ground truth is an error, not padded/cut."""
    expected = len(seq.ground_truth_rect)
    if strict and run.rows != expected:
        raise InvalidResultError(f"{run.rows} lines for {expected} ground-truth frames; --strict scores only "
                                 "results with one line per frame: re-run the tracker on this sequence", run.path)


def read_timing(path: Path | None, cache: MetricsCache) -> tuple[int, float] | None:
    """(frames, seconds) from a time file, or None when there is none or it is unusable."""
    if path is None:
        return None
    try:
        data = read_bytes(path)
    except InvalidResultError:
        return None
    key = cache.timing_key(data)
    entry = cache.get(key)
    if entry is None:
        try:
            times = parse_times(decode(data, path), path)
        except InvalidResultError:
            return None
        times = times[np.isfinite(times)]
        entry = {"frames": int(len(times)), "seconds": float(times.sum())}
        cache.put(key, entry)
    return entry["frames"], entry["seconds"]


def analyse(sequences: SequenceType[Sequence], trackers: SequenceType[TrackerSpec], report_name: str = "",
            exclude_invalid_frames: bool = False, skip_failed_sequences: bool = False,
            cache: MetricsCache | None = None, strict_length: bool = False) -> AnalysisReport:
    """Score every tracker on every sequence; failures are collected, never raised (see module docstring).

    ``strict_length`` makes a result file with more or fewer rows than ground-truth frames a failure.
    """
    if not sequences:
        raise UserError("the dataset has no sequences; check the dataset name and its files")
    if not trackers:
        raise UserError("no tracker to analyse; give at least one tracker or result folder")
    names = [t.display_name for t in trackers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"several trackers are called {duplicates}; give them distinct display names")
    cache = cache if cache is not None else MetricsCache()
    results = [TrackerResult(spec) for spec in trackers]
    exact_names = names_needing_exact_match((seq.name, seq.dataset) for seq in sequences)
    folders = [[ResultFolder(d, exact_names) for d in spec.run_dirs] for spec in trackers]
    for seq in sequences:
        fingerprint = sequence_fingerprint(seq)
        for result, run_folders in zip(results, folders, strict=True):
            runs, timing, failed = [], [], False
            for folder in run_folders:
                try:
                    scored, files = score_files(folder, seq, fingerprint, cache, exclude_invalid_frames,
                                                strict_length)
                except InvalidResultError as err:
                    result.failures.append(ResultFailure(result.name, seq.name, err.path, err.reason))
                    failed = True
                    continue
                for run in scored:
                    if run.rows != len(seq.ground_truth_rect):
                        result.length_mismatches.append(LengthMismatch(result.name, seq.name, run.path, run.rows,
                                                                       len(seq.ground_truth_rect)))
                    result.scored_files.setdefault(folder.path, []).append(run.path)
                    runs.append(run.metrics)
                timing.append(read_timing(files.time_file, cache))
            if failed:
                continue
            result.per_sequence[seq.name] = mean_metrics(runs)
            if all(t is not None for t in timing):
                result.frames_timed[seq.name] = (sum(t[0] for t in timing), sum(t[1] for t in timing))
    cache.save()
    if skip_failed_sequences:
        scored = [s.name for s in sequences if all(s.name in r.per_sequence for r in results)]
    else:
        scored = [s.name for s in sequences]
    return AnalysisReport(report_name, list(sequences), results, scored, exclude_invalid_frames, skip_failed_sequences,
                          strict_length)
