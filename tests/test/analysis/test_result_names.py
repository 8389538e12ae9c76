"""Published raw results as they come: the names, layouts and formats of other toolkits, a folder of trackers.

The real ATOM results (../shared/data) are renamed into each toolkit's style; the analysis must give exactly the
table of the original folder, and must map every sequence to the same bytes.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lib.data.splits import split_entries
from lib.test.analysis import plots
from lib.test.analysis.analysis import analyse
from lib.test.analysis.cache import MetricsCache
from lib.test.analysis.report import format_table, score_rows
from lib.test.analysis.result_files import (
    AmbiguousResultError,
    ResultFolder,
    TrackerSpec,
    find_result_file,
    load_tracker_results,
    names_needing_exact_match,
    result_name_key,
)
from lib.test.evaluation.benchmarks.common import load_annotation_boxes
from lib.test.evaluation.data import Sequence
from lib.utils.cli import run_main
from lib.utils.errors import UserError
from tests.test.analysis.test_analysis import REPO_ROOT, otb_sequences

TWO_TARGET = ("Human4_2", "Jogging_1", "Jogging_2", "Skating2_1", "Skating2_2")
Namer = Callable[[str], str]

# Styles that failed before names were normalised: file path (relative to the tracker folder) per OSTrack name.
FAILING_STYLES: dict[str, Namer] = {
    "pysot": lambda name: f"{name.replace('_', '-')}.txt",  # Human4-2.txt, Basketball.txt
    "matlab": lambda name: f"{name.lower().replace('_', '-')}.txt",  # human4-2.txt
    "got10k_toolkit": lambda name: f"{name}/{name}_001.txt",
    "got10k_toolkit_dots": lambda name: f"{name.replace('_', '.')}/{name.replace('_', '.')}_001.txt",  # Jogging.1
    "prefix": lambda name: f"otb_{name}.txt",
}


@pytest.fixture(scope="module")
def otb100(shared_data: Path) -> dict:
    """OTB-100 sequences, the ATOM result file of each, and the canonical report of the untouched folder."""
    expected = json.loads((shared_data / "expected_metrics.json").read_text())
    names = list(expected["otb100/ATOM"]["per_sequence"])
    sequences = otb_sequences(shared_data, names)
    source = shared_data / "otb100_results_ATOM"
    files = {p.stem.lower(): p for p in source.glob("*.txt")}
    cache = MetricsCache()  # keyed by file content: renamed copies of the same bytes reuse the canonical metrics
    canonical = analyse(sequences, [TrackerSpec.from_folder(source, "ATOM")], "otb", cache=cache)
    assert not canonical.failures
    return {"sequences": sequences, "source": {n: files[n.lower()] for n in names}, "canonical": canonical,
            "cache": cache, "expected": expected["otb100/ATOM"]}


def write_folder(folder: Path, sources: dict[str, Path], namer: Callable[[str, int], str],
                 transform: Callable[[Path, int], bytes] | None = None) -> dict[str, Path]:
    """Copy each sequence's file to ``folder/namer(name, index)``; returns sequence -> written file."""
    written = {}
    for index, (name, source) in enumerate(sources.items()):
        target = folder / namer(name, index)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(transform(source, index) if transform else source.read_bytes())
        written[name] = target
    return written


def table(report) -> str:
    return format_table(report.report_name, score_rows(report.scores()))


def assert_same_scores(report, canonical) -> None:
    """The same table text and bit-identical curves (not a tolerance: the same bytes were scored)."""
    assert not report.failures
    assert table(report) == table(canonical)
    for name, scores in report.scores().items():
        reference = canonical.scores()[name]
        for curve in ("success_curve", "precision_curve", "norm_precision_curve"):
            assert np.array_equal(getattr(scores, curve), getattr(reference, curve)), curve


# ------------------------------------------------------------------------------------------------ OTB-100


