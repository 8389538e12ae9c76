"""Success / precision / normalised-precision plots of an analysis (matplotlib Agg, no LaTeX needed).

OSTrack styled these with ``text.usetex`` and exported TikZ through tikzplotlib, both of which break on a
plain machine; here the figures are PNG + PDF only, written atomically. Figures are built with matplotlib's
object API (``Figure`` on an Agg canvas): no pyplot, no global backend or figure registry to manage.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lib.test.analysis.analysis import Scores
from lib.test.analysis.metrics import CENTER_THRESHOLDS, NORM_CENTER_THRESHOLDS, OVERLAP_THRESHOLDS
from lib.utils.io import atomic_path

PLOT_FORMATS = ("png", "pdf")


@dataclass(frozen=True)
class PlotKind:
    file_stem: str
    title: str
    x_label: str
    y_label: str
    thresholds: np.ndarray
    curve: Callable[[Scores], np.ndarray]
    score: Callable[[Scores], float]
    x_limits: tuple[float, float]


PLOT_KINDS: dict[str, PlotKind] = {
    "success": PlotKind("success_plot", "Success", "Overlap threshold", "Overlap Precision [%]",
                        OVERLAP_THRESHOLDS, lambda s: s.success_curve, lambda s: s.auc, (0.0, 1.0)),
    "prec": PlotKind("precision_plot", "Precision plot", "Location error threshold [pixels]",
                     "Distance Precision [%]", CENTER_THRESHOLDS, lambda s: s.precision_curve,
                     lambda s: s.precision, (0.0, 50.0)),
    "norm_prec": PlotKind("norm_precision_plot", "Normalized Precision", "Location error threshold",
                          "Distance Precision [%]", NORM_CENTER_THRESHOLDS, lambda s: s.norm_precision_curve,
                          lambda s: s.norm_precision, (0.0, 0.5)),
}


def plot_scores(scores: Mapping[str, Scores], output_dir: str | Path, report_name: str = "",
                kinds: tuple[str, ...] = ("success", "prec", "norm_prec"),
                formats: tuple[str, ...] = PLOT_FORMATS) -> list[Path]:
    """One figure per kind; legend entries ``name [score]`` sorted best first. Returns the written files."""
    unknown = set(kinds) - set(PLOT_KINDS)
    if unknown:
        raise ValueError(f"unknown plot kind(s) {sorted(unknown)}; known: {sorted(PLOT_KINDS)}")
    output_dir = Path(output_dir)
    written = []
    for kind_name in kinds:
        kind = PLOT_KINDS[kind_name]
        ranked = sorted(scores.items(), key=lambda item: kind.score(item[1]), reverse=True)
        figure = Figure(figsize=(6.4, 4.8))
        FigureCanvasAgg(figure)  # attaches itself; savefig switches to the PDF canvas for .pdf
        axes = figure.subplots()
        for name, score in ranked:
            axes.plot(kind.thresholds, kind.curve(score), linewidth=2, label=f"{name} [{kind.score(score):.1f}]")
        axes.set_xlim(*kind.x_limits)
        axes.set_ylim(0.0, 100.0)
        axes.set_xlabel(kind.x_label)
        axes.set_ylabel(kind.y_label)
        axes.set_title(f"{kind.title} ({report_name})" if report_name else kind.title)
        axes.grid(True, linestyle="dotted")
        legend = axes.legend(loc="lower left" if kind_name == "success" else "lower right")
        if ranked:
            legend.get_texts()[0].set_fontweight("bold")
        figure.tight_layout()
        for fmt in formats:
            target = output_dir / f"{kind.file_stem}.{fmt}"
            with atomic_path(target) as tmp:
                figure.savefig(tmp, format=fmt, dpi=150 if fmt == "png" else 300)
            written.append(target)
    return written
