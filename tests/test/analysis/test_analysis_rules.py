"""Unit tests of the OPE metric rules, the result loader, the cache, the report and the packers (synthetic data)."""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lib.test.analysis import analysis as analysis_module
from lib.test.analysis.analysis import analyse
from lib.test.analysis.cache import MetricsCache
from lib.test.analysis.got10k import evaluate_got10k
from lib.test.analysis.metrics import (
    CENTER_THRESHOLDS,
    NORM_CENTER_THRESHOLDS,
    OP50_INDEX,
    OP75_INDEX,
    OVERLAP_THRESHOLDS,
    AnnotationError,
    InvalidResultError,
    evaluate_sequence,
    frame_errors,
)
from lib.test.analysis.report import format_report, format_table, write_json
from lib.test.analysis.result_files import TrackerSpec, load_result_boxes, parse_result_boxes
from lib.test.evaluation.data import Sequence
from lib.test.utils.packing import PackingError, pack_got10k, pack_trackingnet
from lib.utils.boxes import pytracking_box_iou

GT_BOX = [10.0, 20.0, 40.0, 30.0]


def constant_gt(num_frames: int, box=GT_BOX) -> np.ndarray:
    return np.tile(np.asarray(box, dtype=np.float64), (num_frames, 1))


def write_boxes(path: Path, boxes, delimiter: str = "\t") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(delimiter.join(f"{v:g}" for v in row) + "\n" for row in np.asarray(boxes)))
    return path


# ------------------------------------------------------------------------------------------ formulas


def test_threshold_sets_match_ostrack():
    assert len(OVERLAP_THRESHOLDS) == 21 and len(CENTER_THRESHOLDS) == 51 and len(NORM_CENTER_THRESHOLDS) == 51
    assert OVERLAP_THRESHOLDS[OP50_INDEX] == 0.5 and OVERLAP_THRESHOLDS[OP75_INDEX] == 0.75
    assert CENTER_THRESHOLDS[20] == 20.0 and NORM_CENTER_THRESHOLDS[20] == 0.2


