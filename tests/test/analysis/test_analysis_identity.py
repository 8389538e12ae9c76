"""What an analysis scored: result files of the wrong length, run identity in --json, cache flags (synthetic data).

The command line runs in-process (``tracking/analysis_results.py``'s ``main`` through ``run_main``) on three
generated sequences that replace the dataset reader.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from lib.test.analysis import analysis as analysis_module
from lib.test.analysis import workflow
from lib.test.analysis.analysis import analyse
from lib.test.analysis.metrics import LENGTH_PADDED, LENGTH_TRUNCATED
from lib.test.analysis.result_files import TrackerSpec, load_result_boxes
from lib.test.evaluation.data import Sequence
from lib.test.utils.packing import run_results_folder
from lib.utils import run_layout
from lib.utils.cli import run_main
from lib.utils.paths import get_paths
from lib.utils.provenance import files_digest, write_manifest

REPO_ROOT = Path(__file__).resolve().parents[3]
FRAMES = 20
SHORT_ROWS = 12
# Centre (-0.5, -0.5) like the zero box that fit_length pads with, and no overlap with any ground truth here,
# so a file padded by hand with it scores exactly like a short file padded by the metric.
FAILURE_BOX = [-1.0, -1.0, 2.0, 2.0]


def make_sequences(num: int = 3) -> list[Sequence]:
    rng = np.random.default_rng(7)
    return [Sequence(f"seq{i}", [], "otb", np.concatenate([rng.uniform(20, 100, (FRAMES, 2)),
                                                           rng.uniform(10, 50, (FRAMES, 2))], axis=1))
            for i in range(num)]


def write_boxes(path: Path, boxes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(f"{v:g}" for v in row) + "\n" for row in np.asarray(boxes)))
    return path


def write_run(folder: Path, sequences: list[Sequence], shift: float = 3.0) -> Path:
    for seq in sequences:
        write_boxes(folder / f"{seq.name}.txt", seq.ground_truth_rect + np.array([shift, -shift, 0, 0]))
    return folder


def shorten(path: Path, rows: int = SHORT_ROWS) -> np.ndarray:
    """Cut a result file to ``rows`` lines; returns the boxes it had."""
    boxes = load_result_boxes(path)
    write_boxes(path, boxes[:rows])
    return boxes


@pytest.fixture
def sequences() -> list[Sequence]:
    return make_sequences()


@pytest.fixture
def cli(monkeypatch, sequences):
    """``tracking/analysis_results.py`` in-process, reading ``sequences`` as dataset 'otb'."""
    monkeypatch.syspath_prepend(str(REPO_ROOT / "tracking"))
    module = importlib.import_module("analysis_results")
    monkeypatch.setattr(workflow, "load_dataset", lambda name, paths, root, names: sequences)
    return module


@pytest.fixture
def evaluations(monkeypatch) -> list[int]:
    """Counts the per-sequence metric computations (cache misses)."""
    calls: list[int] = []
    original = analysis_module.evaluate_sequence
    monkeypatch.setattr(analysis_module, "evaluate_sequence", lambda *a, **k: calls.append(1) or original(*a, **k))
    return calls


def warnings_in(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("warning: ")]


# ------------------------------------------------------------------------------------ length mismatches


def test_short_and_long_files_score_as_the_reference_toolkit_and_are_listed(sequences, tmp_path):
    plain = write_run(tmp_path / "plain", sequences)
    short = write_run(tmp_path / "short", sequences)
    boxes = shorten(short / "seq1.txt")
    by_hand = write_run(tmp_path / "by_hand", sequences)
    write_boxes(by_hand / "seq1.txt", np.concatenate([boxes[:SHORT_ROWS],
                                                       np.tile(FAILURE_BOX, (FRAMES - SHORT_ROWS, 1))]))
    long = write_run(tmp_path / "long", sequences)
    write_boxes(long / "seq2.txt", np.concatenate([load_result_boxes(long / "seq2.txt"), np.tile(FAILURE_BOX, (3, 1))]))
    report = analyse(sequences, [TrackerSpec.from_folder(f) for f in (plain, short, by_hand, long)], "t")
    assert not report.failures
    scores = report.scores()
    for curve in ("success_curve", "precision_curve", "norm_precision_curve"):
        np.testing.assert_array_equal(getattr(scores["short"], curve), getattr(scores["by_hand"], curve))
        np.testing.assert_array_equal(getattr(scores["long"], curve), getattr(scores["plain"], curve))
    assert scores["short"].auc < scores["plain"].auc
    assert [(m.tracker, m.sequence, m.path, m.rows, m.expected_rows, m.fix) for m in report.length_mismatches] == [
        ("short", "seq1", short / "seq1.txt", SHORT_ROWS, FRAMES, LENGTH_PADDED),
        ("long", "seq2", long / "seq2.txt", FRAMES + 3, FRAMES, LENGTH_TRUNCATED)]

    strict = analyse(sequences, [TrackerSpec.from_folder(f) for f in (plain, short, long)], "t", strict_length=True)
    assert [t.name for t in strict.scored_trackers] == ["plain"] and not strict.length_mismatches
    short_failure, long_failure = strict.failures
    assert (short_failure.tracker, short_failure.path) == ("short", short / "seq1.txt")
    assert (long_failure.tracker, long_failure.path) == ("long", long / "seq2.txt")
    assert f"{SHORT_ROWS} lines for {FRAMES} ground-truth frames" in short_failure.reason
    assert f"{FRAMES + 3} lines for {FRAMES} ground-truth frames" in long_failure.reason


def test_cli_warns_about_each_mismatch_also_when_served_from_the_cache(cli, sequences, tmp_path, capsys,
                                                                        evaluations):
    good = write_run(tmp_path / "good", sequences)
    short = write_run(tmp_path / "short", sequences, shift=4.0)  # other bytes than 'good': six cache entries
    shorten(short / "seq1.txt")
    argv = ["--dataset", "otb", "--result_dir", str(good), "--result_dir", str(short),
            "--save_dir", str(tmp_path / "out"), "--json", str(tmp_path / "report.json")]
    expected_warning = (f"warning: {short / 'seq1.txt'}: {SHORT_ROWS} rows for {FRAMES} ground-truth frames "
                        "(tracker 'short', sequence 'seq1'); padded with failures as the reference toolkit does")
    expected_json = [{"tracker": "short", "sequence": "seq1", "path": str(short / "seq1.txt"), "rows": SHORT_ROWS,
                      "expected_rows": FRAMES, "fix": LENGTH_PADDED}]
    for expected_evaluations in (6, 6):  # the second run is a cache hit for every file
        assert run_main(cli.main, argv) == 0
        out = capsys.readouterr().out
        assert warnings_in(out) == [expected_warning]
        assert "short " in out and "not scored" not in out
        assert json.loads((tmp_path / "report.json").read_text())["length_mismatches"] == expected_json
        assert len(evaluations) == expected_evaluations


def test_cli_strict_turns_a_mismatch_into_a_failure_with_exit_code_1(cli, sequences, tmp_path, capsys):
    good = write_run(tmp_path / "good", sequences)
    short = write_run(tmp_path / "short", sequences)
    shorten(short / "seq1.txt")
    argv = ["--dataset", "otb", "--result_dir", str(good), "--result_dir", str(short),
            "--save_dir", str(tmp_path / "out"), "--json", str(tmp_path / "report.json")]
    assert run_main(cli.main, argv) == 0  # fills the cache: --strict must not be fooled by it
    capsys.readouterr()
    assert run_main(cli.main, argv + ["--strict"]) == 1
    out = capsys.readouterr().out
    assert "good " in out and "not scored: 'short'" in out and str(short / "seq1.txt") in out
    assert f"{SHORT_ROWS} lines for {FRAMES} ground-truth frames" in out and "--strict" in out
    assert not warnings_in(out)
    report = json.loads((tmp_path / "report.json").read_text())
    assert list(report["scores"]) == ["good"] and list(report["dropped_trackers"]) == ["short"]
    assert report["options"]["strict_length"] is True and report["length_mismatches"] == []
    # nothing left to score: a usage-level failure, as for any other invalid result
    assert run_main(cli.main, ["--dataset", "otb", "--result_dir", str(short), "--strict",
                               "--save_dir", str(tmp_path / "out")]) == 2
    assert "no tracker could be scored" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- cache


def test_no_cache_and_its_alias_force_recompute_every_metric(cli, sequences, tmp_path, capsys, evaluations):
    folder = write_run(tmp_path / "trk", sequences)
    argv = ["--dataset", "otb", "--result_dir", str(folder), "--save_dir", str(tmp_path / "out")]
    cache_file = run_layout.plots_root(get_paths(save_dir=tmp_path / "out")) / "otb" / workflow.CACHE_FILE_NAME
    assert run_main(cli.main, argv) == 0 and len(evaluations) == 3 and cache_file.is_file()
    assert run_main(cli.main, argv) == 0 and len(evaluations) == 3
    assert run_main(cli.main, argv + ["--no_cache"]) == 0 and len(evaluations) == 6
    assert run_main(cli.main, argv + ["--force"]) == 0 and len(evaluations) == 9
    assert cli.build_parser().parse_args(["--dataset", "otb", "--force"]).no_cache is True
    assert "--no_cache" in cli.build_parser().format_help()
    capsys.readouterr()


# ------------------------------------------------------------------------------------------- identity


def tracking_manifest(run_folder: Path) -> dict:
    return {"manifest_version": 1, "kind": "tracking", "config_file": "/cfg/vitb_256.yaml",
            "config_digest": "c" * 64, "config": {"MODEL": {"BACKBONE": "vit_base"}},
            "checkpoint": {"path": "/ckpt/OSTrack_ep0300.pth.tar", "sha256": "d" * 64}, "backend": "eager",
            "datasets": {"otb": {"sequences": 3}},
            "environment": {"code": {"commit": "0123abcd", "dirty": False}, "torch": "2.3.0", "cuda": None,
                            "host": "box"},
            "started": "2024-05-01T10:00:00+00:00", "finished": "2024-05-01T10:05:00+00:00"}


def test_json_identity_holds_the_manifest_or_a_digest_of_the_scored_files(cli, sequences, tmp_path, capsys):
    paths = get_paths(save_dir=tmp_path / "out")
    own = write_run(run_layout.results_folder(paths, "trk", "cfg"), sequences)
    manifest = tracking_manifest(own)
    write_manifest(own / run_layout.MANIFEST_NAME, manifest)
    other = write_run(tmp_path / "published" / "ATOM", sequences, shift=5.0)
    (other / "seq0_time.txt").write_text("0.01\n" * FRAMES)  # read for FPS, not a scored result file
    report_file = tmp_path / "report.json"
    argv = ["--dataset", "otb", "--tracker", "trk", "--param", "cfg", "--result_dir", str(other), "--name", "ATOM",
            "--save_dir", str(tmp_path / "out"), "--json", str(report_file)]
    assert run_main(cli.main, argv) == 0
    identity = json.loads(report_file.read_text())["identity"]
    (ours,) = identity["trk_cfg"]
    assert ours["run_dir"] == str(own)
    assert ours["manifest"] == {"kind": "tracking", "config_digest": manifest["config_digest"],
                                "config_file": manifest["config_file"], "checkpoint": manifest["checkpoint"],
                                "backend": "eager", "datasets": manifest["datasets"], "started": manifest["started"],
                                "finished": manifest["finished"], "code": manifest["environment"]["code"]}
    (published,) = identity["ATOM"]
    scored = sorted(other / f"{seq.name}.txt" for seq in sequences)
    assert published["run_dir"] == str(other) and published["manifest"] is None
    assert published["files_digest"] == files_digest(scored, other) and published["num_files"] == 3

    write_boxes(other / "seq2.txt", sequences[2].ground_truth_rect + 1.0)
    assert run_main(cli.main, argv) == 0
    again = json.loads(report_file.read_text())["identity"]
    assert again["ATOM"][0]["files_digest"] != published["files_digest"]
    assert again["ATOM"][0]["files_digest"] == files_digest(scored, other)
    assert again["trk_cfg"][0]["files_digest"] == ours["files_digest"]
    capsys.readouterr()


def test_an_unreadable_manifest_is_recorded_and_does_not_stop_the_analysis(cli, sequences, tmp_path, capsys):
    own = write_run(run_layout.results_folder(get_paths(save_dir=tmp_path / "out"), "trk", "cfg"), sequences)
    (own / run_layout.MANIFEST_NAME).write_text("{not json")
    argv = ["--dataset", "otb", "--tracker", "trk", "--param", "cfg", "--save_dir", str(tmp_path / "out"),
            "--json", str(tmp_path / "report.json")]
    assert run_main(cli.main, argv) == 0
    (warning,) = warnings_in(capsys.readouterr().out)
    assert f"{own} is scored without its manifest" in warning
    (run,) = json.loads((tmp_path / "report.json").read_text())["identity"]["trk_cfg"]
    assert run["manifest"] is None and "cannot read the manifest" in run["manifest_error"]
    assert len(run["files_digest"]) == 64


# --------------------------------------------------------------------------------------------- layout


def test_backend_runs_are_found_where_the_layout_puts_them(cli, sequences, tmp_path, capsys):
    paths = get_paths(save_dir=tmp_path / "out")
    write_run(run_layout.results_folder(paths, "trk", "cfg", 1, "onnx"), sequences)
    argv = ["--dataset", "otb", "--tracker", "trk", "--param", "cfg", "--run_ids", "1", "--backend", "onnx",
            "--save_dir", str(tmp_path / "out")]
    assert run_main(cli.main, argv) == 0
    assert "trk_cfg_001_onnx" in capsys.readouterr().out
    assert run_main(cli.main, ["--dataset", "otb", "--backend", "onnx", "--save_dir", str(tmp_path)]) == 2
    assert "--backend need --tracker" in capsys.readouterr().err
    spec = TrackerSpec.from_run(run_layout.results_root(paths), "trk", "cfg", [0, 1], backend="bf16")
    assert spec.display_name == "trk_cfg_bf16"
    assert spec.run_dirs == tuple(run_layout.results_folder(paths, "trk", "cfg", i, "bf16") for i in (0, 1))
    assert run_results_folder(run_layout.results_root(paths), "trk", "cfg", 2, "got10k", "onnx") == \
        run_layout.results_subfolder(run_layout.results_folder(paths, "trk", "cfg", 2, "onnx"), "got10k")


def test_packers_find_backend_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO_ROOT / "tracking"))
    pack_trackingnet = importlib.import_module("pack_trackingnet")
    paths = get_paths(save_dir=tmp_path / "out")
    folder = run_layout.results_subfolder(run_layout.results_folder(paths, "trk", "cfg", None, "onnx"), "trackingnet")
    write_boxes(folder / "abc_0.txt", [[1.5, 2, 3, 4]])
    argv = ["--tracker", "trk", "--param", "cfg", "--backend", "onnx", "--save_dir", str(tmp_path / "out")]
    assert run_main(pack_trackingnet.main, argv) == 0
    assert (folder.parent / "trackingnet_submit.zip").is_file()
    assert run_main(pack_trackingnet.main, ["--result_dir", str(folder), "--backend", "onnx"]) == 2
    assert "either --result_dir or --tracker" in capsys.readouterr().err
