"""Analysis against real benchmark data and published numbers (../shared/data), and the analysis CLI.

Sequences are built here directly from the annotation files (the dataset readers are tested elsewhere):
LaSOT visibility = (absent == 0); OTB-100 uses OSTrack's names (Tiger1 drops its first 5 rows, Human4_2 is
``Human4.txt``, Jogging_1 is ``jogging-1.txt`` ...).
"""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lib.test.analysis import workflow
from lib.test.analysis.analysis import analyse
from lib.test.analysis.metrics import OP50_INDEX, evaluate_sequence
from lib.test.analysis.result_files import TrackerSpec
from lib.test.analysis.trackingnet import evaluate_trackingnet
from lib.test.evaluation.benchmarks.common import load_annotation_boxes
from lib.test.evaluation.data import Sequence
from lib.utils.cli import run_main
from lib.utils.paths import get_paths
from lib.utils.run_layout import results_folder, results_subfolder

REPO_ROOT = Path(__file__).resolve().parents[3]
TOLERANCE = 0.01  # percent, as the reference numbers are quoted
OTB_MINI = ("Couple", "Crossing", "Football1")
OTB_ANNOTATION_NAMES = {"Human4_2": "human4"}  # everything else: lower case, '_' -> '-'
OTB_INIT_OMIT = {"Tiger1": 5}


@pytest.fixture(scope="session")
def expected(shared_data: Path) -> dict:
    return json.loads((shared_data / "expected_metrics.json").read_text())


@pytest.fixture(scope="session")
def lasot_sequences(shared_data: Path) -> list[Sequence]:
    root = shared_data / "lasot_test_annotations"
    sequences = []
    for name in (root / "testing_set.txt").read_text().split():
        absent = np.loadtxt(root / "absent" / f"{name}.txt")
        gt = load_annotation_boxes(root / f"{name}.txt")
        sequences.append(Sequence(name, [], "lasot", gt, target_visible=absent == 0))
    return sequences


def otb_sequences(shared_data: Path, names: list[str]) -> list[Sequence]:
    """OTB sequences from the MATLAB ``anno/`` copy, named and trimmed as in OSTrack's OTB list."""
    files = {p.stem.lower(): p for p in (shared_data / "otb100_annotations").glob("*.txt")}
    sequences = []
    for name in names:
        gt = load_annotation_boxes(files[OTB_ANNOTATION_NAMES.get(name, name.lower().replace("_", "-"))])
        sequences.append(Sequence(name, [], "otb", gt[OTB_INIT_OMIT.get(name, 0):]))
    return sequences


def otb_mini_sequences(shared_data: Path) -> list[Sequence]:
    """The three OTB sequences with frames, in OSTrack's layout, with their OTB attributes."""
    sequences = []
    for name in OTB_MINI:
        folder = shared_data / "otb_mini_sequences" / name
        gt = load_annotation_boxes(folder / "groundtruth_rect.txt")
        frames = sorted(str(p) for p in (folder / "img").glob("*.jpg"))[: len(gt)]
        attributes = {a.strip(): True for a in (folder / "attrs.txt").read_text().split(",") if a.strip()}
        sequences.append(Sequence(name, frames, "otb", gt, extras={"attributes": attributes}))
    return sequences


def assert_scores(scores, reference: dict) -> None:
    actual = {"AUC": scores.auc, "OP50": scores.op50, "OP75": scores.op75, "Precision": scores.precision,
              "NormPrecision": scores.norm_precision}
    for key, value in actual.items():
        assert value == pytest.approx(reference[key], abs=TOLERANCE), key


# --------------------------------------------------------------------------------------- LaSOT