def test_failing_styles_mixed_in_one_folder_give_the_canonical_table(otb100, tmp_path):
    styles = list(FAILING_STYLES.values())
    folder = tmp_path / "ATOM"
    two_target = dict(zip(TWO_TARGET, styles, strict=True))  # each two-target video in a different style
    written = write_folder(folder, otb100["source"],
                           lambda name, i: two_target.get(name, styles[i % len(styles)])(name))
    assert {written[name].relative_to(folder).as_posix() for name in TWO_TARGET} == {
        "Human4-2.txt", "jogging-1.txt", "Jogging_2/Jogging_2_001.txt", "Skating2.1/Skating2.1_001.txt",
        "otb_Skating2_2.txt"}
    report = analyse(otb100["sequences"], [TrackerSpec.from_folder(folder, "ATOM")], "otb", cache=otb100["cache"])
    assert_same_scores(report, otb100["canonical"])
    assert sorted(report.trackers[0].scored_files[folder]) == sorted(written.values())
    assert (report.scores()["ATOM"].auc, report.scores()["ATOM"].precision) == pytest.approx((66.70, 87.91), abs=0.005)


@pytest.mark.parametrize("style", sorted(FAILING_STYLES))
def test_each_failing_style_alone(otb100, tmp_path, style):
    folder = tmp_path / "ATOM"
    two_target = {name: otb100["source"][name] for name in TWO_TARGET}
    written = write_folder(folder, two_target, lambda name, i: FAILING_STYLES[style](name))
    sequences = [s for s in otb100["sequences"] if s.name in TWO_TARGET]
    report = analyse(sequences, [TrackerSpec.from_folder(folder, "ATOM")], "otb", cache=otb100["cache"])
    assert not report.failures
    assert sorted(report.trackers[0].scored_files[folder]) == sorted(written.values())


def test_styles_that_already_worked_stay_working(otb100, tmp_path):
    """Lower case, underscores, comma/tab/space delimiters, float formats, CRLF, extra sequences and files."""
    delimiters = (",", "\t", " ", ", ")
    formats = ("{:.0f}", "{:.3f}", "{:.6e}", "{}")

    def reformat(source: Path, index: int) -> bytes:
        rows = np.loadtxt(source, delimiter=",", ndmin=2)
        fmt, sep = formats[index % len(formats)], delimiters[index % len(delimiters)]
        newline = "\r\n" if index % 5 == 0 else "\n"
        return newline.join(sep.join(fmt.format(v) for v in row) for row in rows).encode() + newline.encode()

    folder = tmp_path / "ATOM"
    names: list[Callable[[str], str]] = [str.lower, str, lambda n: n.upper()]
    write_folder(folder, otb100["source"], lambda name, i: f"{names[i % len(names)](name)}.txt", reformat)
    (folder / "README.md").write_text("results of ATOM\n")
    (folder / "basketball_all_scores.txt").write_text("0.90\n" * 725)
    for extra in ("Ball", "Jogging", "Skating2", "Ironman_extra"):  # extra sequences, not in OTB-100
        shutil.copyfile(otb100["source"]["Basketball"], folder / f"{extra}.txt")
    report = analyse(otb100["sequences"], [TrackerSpec.from_folder(folder, "ATOM")], "otb")
    assert_same_scores(report, otb100["canonical"])


def test_human4_alias_only_on_otb(tmp_path):
    """got10k-toolkit and the MATLAB annotation call Human4's annotated (second) target 'Human4'."""
    (tmp_path / "Human4.txt").write_text("1,1,5,5\n")
    assert find_result_file(tmp_path, "Human4_2", "otb") == tmp_path / "Human4.txt"
    with pytest.raises(UserError, match="result file not found"):
        find_result_file(tmp_path, "Human4_2", "lasot")


# ------------------------------------------------------------------------------------------ the rule itself


