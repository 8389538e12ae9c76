"""Raw tracking results: locating and loading them, scoring them per sequence (with a cache), aggregating.

Result layout (OSTrack/pytracking, named by :mod:`lib.utils.run_layout`):
``<results_root>/<tracker>/<param>[_<run:03d>][_<backend>]/<seq>.txt`` (+ ``<seq>_time.txt``); our runner
writes GOT-10k and TrackingNet results one folder deeper, in ``<tag>/``. Both places are searched, so local
GOT-10k-val analysis works. Folders of external raw results (other toolkits, other name casing such as
``jogging_1.txt`` for ``Jogging_1``) are matched case-insensitively when the exact name is absent.

Broken results never abort an analysis. Every unreadable, missing or unscorable file becomes a
:class:`ResultFailure` that names tracker, sequence, file and reason. By default a tracker with any failure
is left out of the score table (with its reasons listed) and the others are scored on all sequences; with
``skip_failed_sequences`` (OSTrack's ``skip_missing_seq``) such sequences are dropped for *all* trackers
instead, so every tracker is still scored on the same set. Only annotation errors (e.g. NaN boxes in a
benchmark other than UAV123) abort, because they concern every tracker alike.

A result file longer or shorter than the ground truth is truncated or padded with failures, as the reference
toolkit does (so scores stay comparable), and listed as a :class:`LengthMismatch`; ``strict_length`` makes it
a failure instead. The report also tells what was scored: each run folder's manifest, or a digest of its files.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence as SequenceType

import numpy as np

from lib.test.analysis.metrics import (CENTER_THRESHOLDS, NORM_CENTER_THRESHOLDS, OP50_INDEX, OP75_INDEX,
                                       OVERLAP_THRESHOLDS, PRECISION_INDEX, InvalidResultError, SequenceMetrics,
                                       evaluate_sequence, length_fix, mean_metrics)
from lib.test.evaluation.data import Sequence
from lib.utils.box_files import TableFormatError, parse_box_table
from lib.utils.errors import UserError
from lib.utils.io import atomic_write_text
from lib.utils.provenance import ManifestError, files_digest, read_manifest
from lib.utils.run_layout import DEFAULT_BACKEND, MANIFEST_NAME, TIME_SUFFIX, results_run_name, results_subfolder

# Extra per-sequence outputs of trackers that are not box files.
AUXILIARY_SUFFIXES = (TIME_SUFFIX, "_all_boxes", "_all_scores", "_object_presence_scores")
CACHE_VERSION = 2  # 2: entries hold the number of result rows, so length mismatches survive a cache hit
CACHE_MAX_ENTRIES = 10_000  # about 25 MB of JSON; the least recently used entries go first


# ----------------------------------------------------------------------------------------------- loading

def parse_boxes(text: str, source: str | Path = "<text>") -> np.ndarray:
    """Parse ``x y w h`` lines (tabs, commas or spaces); ``source`` only labels errors."""
    try:
        return parse_box_table(text)
    except TableFormatError as err:
        hint = ("re-run the tracker on this sequence" if "empty" in str(err)
                else "expected one 'x,y,w,h' line per frame, tab- or comma-separated")
        raise InvalidResultError(f"{err}; {hint}", source) from None


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise InvalidResultError(f"cannot be read ({err.strerror}); check the file and its permissions",
                                 path) from None


def load_boxes(path: str | Path) -> np.ndarray:
    """Load a result or annotation file as an (N, 4) float64 array."""
    path = Path(path)
    return parse_boxes(decode(read_bytes(path), path), path)


def decode(data: bytes, source: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidResultError("not a text file; expected 'x,y,w,h' lines", source) from None


def parse_times(text: str, source: str | Path) -> np.ndarray:
    """Per-frame seconds from a ``<seq>_time.txt`` file (one value per line; extra columns are repetitions)."""
    try:
        return np.array(text.replace(",", " ").replace("\t", " ").split(), dtype=np.float64)
    except ValueError:
        raise InvalidResultError("time file holds non-numbers; expected one float (seconds) per line",
                                 source) from None


# ---------------------------------------------------------------------------------------------- trackers

@dataclass(frozen=True)
class TrackerSpec:
    """One row of the report: one or several runs whose per-sequence curves are averaged."""

    display_name: str
    run_dirs: tuple[Path, ...]

    @classmethod
    def from_run(cls, results_root: str | Path, name: str, param: str, run_ids: SequenceType[int] | None = None,
                 display_name: str | None = None, backend: str = DEFAULT_BACKEND) -> "TrackerSpec":
        """Our own runs: ``<results_root>/<name>/<param>[_<run:03d>][_<backend>]``, one folder per run id."""
        base = Path(results_root) / name
        run_ids = list(run_ids or [None])
        dirs = tuple(base / results_run_name(param, run_id, backend) for run_id in run_ids)
        default_name = f"{name}_{results_run_name(param, run_ids[0] if len(run_ids) == 1 else None, backend)}"
        return cls(display_name or default_name, dirs)

    @classmethod
    def from_folder(cls, folder: str | Path, display_name: str | None = None) -> "TrackerSpec":
        """Any folder of raw ``<seq>.txt`` files (e.g. published results of another tracker)."""
        folder = Path(folder)
        return cls(display_name or folder.name, (folder,))


class ResultFolder:
    """The box and time files of one run folder, found exactly or case-insensitively."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._listings: dict[Path, dict[str, list[Path]]] = {}

    def _listing(self, folder: Path) -> dict[str, list[Path]]:
        if folder not in self._listings:
            entries: dict[str, list[Path]] = {}
            if folder.is_dir():
                for file in folder.iterdir():
                    if file.suffix == ".txt":
                        entries.setdefault(file.stem.lower(), []).append(file)
            self._listings[folder] = entries
        return self._listings[folder]

    def _find(self, stem: str, tag: str) -> Path | None:
        folders = list(dict.fromkeys([results_subfolder(self.path, tag), self.path]))
        for folder in folders:
            exact = folder / f"{stem}.txt"
            if exact.is_file():
                return exact
        for folder in folders:
            matches = self._listing(folder).get(stem.lower(), [])
            if len(matches) == 1:
                return matches[0]
        return None

    def box_file(self, seq: Sequence) -> Path | None:
        return self._find(seq.name, seq.dataset)

    def time_file(self, seq: Sequence) -> Path | None:
        return self._find(seq.name + TIME_SUFFIX, seq.dataset)