def test_lasot_atom_reproduces_published_numbers(shared_data, lasot_sequences, expected):
    report = analyse(lasot_sequences, [TrackerSpec.from_folder(shared_data / "lasot_test_results_ATOM", "ATOM")],
                     "lasot")
    assert not report.failures and len(report.scored_sequences) == 280
    scores = report.scores()["ATOM"]
    reference = expected["lasot_test/ATOM"]
    assert_scores(scores, reference)
    assert (scores.auc, scores.op50, scores.op75, scores.precision, scores.norm_precision) == pytest.approx(
        (51.43, 59.17, 42.61, 50.54, 57.68), abs=0.005)
    np.testing.assert_allclose(scores.success_curve, reference["success_curve"], atol=1e-4)
    np.testing.assert_allclose(scores.precision_curve, reference["precision_curve"], atol=1e-4)
    np.testing.assert_allclose(scores.norm_precision_curve, reference["norm_precision_curve"], atol=1e-4)
    table = report.per_sequence_table()
    for name, values in reference["per_sequence"].items():
        row = table[name]["ATOM"]
        assert (row["auc"], row["avg_overlap"], row["precision"], row["norm_precision"]) == pytest.approx(
            (values["auc"], values["avg_overlap"], values["prec20"], values["norm_prec20"]), abs=1e-3), name


def test_lasot_exclude_invalid_frames(shared_data, lasot_sequences):
    report = analyse(lasot_sequences, [TrackerSpec.from_folder(shared_data / "lasot_test_results_ATOM", "ATOM")],
                     "lasot", exclude_invalid_frames=True)
    assert report.scores()["ATOM"].auc == pytest.approx(52.60, abs=0.005)