@pytest.mark.parametrize(("name", "benchmark", "key"), [
    ("Human4-2", "otb", "human4_2"), ("human4_2", "otb", "human4_2"), ("Human4", "otb", "human4_2"),
    ("Skating2.1", "otb", "skating2_1"), ("otb_Basketball", "otb", "basketball"), ("airplane-1", "lasot", "airplane_1"),
    ("lasot_airplane-1", "lasot", "airplane_1"), ("uav_bike1", "uav", "bike1"), ("uav1_1", "uav", "uav1_1"),
    ("nfs_Gymnastics", "nfs", "gymnastics"), ("GOT-10k_Val_000001", "got10k", "got_10k_val_000001"),
    ("otb", "otb", "otb"), ("Human4", "lasot", "human4"),
])
def test_result_name_key(name, benchmark, key):
    assert result_name_key(name, benchmark) == key


def test_normalisation_keeps_every_lasot_name_apart():
    """LaSOT's own hyphens: the 1,400 train + test names keep 1,400 distinct keys, so none needs exact matching."""
    names = split_entries("lasot_train") + (REPO_ROOT / "lib/test/evaluation/sequence_lists/lasot_test.txt"
                                            ).read_text().split()
    assert len(set(names)) == 1400
    assert len({result_name_key(n, "lasot") for n in names}) == 1400
    assert not names_needing_exact_match((n, "lasot") for n in names)


def test_names_that_differ_only_in_separators_are_matched_exactly(tmp_path):
    """TrackingNet-like ids 'ab-cd_0' and 'ab_cd_0' are two sequences: neither takes the other's file."""
    (tmp_path / "ab-cd_0.txt").write_text("1,1,5,5\n")
    (tmp_path / "AB_CD_1.txt").write_text("1,1,5,5\n")
    names = ["ab-cd_0", "ab_cd_0", "ab_cd_1"]
    folder = ResultFolder(tmp_path, names_needing_exact_match((n, "trackingnet") for n in names))
    assert folder.find("ab-cd_0", "trackingnet").box_file == tmp_path / "ab-cd_0.txt"
    assert folder.find("ab_cd_0", "trackingnet") is None
    assert folder.find("ab_cd_1", "trackingnet").box_file == tmp_path / "AB_CD_1.txt"  # no twin: normalised


def test_nested_repetitions_and_time_files(tmp_path):
    nested = tmp_path / "GOT-10k_Val_000001"
    nested.mkdir()
    for run in (2, 1, 10):
        (nested / f"GOT-10k_Val_000001_{run:03d}.txt").write_text("1,1,5,5\n")
    (nested / "GOT-10k_Val_000001_time.txt").write_text("0.1\n")
    (tmp_path / "Couple.txt").write_text("1,1,5,5\n")
    (tmp_path / "Couple_time.txt").write_text("0.1\n")
    folder = ResultFolder(tmp_path)
    files = folder.find("GOT-10k_Val_000001", "got10k")
    assert [p.name for p in files.box_files] == [f"GOT-10k_Val_000001_{r:03d}.txt" for r in (1, 2, 10)]
    assert files.time_file == nested / "GOT-10k_Val_000001_time.txt"
    assert folder.find("couple", "otb").time_file == tmp_path / "Couple_time.txt"
    assert folder.find("Couple_time", "otb") is None  # a time file is never a box file


@pytest.mark.parametrize("second", ["couple.txt", "Couple/Couple_001.txt", "otb_Couple.txt"])
def test_two_files_for_one_sequence_is_an_error_naming_both(tmp_path, second):
    (tmp_path / "Couple.txt").write_text("1,1,5,5\n")
    (tmp_path / second).parent.mkdir(exist_ok=True)
    (tmp_path / second).write_text("1,1,5,5\n")
    with pytest.raises(AmbiguousResultError) as error:
        find_result_file(tmp_path, "Couple", "otb")
    assert str(tmp_path / "Couple.txt") in str(error.value) and str(tmp_path / second) in str(error.value)