# ------------------------------------------------------------------------------------------------- cache

def _digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def sequence_fingerprint(seq: Sequence) -> str:
    """Identifies everything about the ground truth that the metric reads."""
    visible = b"" if seq.target_visible is None else np.asarray(seq.target_visible, dtype=bool).tobytes()
    gt = np.ascontiguousarray(seq.ground_truth_rect, dtype=np.float64)
    return _digest(seq.dataset.encode(), gt.tobytes(), visible)


class MetricsCache:
    """Per-sequence metrics keyed by the *content* of the result file and of the ground truth.

    OSTrack's cache was keyed on sequence and tracker names only, so re-run results were silently scored
    with stale numbers. Here any change of the result bytes, the annotation, the tag or the options gives a
    new key. ``path=None`` is an in-memory cache (nothing is written).
    """

    def __init__(self, path: str | Path | None = None, load: bool = True) -> None:
        """``load=False`` starts empty (a forced re-evaluation) but still saves to ``path``."""
        self.path = Path(path) if path is not None else None
        self._entries: dict[str, dict] = {}
        self._dirty = False
        self.warning: str | None = None
        if load and self.path is not None and self.path.is_file():
            try:
                content = json.loads(self.path.read_text())
                if content.get("version") == CACHE_VERSION:
                    self._entries = dict(content.get("entries", {}))
            except (OSError, ValueError, AttributeError) as err:
                self.warning = f"ignoring unreadable metrics cache {self.path} ({err}); it will be rebuilt"

    @staticmethod
    def metrics_key(result_bytes: bytes, gt_fingerprint: str, exclude_invalid_frames: bool) -> str:
        return _digest(b"metrics", result_bytes, gt_fingerprint.encode(), str(bool(exclude_invalid_frames)).encode())

    @staticmethod
    def timing_key(time_bytes: bytes) -> str:
        return _digest(b"timing", time_bytes)

    def get(self, key: str) -> dict | None:
        entry = self._entries.pop(key, None)
        if entry is not None:  # re-insert: dict order doubles as recency order (saved with the next change)
            self._entries[key] = entry
        return entry

    def put(self, key: str, value: dict) -> None:
        self._entries.pop(key, None)
        self._entries[key] = value
        self._dirty = True

    def get_metrics(self, key: str) -> tuple[SequenceMetrics, int] | None:
        """The metrics and the number of rows of the result file they were computed from, if cached."""
        entry = self.get(key)
        if entry is None:
            return None
        metrics = SequenceMetrics(success=np.asarray(entry["success"]), precision=np.asarray(entry["precision"]),
                                  norm_precision=np.asarray(entry["norm_precision"]),
                                  avg_overlap=float(entry["avg_overlap"]) if entry["avg_overlap"] is not None
                                  else float("nan"),
                                  num_frames=int(entry["num_frames"]),
                                  num_valid_frames=int(entry["num_valid_frames"]))
        return metrics, int(entry["result_rows"])

    def put_metrics(self, key: str, metrics: SequenceMetrics, result_rows: int) -> None:
        self.put(key, {"success": metrics.success.tolist(), "precision": metrics.precision.tolist(),
                       "norm_precision": metrics.norm_precision.tolist(),
                       "avg_overlap": None if math.isnan(metrics.avg_overlap) else metrics.avg_overlap,
                       "num_frames": metrics.num_frames, "num_valid_frames": metrics.num_valid_frames,
                       "result_rows": result_rows})

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        excess = len(self._entries) - CACHE_MAX_ENTRIES
        if excess > 0:
            for key in list(self._entries)[:excess]:
                del self._entries[key]
        atomic_write_text(self.path, json.dumps({"version": CACHE_VERSION, "entries": self._entries}))
        self._dirty = False