def test_lasot_short_result_file_drops_tracker_with_clear_reason(shared_data, lasot_sequences, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    source = shared_data / "lasot_test_results_ATOM"
    subset = lasot_sequences[:3]
    for seq in subset:
        (broken / f"{seq.name}.txt").write_bytes((source / f"{seq.name}.txt").read_bytes())
    lines = (broken / f"{subset[1].name}.txt").read_text().splitlines()
    (broken / f"{subset[1].name}.txt").write_text("\n".join(lines[:-10]) + "\n")
    report = analyse(subset, [TrackerSpec.from_folder(source, "ATOM"), TrackerSpec.from_folder(broken, "Broken")],
                     "lasot")
    assert [t.name for t in report.scored_trackers] == ["ATOM"]
    message = str(report.failures[0])
    assert "Broken" in message and subset[1].name in message and str(broken) in message
    assert f"{len(lines) - 10} lines for {len(lines)} ground-truth frames" in message


# ----------------------------------------------------------------------------------------- OTB


def test_otb100_atom(shared_data, expected):
    names = list(expected["otb100/ATOM"]["per_sequence"])
    assert len(names) == 100
    report = analyse(otb_sequences(shared_data, names),
                     [TrackerSpec.from_folder(shared_data / "otb100_results_ATOM", "ATOM")], "otb")
    assert not report.failures
    scores = report.scores()["ATOM"]
    assert_scores(scores, expected["otb100/ATOM"])
    assert (scores.auc, scores.precision) == pytest.approx((66.70, 87.91), abs=0.005)


def test_otb_mini_golden_values_and_attributes(shared_data, expected):
    report = analyse(otb_mini_sequences(shared_data),
                     [TrackerSpec.from_folder(shared_data / "otb100_results_ATOM", "ATOM")], "otb")
    reference = expected["otb_mini3/ATOM"]
    assert_scores(report.scores()["ATOM"], reference)
    table = report.per_sequence_table()
    for name, values in reference["per_sequence"].items():
        assert table[name]["ATOM"]["auc"] == pytest.approx(values["auc"], abs=1e-3)
    by_attribute = report.attribute_scores()
    # Couple: SV DEF FM OPR BC; Crossing and Football1 have their own lists: every attribute is a subset mean
    fast_motion = [s.name for s in report.sequences if "FM" in s.extras["attributes"]]
    expected_auc = np.mean([reference["per_sequence"][n]["auc"] for n in fast_motion])
    assert by_attribute["FM"]["ATOM"].auc == pytest.approx(expected_auc, abs=1e-3)
    assert by_attribute["FM"]["ATOM"].num_sequences == len(fast_motion)


# ------------------------------------------------------------------------------------------ UAV


def test_uav123_nan_rows_are_overlap_failures_and_precision_successes(shared_data, expected):
    folder = shared_data / "uav123_annotations"
    names = sorted(p.stem for p in folder.glob("*.txt"))
    evaluated = [n for n in names if f"{n}_1" not in names]  # full-length files of split sequences excluded
    sequences = [Sequence(n, [], "uav", load_annotation_boxes(folder / f"{n}.txt")) for n in evaluated]
    assert len(sequences) == 123
    nan_rows = sum(int(np.isnan(s.ground_truth_rect).any(axis=1).sum()) for s in sequences)
    assert nan_rows == expected["dataset_stats"]["uav123"]["nan_rows"]
    metrics = []
    for seq in sequences:  # a perfect tracker that outputs a fixed box while the target is absent
        pred = np.where(np.isnan(seq.ground_truth_rect), 5.0, seq.ground_truth_rect)
        metrics.append((seq, evaluate_sequence(pred, seq.ground_truth_rect, "uav")))
    for seq, m in metrics:
        present = 1.0 - np.isnan(seq.ground_truth_rect).any(axis=1).mean()
        assert m.success[OP50_INDEX] == pytest.approx(present)
        assert m.precision[0] == 1.0 and m.norm_precision[0] == 1.0


# ----------------------------------------------------------------------------------- TrackingNet


def test_trackingnet_devkit_dummy(shared_data, expected):
    folder = shared_data / "trackingnet_devkit_dummy"
    scores = evaluate_trackingnet(folder / "dummy_GT.zip", folder / "dummy_subm.zip")
    reference = expected["trackingnet_devkit_dummy"]
    assert scores.coverage == pytest.approx(reference["Coverage"], abs=1e-6)
    assert scores.success == pytest.approx(reference["Success"], abs=1e-6)
    assert scores.precision == pytest.approx(reference["Precision"], abs=1e-6)
    assert scores.norm_precision == pytest.approx(reference["Normalized Precision"], abs=1e-6)
    assert (round(scores.coverage, 3), round(scores.success, 3), round(scores.precision, 3)) == (88.956, 88.08, 87.802)
    assert scores.per_sequence_success["a8v0k4Bz_QA_0.txt"] == pytest.approx(90.0)
    assert scores.per_sequence_success["a9jgDU5THOU_0.txt"] == pytest.approx(2.7167, abs=1e-4)
    same = evaluate_trackingnet(folder / "dummy_GT.zip", folder / "dummy_GT.zip")
    assert (same.coverage, same.success, same.precision, same.norm_precision) == (100.0, 100.0, 100.0, 100.0)


# ----------------------------------------------------------------------------------------- CLI




def test_cli_prints_ostrack_table_and_writes_outputs(analysis_cli, shared_data, tmp_path, capsys):
    argv = ["--dataset", "otb", "--result_dir", str(shared_data / "otb100_results_ATOM"), "--name", "ATOM",
            "--save_dir", str(tmp_path / "out"), "--per_sequence", "--per_attribute", "--plots",
            "--json", str(tmp_path / "report.json")]
    assert run_main(analysis_cli.main, argv) == 0
    out = capsys.readouterr().out
    assert "Reporting results over 3 / 3 sequences" in out
    assert "otb       | AUC        | OP50       | OP75       | Precision    | Norm Precision    |" in out
    assert "ATOM      | 71.33      | 88.74      | 70.52      | 90.09        | 87.12             |" in out
    assert "Couple (ID=0)" in out and "FM (2)" in out and "AUC per attribute" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["scores"]["ATOM"]["AUC"] == pytest.approx(71.3252, abs=1e-3)
    assert (tmp_path / "out" / "test" / "result_plots" / "otb" / "success_plot.png").is_file()
    assert (tmp_path / "out" / "test" / "result_plots" / "otb" / "metrics_cache.json").is_file()
    # second run is served from the cache and prints the same table
    assert run_main(analysis_cli.main, argv[:6] + ["--save_dir", str(tmp_path / "out")]) == 0
    assert "ATOM      | 71.33      | 88.74" in capsys.readouterr().out


def test_cli_own_runs_and_partial_failure_exit_code(analysis_cli, shared_data, tmp_path, capsys):
    results = results_folder(get_paths(save_dir=tmp_path / "out"), "mytrk", "cfg")
    results.mkdir(parents=True)
    for name in OTB_MINI:
        source = shared_data / "otb100_results_ATOM" / f"{name.lower()}.txt"
        (results / f"{name}.txt").write_bytes(source.read_bytes())
        (results / f"{name}_time.txt").write_text("0.02\n" * 10)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "Couple.txt").write_text("1,2,-3,4\n")
    argv = ["--dataset", "otb", "--tracker", "mytrk", "--param", "cfg", "--result_dir", str(broken),
            "--save_dir", str(tmp_path / "out")]
    assert run_main(analysis_cli.main, argv) == 1
    out = capsys.readouterr().out
    assert "mytrk_cfg      | 71.33" in out and "| FPS" in out and "| 50.00" in out
    assert "not scored: 'broken'" in out and "negative width or height" in out and "Crossing" in out