def test_iou_plus_one_convention_equals_continuous_iou():
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.uniform(0, 50, (200, 2)), rng.uniform(1, 40, (200, 2))], axis=1)
    b = np.concatenate([rng.uniform(0, 50, (200, 2)), rng.uniform(1, 40, (200, 2))], axis=1)
    inter_w = np.clip(np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    inter_h = np.clip(np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = inter_w * inter_h
    expected = inter / (a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter)
    np.testing.assert_allclose(pytracking_box_iou(a, b), expected, rtol=1e-12, atol=1e-12)
    assert pytracking_box_iou(np.array([[0.0, 0, 10, 10]]), np.array([[5.0, 0, 10, 10]]))[0] == pytest.approx(50 / 150)


def test_overlap_uses_strict_greater_and_distances_use_at_most():
    gt = constant_gt(3, [0, 0, 10, 10])
    pred = np.array([[0, 0, 10, 10], [0, 0, 5, 10], [20, 0, 10, 10]], dtype=float)  # IoU 1, exactly 0.5, 0
    metrics = evaluate_sequence(pred, gt, "otb")
    assert metrics.success[OP50_INDEX] == pytest.approx(1 / 3)       # IoU 0.5 is not > 0.5
    assert metrics.success[OP50_INDEX - 1] == pytest.approx(2 / 3)
    assert metrics.success[0] == pytest.approx(2 / 3)                # IoU 0 is not > 0
    assert metrics.success[-1] == 0.0
    assert metrics.precision[20] == pytest.approx(1.0)                # error of exactly 20 px is <= 20
    assert metrics.precision[19] == pytest.approx(2 / 3)
    assert metrics.auc == pytest.approx(metrics.success.mean())


def test_first_frame_is_replaced_by_ground_truth_and_counted():
    gt = constant_gt(4)
    pred = np.array([[500, 500, 5, 5]] + [[300, 300, 5, 5]] * 3, dtype=float)
    metrics = evaluate_sequence(pred, gt, "otb")
    assert metrics.success[0] == pytest.approx(1 / 4)
    assert metrics.avg_overlap == pytest.approx(1 / 4)


def test_zero_size_predictions_repeat_the_previous_box():
    gt = constant_gt(5)
    good = [12, 22, 40, 30]
    pred = np.array([GT_BOX, good, [0, 0, 0, 0], [50, 50, 10, 0], [100, 100, 5, 5]], dtype=float)
    iou, *_ = frame_errors(pred, gt, "otb")
    expected_iou = pytracking_box_iou(np.array([good]), np.array([GT_BOX]))[0]
    np.testing.assert_allclose(iou[1:4], expected_iou)
    assert iou[4] == 0.0


def test_zero_size_repair_skips_frames_whose_ground_truth_is_nan():
    gt = constant_gt(3)
    gt[2] = np.nan
    pred = np.array([GT_BOX, [12, 22, 40, 30], [0, 0, 0, 0]], dtype=float)
    iou, err, norm_err, valid = frame_errors(pred, gt, "uav")
    assert not valid[2] and iou[2] == -1.0 and err[2] == -1.0 and norm_err[2] == -1.0


@pytest.mark.parametrize("bad_row, message", [([np.nan, 1, 2, 3], "NaN"), ([1, 2, -3, 4], "negative"),
                                              ([1, 2, np.inf, 4], "infinite")])
def test_invalid_predictions_are_errors_naming_the_line(bad_row, message):
    pred = constant_gt(4)
    pred[2] = bad_row
    with pytest.raises(InvalidResultError, match=message) as info:
        evaluate_sequence(pred, constant_gt(4), "otb")
    assert "line 3" in str(info.value)


def test_lasot_short_result_is_an_error_other_tags_are_zero_padded():
    gt = constant_gt(10)
    with pytest.raises(InvalidResultError, match="8 lines for 10 ground-truth frames"):
        evaluate_sequence(gt[:8], gt, "lasot", np.ones(10, bool))
    padded = evaluate_sequence(gt[:8], gt, "otb")
    assert padded.success[0] == pytest.approx(0.8) and padded.precision[20] == pytest.approx(0.8)


def test_long_result_is_truncated():
    gt = constant_gt(5)
    pred = np.concatenate([gt, [[0, 0, 0, 0], [900, 900, 1, 1]]])  # zero size beyond the GT: no crash
    metrics = evaluate_sequence(pred, gt, "lasot", np.ones(5, bool))
    assert metrics.success[0] == 1.0 and metrics.num_frames == 5


def test_nan_ground_truth_only_allowed_for_uav():
    gt = constant_gt(4)
    gt[2] = np.nan
    pred = constant_gt(4)
    with pytest.raises(AnnotationError, match="NaN"):
        evaluate_sequence(pred, gt, "otb")
    metrics = evaluate_sequence(pred, gt, "uav")
    assert metrics.success[0] == pytest.approx(0.75)       # IoU failure
    assert metrics.precision[0] == pytest.approx(1.0)      # centre-error success (uav rule)
    assert metrics.norm_precision[0] == pytest.approx(1.0)


def test_invalid_and_invisible_frame_rules_per_tag():
    gt = constant_gt(4)
    gt[1, 2] = 0.0  # invalid GT size
    visible = np.array([True, True, False, True])
    pred = constant_gt(4)
    otb = evaluate_sequence(pred, gt, "otb")
    assert (otb.success[0], otb.precision[50], otb.norm_precision[0]) == pytest.approx((0.75, 0.75, 1.0))
    lasot = evaluate_sequence(pred, gt, "lasot", visible)
    assert (lasot.success[0], lasot.precision[50], lasot.norm_precision[0]) == pytest.approx((0.5, 0.5, 0.75))
    ext = evaluate_sequence(pred, gt, "lasot_extension_subset", visible)  # OSTrack's tag-string wrinkle
    assert (ext.success[0], ext.precision[50], ext.norm_precision[0]) == pytest.approx((0.5, 0.5, 1.0))


def test_exclude_invalid_frames_divides_by_valid_frames_only():
    gt = constant_gt(4)
    visible = np.array([True, False, True, True])
    pred = constant_gt(4)
    assert evaluate_sequence(pred, gt, "lasot", visible).success[0] == pytest.approx(0.75)
    excluded = evaluate_sequence(pred, gt, "lasot", visible, exclude_invalid_frames=True)
    assert excluded.success[0] == pytest.approx(1.0) and excluded.num_valid_frames == 3
    uav_gt = gt.copy()
    uav_gt[1] = np.nan
    # OSTrack quirk kept for parity: invalid frames stay precision successes, so the curve exceeds 1
    assert evaluate_sequence(pred, uav_gt, "uav", exclude_invalid_frames=True).precision[0] == pytest.approx(4 / 3)


# ------------------------------------------------------------------------------------------- loading


def test_loader_reads_tab_comma_crlf_mixed_and_single_rows(tmp_path):
    (tmp_path / "tab.txt").write_text("1\t2\t3\t4\n5\t6\t7\t8\n")
    (tmp_path / "comma.txt").write_bytes(b"1,2,3,4\r\n5,6,7,8\r\n")
    (tmp_path / "mixed.txt").write_text("1,2,3,4\n5 6 7 8\n")
    (tmp_path / "one.txt").write_text("1,2,3,4\n")
    for name in ("tab", "comma", "mixed"):
        np.testing.assert_array_equal(load_result_boxes(tmp_path / f"{name}.txt"), [[1, 2, 3, 4], [5, 6, 7, 8]])
    assert load_result_boxes(tmp_path / "one.txt").shape == (1, 4)


@pytest.mark.parametrize("content, message", [("", "empty"), ("1,2,3\n", "3 values per line"),
                                              ("1,2,3,4\n5,6\n", "not a table"), ("a,b,c,d\n", "not a table")])
def test_loader_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "seq.txt"
    path.write_text(content)
    with pytest.raises(InvalidResultError, match=message) as info:
        load_result_boxes(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------------- analysis & cache


def make_sequences(num: int = 3, frames: int = 20, tag: str = "otb") -> list[Sequence]:
    rng = np.random.default_rng(1)
    sequences = []
    for index in range(num):
        gt = np.concatenate([rng.uniform(0, 100, (frames, 2)), rng.uniform(10, 50, (frames, 2))], axis=1)
        sequences.append(Sequence(f"seq{index}", [], tag, gt))
    return sequences


def write_run(folder: Path, sequences: list[Sequence], shift: float = 3.0, times: bool = False) -> Path:
    for seq in sequences:
        pred = seq.ground_truth_rect + np.array([shift, -shift, 0, 0])
        write_boxes(folder / f"{seq.name}.txt", pred)
        if times:
            (folder / f"{seq.name}_time.txt").write_text("".join("0.010000\n" for _ in pred))
    return folder


def test_broken_result_file_drops_only_that_tracker_and_names_everything(tmp_path):
    sequences = make_sequences()
    good = write_run(tmp_path / "good", sequences)
    bad = write_run(tmp_path / "bad", sequences)
    write_boxes(bad / "seq1.txt", [[1, 2, np.nan, 4]] * 20)
    report = analyse(sequences, [TrackerSpec.from_folder(good, "Good"), TrackerSpec.from_folder(bad, "Bad")], "t")
    assert [t.name for t in report.scored_trackers] == ["Good"]
    assert report.scored_sequences == ["seq0", "seq1", "seq2"]
    (failure,) = report.failures
    assert failure.tracker == "Bad" and failure.sequence == "seq1" and failure.path == bad / "seq1.txt"
    text = format_report(report)
    assert "not scored: 'Bad'" in text and str(bad / "seq1.txt") in text and "NaN" in text


def test_skip_missing_seq_drops_the_sequence_for_every_tracker(tmp_path):
    sequences = make_sequences()
    good = write_run(tmp_path / "good", sequences)
    partial = write_run(tmp_path / "partial", sequences)
    (partial / "seq2.txt").unlink()
    specs = [TrackerSpec.from_folder(good, "Good"), TrackerSpec.from_folder(partial, "Partial")]
    report = analyse(sequences, specs, "t", skip_failed_sequences=True)
    assert report.scored_sequences == ["seq0", "seq1"]
    assert sorted(report.scores()) == ["Good", "Partial"]
    assert "not found" in report.failures[0].reason
    assert "Reporting results over 2 / 3 sequences" in format_report(report)


def test_merged_runs_average_per_sequence_curves(tmp_path):
    sequences = make_sequences(2)
    write_run(tmp_path / "trk" / "cfg_000", sequences, shift=0.0)
    write_run(tmp_path / "trk" / "cfg_001", sequences, shift=30.0)
    merged = TrackerSpec.from_run(tmp_path, "trk", "cfg", [0, 1])
    assert merged.display_name == "trk_cfg"
    singles = [TrackerSpec.from_run(tmp_path, "trk", "cfg", [run]) for run in (0, 1)]
    report = analyse(sequences, [merged] + singles, "t")
    scores = report.scores()
    assert scores["trk_cfg"].auc == pytest.approx((scores["trk_cfg_000"].auc + scores["trk_cfg_001"].auc) / 2)


def test_fps_comes_from_time_files(tmp_path):
    sequences = make_sequences(2)
    timed = write_run(tmp_path / "timed", sequences, times=True)
    untimed = write_run(tmp_path / "untimed", sequences)
    scores = analyse(sequences, [TrackerSpec.from_folder(timed), TrackerSpec.from_folder(untimed)], "t").scores()
    assert scores["timed"].fps == pytest.approx(100.0) and scores["untimed"].fps is None


def test_results_in_tag_subfolder_are_found(tmp_path):
    sequences = make_sequences(1, tag="got10k")
    write_run(tmp_path / "run" / "got10k", sequences)
    report = analyse(sequences, [TrackerSpec.from_folder(tmp_path / "run")], "t")
    assert not report.failures


def write_fixed_width(path: Path, boxes: np.ndarray) -> None:
    """Every value takes 8 characters, so moving a box keeps the file size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(",".join(f"{v:08.2f}" for v in row) + "\n" for row in boxes))


def test_cache_is_reused_and_invalidated_when_a_result_file_changes(tmp_path, monkeypatch):
    sequences = make_sequences(2)
    folder = tmp_path / "trk"
    for seq in sequences:
        write_fixed_width(folder / f"{seq.name}.txt", seq.ground_truth_rect + 2.0)
    calls = []
    original = analysis_module.evaluate_sequence
    monkeypatch.setattr(analysis_module, "evaluate_sequence", lambda *a, **k: calls.append(1) or original(*a, **k))
    cache_file = tmp_path / "cache" / "metrics_cache.json"
    spec = [TrackerSpec.from_folder(folder)]
    first = analyse(sequences, spec, "t", cache=MetricsCache(cache_file)).scores()["trk"]
    assert len(calls) == 2 and cache_file.is_file()
    again = analyse(sequences, spec, "t", cache=MetricsCache(cache_file)).scores()["trk"]
    assert len(calls) == 2 and again.auc == first.auc
    # OSTrack's stale-cache case: same name, same size, same mtime; only the content differs
    target = folder / "seq0.txt"
    stat = target.stat()
    write_fixed_width(target, sequences[0].ground_truth_rect + np.array([60.0, 2.0, 2.0, 2.0]))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert target.stat().st_size == stat.st_size and target.stat().st_mtime_ns == stat.st_mtime_ns
    after = analyse(sequences, spec, "t", cache=MetricsCache(cache_file)).scores()["trk"]
    assert len(calls) == 3 and after.auc < first.auc
    forced = analyse(sequences, spec, "t", cache=MetricsCache(cache_file, load=False)).scores()["trk"]
    assert len(calls) == 5 and forced.auc == after.auc


def test_cache_depends_on_ground_truth_and_options(tmp_path):
    sequences = make_sequences(1)
    folder = write_run(tmp_path / "trk", sequences)
    cache = MetricsCache(tmp_path / "c.json")
    spec = [TrackerSpec.from_folder(folder)]
    before = analyse(sequences, spec, "t", cache=cache).scores()["trk"].auc
    moved = [Sequence("seq0", [], "otb", sequences[0].ground_truth_rect + np.array([5.0, 0, 0, 0]))]
    assert analyse(moved, spec, "t", cache=cache).scores()["trk"].auc != before


def test_corrupt_cache_is_ignored_with_a_warning(tmp_path):
    (tmp_path / "c.json").write_text("{not json")
    cache = MetricsCache(tmp_path / "c.json")
    assert cache.warning and "rebuilt" in cache.warning


def test_report_table_matches_ostrack_layout():
    rows = {"ATOM": {"AUC": 51.4337, "OP50": 59.1743, "OP75": 42.6137, "Precision": 50.5428,
                     "Norm Precision": 57.6825},
            "DiMP50": {"AUC": 57.08, "OP50": 67.35, "OP75": 46.89, "Precision": 56.9, "Norm Precision": 65.19}}
    assert format_table("lasot", rows) == (
        "lasot       | AUC        | OP50       | OP75       | Precision    | Norm Precision    |\n"
        "ATOM        | 51.43      | 59.17      | 42.61      | 50.54        | 57.68             |\n"
        "DiMP50      | 57.08      | 67.35      | 46.89      | 56.90        | 65.19             |")


def test_json_export_is_strict_json(tmp_path):
    sequences = make_sequences(2)
    sequences[0].ground_truth_rect[:, 2] = 0.0  # no valid frame: avg overlap NaN -> null
    folder = write_run(tmp_path / "trk", sequences)
    report = analyse(sequences, [TrackerSpec.from_folder(folder)], "t")
    content = json.loads(write_json(tmp_path / "out" / "r.json", report.to_dict()).read_text())
    assert content["per_sequence"]["seq0"]["trk"]["avg_overlap"] is None
    assert content["scores"]["trk"]["AUC"] == pytest.approx(report.scores()["trk"].auc)


def test_plots_are_written_as_png_and_pdf(tmp_path):
    from lib.test.analysis.plots import plot_scores

    sequences = make_sequences(2)
    specs = [TrackerSpec.from_folder(write_run(tmp_path / name, sequences, shift=s), name)
             for name, s in (("A", 1.0), ("B", 8.0))]
    written = plot_scores(analyse(sequences, specs, "t").scores(), tmp_path / "plots", "t")
    assert sorted(p.name for p in written) == sorted(f"{stem}.{ext}" for stem in
                                                     ("success_plot", "precision_plot", "norm_precision_plot")
                                                     for ext in ("png", "pdf"))
    assert all(p.stat().st_size > 1000 for p in written)
    assert not [p for p in (tmp_path / "plots").iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------- GOT-10k


def test_got10k_ao_pools_frames_skips_frame_zero_and_hidden_frames(tmp_path):
    gt = constant_gt(5, [0, 0, 10, 10])
    seq = Sequence("GOT-10k_Val_000001", [], "got10k", gt,
                   extras={"cover": np.array([8, 8, 0, 8, 8]), "resolution": (100, 100)})
    pred = np.array([[0, 0, 10, 10], [0, 0, 5, 10], [50, 50, 10, 10], [0, 0, 10, 10], [20, 20, 10, 10]], float)
    write_boxes(tmp_path / "run" / "got10k" / f"{seq.name}.txt", pred)
    report = evaluate_got10k([seq], [tmp_path / "run"])
    assert not report.failures
    assert report.overall.ao == pytest.approx((0.5 + 1.0 + 0.0) / 3)   # frames 1, 3, 4
    assert report.overall.sr50 == pytest.approx(1 / 3)                 # 0.5 is not > 0.5


def test_got10k_toolkit_layout_repetitions_and_image_clipping(tmp_path):
    gt = constant_gt(3, [90, 90, 20, 20])  # sticks out of a 100 x 100 image: clipped to 10 x 10
    seq = Sequence("s", [], "got10k", gt, extras={"resolution": (100, 100)})
    write_boxes(tmp_path / "tk" / "s" / "s_001.txt", constant_gt(3, [90, 90, 10, 10]), ",")
    write_boxes(tmp_path / "tk" / "s" / "s_002.txt", constant_gt(3, [0, 0, 10, 10]), ",")
    report = evaluate_got10k([seq], [tmp_path / "tk"])
    assert report.overall.ao == pytest.approx(0.5) and report.overall.num_frames == 4


# ------------------------------------------------------------------------------------------- packing


def make_result_folder(folder: Path) -> dict[Path, tuple[bytes, int]]:
    write_boxes(folder / "seqA.txt", [[1.7, -1.7, 10.9, 20.2], [2, 3, 4, 5]])
    write_boxes(folder / "seqB.txt", [[1, 2, 3, 4]])
    (folder / "seqA_time.txt").write_text("0.100000\n0.010000\n")
    (folder / "seqB_time.txt").write_text("0.100000\n")
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}


def assert_untouched(before: dict[Path, tuple[bytes, int]]) -> None:
    for path, (content, mtime) in before.items():
        assert path.read_bytes() == content and path.stat().st_mtime_ns == mtime


def test_pack_got10k_layout_integers_and_sources_untouched(tmp_path):
    folder = tmp_path / "run" / "got10k"
    before = make_result_folder(folder)
    summary = pack_got10k(folder, tmp_path / "run" / "got10k_submit.zip")
    assert_untouched(before)
    with zipfile.ZipFile(summary.zip_path) as archive:
        assert sorted(archive.namelist()) == ["seqA/seqA_001.txt", "seqA/seqA_time.txt",
                                              "seqB/seqB_001.txt", "seqB/seqB_time.txt"]
        assert archive.read("seqA/seqA_001.txt").decode() == "1,-1,10,20\n2,3,4,5\n"  # truncated toward zero
        assert archive.read("seqA/seqA_time.txt") == before[folder / "seqA_time.txt"][0]
    assert any("180" in w for w in summary.warnings)


def test_pack_trackingnet_is_flat_and_never_overwrites_without_force(tmp_path):
    folder = tmp_path / "trackingnet"
    before = make_result_folder(folder)
    target = tmp_path / "submit.zip"
    pack_trackingnet(folder, target)
    with zipfile.ZipFile(target) as archive:
        assert sorted(archive.namelist()) == ["seqA.txt", "seqB.txt"]
    first = target.read_bytes()
    with pytest.raises(PackingError, match="already exists"):
        pack_trackingnet(folder, target)
    assert target.read_bytes() == first
    pack_trackingnet(folder, target, force=True)
    assert zipfile.is_zipfile(target)
    assert_untouched(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submit.zip", "trackingnet"]  # no leftovers


def test_packer_rejects_bad_results_without_writing(tmp_path):
    folder = tmp_path / "trackingnet"
    make_result_folder(folder)
    write_boxes(folder / "seqC.txt", [[1, 2, np.nan, 4]])
    with pytest.raises(PackingError, match="seqC.txt"):
        pack_trackingnet(folder, tmp_path / "submit.zip")
    assert not (tmp_path / "submit.zip").exists()
    with pytest.raises(PackingError, match="does not exist"):
        pack_got10k(tmp_path / "missing", tmp_path / "x.zip")


def test_parse_result_boxes_rejects_nan_free_garbage_with_source_label():
    with pytest.raises(InvalidResultError, match="<memory>"):
        parse_result_boxes("x", "<memory>")