# --------------------------------------------------------------------------------------------- analysis

@dataclass(frozen=True)
class ResultFailure:
    """Why one tracker could not be scored on one sequence."""

    tracker: str
    sequence: str
    path: Path | None
    reason: str

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


def score_run(folder: ResultFolder, seq: Sequence, gt_fingerprint: str, cache: MetricsCache,
              exclude_invalid_frames: bool) -> ScoredRun:
    """Score one run on one sequence; raises :class:`InvalidResultError` with the file in the message."""
    path = folder.box_file(seq)
    if path is None:
        expected = [folder.path / f"{seq.name}.txt", results_subfolder(folder.path, seq.dataset) / f"{seq.name}.txt"]
        raise InvalidResultError(f"result file not found: expected {' or '.join(map(str, dict.fromkeys(expected)))}"
                                 "; run the tracker on this sequence or fix the result folder")
    data = read_bytes(path)
    key = cache.metrics_key(data, gt_fingerprint, exclude_invalid_frames)
    cached = cache.get_metrics(key)
    if cached is not None:
        return ScoredRun(cached[0], path, cached[1])
    try:
        boxes = parse_boxes(decode(data, path), path)
        metrics = evaluate_sequence(boxes, seq.ground_truth_rect, seq.dataset, seq.target_visible,
                                    exclude_invalid_frames)
    except InvalidResultError as err:
        raise err.at(path) from None
    cache.put_metrics(key, metrics, len(boxes))
    return ScoredRun(metrics, path, len(boxes))


def check_length(run: ScoredRun, seq: Sequence, strict: bool) -> None:
    """With ``strict``, a result whose row count differs from the ground truth is an error, not padded/cut."""
    expected = len(seq.ground_truth_rect)
    if strict and run.rows != expected:
        raise InvalidResultError(f"{run.rows} lines for {expected} ground-truth frames; --strict scores only "
                                 "results with one line per frame: re-run the tracker on this sequence", run.path)


def read_timing(folder: ResultFolder, seq: Sequence, cache: MetricsCache) -> tuple[int, float] | None:
    """(frames, seconds) from the run's time file, or None when there is none or it is unusable."""
    path = folder.time_file(seq)
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
    folders = [[ResultFolder(d) for d in spec.run_dirs] for spec in trackers]
    for seq in sequences:
        fingerprint = sequence_fingerprint(seq)
        for result, run_folders in zip(results, folders):
            runs, timing, failed = [], [], False
            for folder in run_folders:
                try:
                    run = score_run(folder, seq, fingerprint, cache, exclude_invalid_frames)
                    check_length(run, seq, strict_length)
                except InvalidResultError as err:
                    result.failures.append(ResultFailure(result.name, seq.name, err.path, err.reason))
                    failed = True
                    continue
                if run.rows != len(seq.ground_truth_rect):
                    result.length_mismatches.append(LengthMismatch(result.name, seq.name, run.path, run.rows,
                                                                   len(seq.ground_truth_rect)))
                result.scored_files.setdefault(folder.path, []).append(run.path)
                runs.append(run.metrics)
                timing.append(read_timing(folder, seq, cache))
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


