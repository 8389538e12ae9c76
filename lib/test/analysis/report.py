"""Text tables of an analysis (OSTrack's layout) and its JSON file."""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from collections.abc import Sequence as SequenceType
from pathlib import Path
from typing import Any

import numpy as np

from lib.test.analysis.analysis import AnalysisReport, Scores
from lib.utils.io import atomic_write_text

TABLE_COLUMNS = ("AUC", "OP50", "OP75", "Precision", "Norm Precision")
MAX_LISTED_NAMES = 20


def format_table(report_name: str, rows: Mapping[str, Mapping[str, float | None]],
                 columns: SequenceType[str] = TABLE_COLUMNS) -> str:
    """OSTrack's text table: name column padded to the longest name + 5, score cells to max(10, header + 3)."""
    name_width = max([len(name) for name in rows] + [len(report_name)]) + 5
    widths = [max(10, len(column) + 3) for column in columns]
    lines = [f"{report_name:<{name_width}} |" + "".join(f" {c:<{w}} |" for c, w in zip(columns, widths, strict=True))]
    for name, values in rows.items():
        cells = []
        for column, width in zip(columns, widths, strict=True):
            value = values.get(column)
            text = "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:0.2f}"
            cells.append(f" {text:<{width}} |")
        lines.append(f"{name:<{name_width}} |" + "".join(cells))
    return "\n".join(lines)


def score_rows(scores: Mapping[str, Scores], sort_by_auc: bool = False) -> dict[str, dict[str, float | None]]:
    """Table rows (name -> column -> value) for :func:`format_table`, optionally best AUC first."""
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
        lines.append(f"not scored: '{tracker.name}' ({len(tracker.failures)} of {len(report.sequences)} sequence(s) "
                     "failed):")
        missing = [failure.sequence for failure in tracker.failures if failure.missing]
        if missing:
            folders = ", ".join(str(d) for d in tracker.spec.run_dirs)
            lines.append(f"  no result file for {len(missing)} sequence(s) in {folders}: {name_list(missing)}")
        lines.extend(f"  {failure}" for failure in tracker.failures if not failure.missing)
    if scores and report.dropped_trackers and not report.skip_failed_sequences:
        lines.append(f"the table compares the other trackers on all {len(report.scored_sequences)} sequences; "
                     "--skip_missing_seq scores every tracker on the sequences all of them have")
    if report.skip_failed_sequences:
        skipped = report.failures
        if skipped:
            lines.append(f"skipped {len(report.sequences) - len(report.scored_sequences)} sequence(s) for all "
                         "trackers because of:")
            lines.extend(f"  {failure}" for failure in skipped)
    return "\n".join(lines)


def name_list(names: SequenceType[str], limit: int = MAX_LISTED_NAMES) -> str:
    """``a, b, c`` or, beyond ``limit`` names, the first ones and how many more (the JSON lists them all)."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more (all in --json)"


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


def _json_safe(value: Any) -> Any:
    """A copy that :func:`json.dumps` takes with ``allow_nan=False``."""
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