def test_cli_usage_errors_are_one_line_with_exit_code_2(analysis_cli, tmp_path, capsys):
    assert run_main(analysis_cli.main, ["--dataset", "otb", "--result_dir", str(tmp_path / "nope"),
                                        "--save_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err and "nope" in err
    assert run_main(analysis_cli.main, ["--dataset", "otb", "--tracker", "a", "--tracker", "b", "--param", "x",
                                        "--param", "y", "--param", "z", "--save_dir", str(tmp_path)]) == 2
    assert "--param" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_main(analysis_cli.main, ["--dataset", "otb", "--result_dir", str(empty),
                                        "--save_dir", str(tmp_path)]) == 2
    assert "no tracker could be scored" in capsys.readouterr().err


@pytest.mark.e2e
def test_cli_end_to_end_with_the_dataset_reader(shared_data, tmp_path):
    script = str(REPO_ROOT / "tracking" / "analysis_results.py")
    command = [sys.executable, script, "--dataset", "otb", "--dataset_root", str(shared_data / "otb_mini_sequences"),
               "--sequences", *OTB_MINI, "--save_dir", str(tmp_path)]
    ok = subprocess.run(command + ["--result_dir", str(shared_data / "otb100_results_ATOM"), "--name", "ATOM"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "ATOM      | 71.33      | 88.74      | 70.52      | 90.09        | 87.12             |" in ok.stdout
    bad = subprocess.run(command + ["--result_dir", str(tmp_path / "missing")], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


@pytest.mark.e2e
def test_pack_cli_writes_once_and_refuses_to_overwrite(tmp_path):
    folder = results_subfolder(results_folder(get_paths(save_dir=tmp_path / "out"), "trk", "cfg"), "trackingnet")
    folder.mkdir(parents=True)
    (folder / "abc_0.txt").write_text("1.5\t2\t3\t4\n")
    command = [sys.executable, str(REPO_ROOT / "tracking" / "pack_trackingnet.py"), "--tracker", "trk",
               "--param", "cfg", "--save_dir", str(tmp_path / "out")]
    first = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert (folder.parent / "trackingnet_submit.zip").is_file() and (folder / "abc_0.txt").is_file()
    second = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert second.returncode == 2 and "already exists" in second.stderr and "--force" in second.stderr


def test_cli_got10k_val_adds_ao_and_sr(monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(str(REPO_ROOT / "tracking"))
    module = importlib.import_module("analysis_results")
    gt = np.tile([10.0, 10.0, 20.0, 20.0], (4, 1))
    sequences = [Sequence(f"GOT-10k_Val_{i:06d}", [], "got10k", gt,
                          extras={"cover": np.array([8, 8, 8, 0]), "resolution": (64, 64)}) for i in (1, 2)]
    monkeypatch.setattr(workflow, "load_dataset", lambda name, paths, root, names: sequences)
    run = results_subfolder(results_folder(get_paths(save_dir=tmp_path / "out"), "trk", "cfg"), "got10k")
    run.mkdir(parents=True)
    for seq, shift in zip(sequences, (0.0, 10.0), strict=True):  # IoU 1 and 1/3 on frames 1-2; frame 3 is hidden
        np.savetxt(run / f"{seq.name}.txt", gt + [shift, 0, 0, 0], fmt="%d", delimiter="\t")
    argv = ["--dataset", "got10k_val", "--tracker", "trk", "--param", "cfg", "--save_dir", str(tmp_path / "out"),
            "--json", str(tmp_path / "r.json")]
    assert run_main(module.main, argv) == 0
    out = capsys.readouterr().out
    assert "got10k_val (GOT-10k)" in out and "| AO         | SR0.50" in out and "trk_cfg" in out
    got = json.loads((tmp_path / "r.json").read_text())["got10k"]["trk_cfg"]["overall"]
    assert got["ao"] == pytest.approx((1 + 1 + 1 / 3 + 1 / 3) / 4) and got["sr"] == pytest.approx(0.5)