def test_load_tracker_results(tmp_path):
    (tmp_path / "seq-a.txt").write_text("1\t2\t3\t4\n5\t6\t7\t8\n")
    sequences = [Sequence("seq_a", [], "folder", np.zeros((2, 4))), Sequence("seq_b", [], "folder", np.zeros((2, 4)))]
    with pytest.raises(UserError, match="result file not found"):
        load_tracker_results(tmp_path, sequences)
    boxes = load_tracker_results(tmp_path, sequences[:1])
    np.testing.assert_array_equal(boxes["seq_a"], [[1, 2, 3, 4], [5, 6, 7, 8]])


# -------------------------------------------------------------------------------------------------- LaSOT


def test_lasot_with_1120_extra_training_sequences_scores_as_the_canonical_280(shared_data, tmp_path):
    root = shared_data / "lasot_test_annotations"
    expected = json.loads((shared_data / "expected_metrics.json").read_text())["lasot_test/ATOM"]
    sequences = []
    for name in (root / "testing_set.txt").read_text().split():
        absent = np.loadtxt(root / "absent" / f"{name}.txt")
        sequences.append(Sequence(name, [], "lasot", load_annotation_boxes(root / f"{name}.txt"),
                                  target_visible=absent == 0))
    source = shared_data / "lasot_test_results_ATOM"
    folder = tmp_path / "ATOM"
    folder.mkdir()
    for seq in sequences:
        link_or_copy(source / f"{seq.name}.txt", folder / f"{seq.name}.txt")
    train_names = split_entries("lasot_train")
    assert len(train_names) == 1120
    for index, name in enumerate(train_names):  # published folders often hold all 1,400 sequences
        link_or_copy(source / f"{sequences[index % len(sequences)].name}.txt", folder / f"{name}.txt")
    report = analyse(sequences, [TrackerSpec.from_folder(folder, "ATOM")], "lasot")
    assert not report.failures and len(report.scored_sequences) == 280
    assert sorted(report.trackers[0].scored_files[folder]) == sorted(folder / f"{s.name}.txt" for s in sequences)
    scores = report.scores()["ATOM"]
    assert (scores.auc, scores.op50, scores.op75, scores.precision, scores.norm_precision) == pytest.approx(
        (expected["AUC"], expected["OP50"], expected["OP75"], expected["Precision"], expected["NormPrecision"]),
        abs=1e-4)
    np.testing.assert_allclose(scores.success_curve, expected["success_curve"], atol=1e-4)


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


# ------------------------------------------------------------------------------------- the command line




def mini_sources(shared_data: Path) -> dict[str, Path]:
    return {name: shared_data / "otb100_results_ATOM" / f"{name.lower()}.txt" for name in ("Couple", "Crossing",
                                                                                         "Football1")}


def shifted(source: Path, index: int) -> bytes:
    """The same results moved 3 px right: a third tracker with other numbers."""
    rows = np.loadtxt(source, delimiter=",", ndmin=2)
    rows[:, 0] += 3
    return "".join(f"{x:.0f},{y:.0f},{w:.0f},{h:.0f}\n" for x, y, w, h in rows).encode()


@pytest.fixture
def trackers_root(shared_data, tmp_path) -> Path:
    root = tmp_path / "published"
    sources = mini_sources(shared_data)
    write_folder(root / "ATOM", sources, lambda name, i: f"{name.lower()}.txt")
    write_folder(root / "ATOM-got10k", sources, lambda name, i: f"{name}/{name}_001.txt")
    write_folder(root / "Shifted", sources, lambda name, i: f"otb_{name}.txt", shifted)
    return root