# -------------------------------------------------------------------------------------------- reporting

TABLE_COLUMNS = ("AUC", "OP50", "OP75", "Precision", "Norm Precision")


def format_table(report_name: str, rows: Mapping[str, Mapping[str, float | None]],
                 columns: SequenceType[str] = TABLE_COLUMNS) -> str:
    """OSTrack's text table: name column padded to the longest name + 5, score cells to max(10, header + 3)."""
    name_width = max([len(name) for name in rows] + [len(report_name)]) + 5
    widths = [max(10, len(column) + 3) for column in columns]
    lines = [f"{report_name:<{name_width}} |" + "".join(f" {c:<{w}} |" for c, w in zip(columns, widths))]
    for name, values in rows.items():
        cells = []
        for column, width in zip(columns, widths):
            value = values.get(column)
            text = "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:0.2f}"
            cells.append(f" {text:<{width}} |")
        lines.append(f"{name:<{name_width}} |" + "".join(cells))
    return "\n".join(lines)


def score_rows(scores: Mapping[str, Scores], sort_by_auc: bool = False) -> dict[str, dict[str, float | None]]:
    items = list(scores.items())
    if sort_by_auc:
        items.sort(key=lambda item: -item[1].auc)
    return {name: {"AUC": s.auc, "OP50": s.op50, "OP75": s.op75, "Precision": s.precision,
                   "Norm Precision": s.norm_precision, "FPS": s.fps} for name, s in items}


def format_report(report: AnalysisReport) -> str:
    """The main table, preceded by OSTrack's coverage line and followed by the reasons for any omission."""
    scores = report.scores() if report.scored_sequences else {}
    lines = [f"Reporting results over {len(report.scored_sequences)} / {len(report.sequences)} sequences"]
    if scores:
        columns = TABLE_COLUMNS + (("FPS",) if any(s.fps is not None for s in scores.values()) else ())
        lines.append(format_table(report.report_name, score_rows(scores), columns))
    for tracker in report.dropped_trackers:
        lines.append(f"not scored: '{tracker.name}' ({len(tracker.failures)} sequence(s) failed):")
        lines.extend(f"  {failure}" for failure in tracker.failures)
    if report.skip_failed_sequences:
        skipped = [f for f in report.failures]
        if skipped:
            lines.append(f"skipped {len(report.sequences) - len(report.scored_sequences)} sequence(s) for all "
                         "trackers because of:")
            lines.extend(f"  {failure}" for failure in skipped)
    return "\n".join(lines)


def format_per_sequence(report: AnalysisReport) -> str:
    """Average overlap (%) per sequence and tracker, like OSTrack's ``print_per_sequence_results``."""
    table = report.per_sequence_table()
    trackers = [t.name for t in report.trackers]
    rows = {f"{name} (ID={index})": {t: values[t]["avg_overlap"] if t in values else None for t in trackers}
            for index, (name, values) in enumerate(table.items())}
    return format_table("Sequence", rows, trackers)


def format_attributes(report: AnalysisReport) -> str:
    """AUC and precision per attribute: one row per attribute (with its sequence count), one column per tracker."""
    by_attribute = report.attribute_scores()
    if not by_attribute:
        return "no sequence of this dataset has attributes"
    trackers = [t.name for t in report.scored_trackers]
    blocks = []
    for title, value in (("AUC", lambda s: s.auc), ("Precision", lambda s: s.precision)):
        rows = {}
        for attribute, scores in by_attribute.items():
            count = next(iter(scores.values())).num_sequences
            rows[f"{attribute} ({count})"] = {name: value(scores[name]) for name in trackers}
        blocks.append(format_table(f"{title} per attribute", rows, trackers))
    return "\n\n".join(blocks)


def write_json(path: str | Path, content: dict) -> Path:
    """Strict JSON (NaN/inf become null, numpy scalars plain numbers), written atomically."""
    path = Path(path)
    atomic_write_text(path, json.dumps(_json_safe(content), indent=1, allow_nan=False) + "\n")
    return path


def _json_safe(value):
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value