def test_result_root_scores_three_trackers_into_one_table_plot_and_json(analysis_cli, trackers_root, tmp_path,
                                                                        capsys, monkeypatch):
    plotted = []
    plot_scores = plots.plot_scores
    monkeypatch.setattr(plots, "plot_scores", lambda scores, *a, **k: plotted.append(list(scores))
                        or plot_scores(scores, *a, **k))
    argv = ["--dataset", "otb", "--result_root", str(trackers_root), "--plots", "--save_dir", str(tmp_path / "out"),
            "--json", str(tmp_path / "report.json")]
    assert run_main(analysis_cli.main, argv) == 0
    out = capsys.readouterr().out
    assert out.count("| AUC") == 1
    assert "ATOM             | 71.33      | 88.74      | 70.52      | 90.09        | 87.12 " in out
    assert "ATOM-got10k      | 71.33      | 88.74      | 70.52      | 90.09        | 87.12 " in out
    assert "\nShifted          | " in out and "not scored" not in out
    assert plotted == [["ATOM", "ATOM-got10k", "Shifted"]]  # one call: one success plot with all three
    plot_dir = tmp_path / "out" / "test" / "result_plots" / "otb"
    assert sorted(p.name for p in plot_dir.glob("success_plot.*")) == ["success_plot.pdf", "success_plot.png"]
    report = json.loads((tmp_path / "report.json").read_text())
    assert sorted(report["scores"]) == ["ATOM", "ATOM-got10k", "Shifted"] and not report["missing_sequences"]


def test_result_root_tracker_missing_sequences_is_listed_and_others_scored(analysis_cli, trackers_root, tmp_path,
                                                                           capsys):
    partial = trackers_root / "Partial"
    partial.mkdir()
    shutil.copyfile(trackers_root / "ATOM" / "couple.txt", partial / "Couple.txt")
    argv = ["--dataset", "otb", "--result_root", str(trackers_root), "--save_dir", str(tmp_path / "out"),
            "--json", str(tmp_path / "report.json")]
    assert run_main(analysis_cli.main, argv) == 1
    out = capsys.readouterr().out
    assert "Reporting results over 3 / 3 sequences" in out and out.count("| 71.33") == 2
    assert "not scored: 'Partial' (2 of 3 sequence(s) failed):" in out
    assert f"no result file for 2 sequence(s) in {partial}: Crossing, Football1" in out
    assert "--skip_missing_seq scores every tracker on the sequences all of them have" in out
    assert json.loads((tmp_path / "report.json").read_text())["missing_sequences"] == {
        "Partial": ["Crossing", "Football1"]}
    assert run_main(analysis_cli.main, argv + ["--skip_missing_seq"]) == 1
    out = capsys.readouterr().out
    assert "Reporting results over 1 / 3 sequences" in out and "\nPartial          | " in out


def test_ambiguous_folder_is_a_one_line_error_with_exit_code_2(analysis_cli, shared_data, tmp_path, capsys):
    folder = tmp_path / "ATOM"
    write_folder(folder, mini_sources(shared_data), lambda name, i: f"{name}.txt")
    write_folder(folder, {"Crossing": mini_sources(shared_data)["Crossing"]}, lambda name, i: f"{name}/{name}_001.txt")
    argv = ["--dataset", "otb", "--result_dir", str(folder), "--save_dir", str(tmp_path / "out")]
    assert run_main(analysis_cli.main, argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("error: two result files for sequence 'Crossing': ")
    assert str(folder / "Crossing.txt") in captured.err and str(folder / "Crossing/Crossing_001.txt") in captured.err


def test_result_root_usage_errors(analysis_cli, trackers_root, tmp_path, capsys):
    base = ["--dataset", "otb", "--save_dir", str(tmp_path / "out")]
    assert run_main(analysis_cli.main, base + ["--result_root", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert run_main(analysis_cli.main, base + ["--result_root", str(trackers_root / "ATOM-got10k")]) == 2
    assert "--result_dir" in capsys.readouterr().err  # one tracker's nested folder, not a folder of trackers
    with pytest.raises(UserError, match="no sub-folders"):
        TrackerSpec.from_root(trackers_root / "ATOM")

