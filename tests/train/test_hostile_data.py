"""Training on hostile data: bad annotation rows, unparsable and missing files, partial downloads, failing pairs.

The start-up check finds every bad file before training, names it and counts the bad values; the sampler
redraws pairs that fail, deterministically, and never hides a programming error.
"""
from __future__ import annotations

import importlib
import logging
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from lib.config import load_config
from lib.train import run_training
from lib.train.data.annotations import HUGE, INFINITE, NOT_A_NUMBER, parse_box_rows, parse_label_values
from lib.train.data.datasets import CustomFolder, Got10k, TrackingNet
from lib.train.data.health import DataFailureError
from lib.train.data.processing import BadBoxError, CropSettings, PairProcessing, PairRejected, SampleRng
from lib.train.data.sampler import FAILED, TrackingSampler, collate_pairs, sample_seed
from lib.train.data.validation import check_dataset, check_training_data
from lib.utils.boxes import TableFormatError
from lib.utils.cli import run_main
from lib.utils.crop import crop_geometry, crop_misses_image
from lib.utils.errors import DatasetError
from lib.utils.paths import REPO_ROOT, get_paths
from tests.training_fixtures import make_custom_dataset, tiny_training_yaml

SEQUENCES = [f"seq_{i:03d}" for i in range(5)]


def _edit_row(path: Path, row: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[row] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def hostile_got10k(tmp_path_factory) -> Path:
    """GOT-10k layout with an inf, a 1e30 and a text row, a sequence without cover.label, a sequence listed
    in list.txt but not downloaded, and unreadable frames."""
    root = tmp_path_factory.mktemp("got10k")
    make_custom_dataset(root / "train", num_sequences=len(SEQUENCES))
    for name in SEQUENCES:
        (root / "train" / name / "absence.label").write_text("0\n" * 24)
        (root / "train" / name / "cover.label").write_text("8\n" * 24)
    _edit_row(root / "train" / "seq_000" / "groundtruth.txt", 3, "inf,10,20,20")
    _edit_row(root / "train" / "seq_000" / "groundtruth.txt", 5, "10,10,1e30,1e30")
    _edit_row(root / "train" / "seq_001" / "groundtruth.txt", 4, "hello,world,1,2")
    (root / "train" / "seq_002" / "cover.label").unlink()
    for frame in range(4, 12):
        (root / "train" / "seq_003" / f"{frame:08d}.jpg").write_bytes(b"not a jpeg")
    (root / "train" / "list.txt").write_text("\n".join([*SEQUENCES, "seq_gone"]) + "\n")
    return root


def _tiny_got10k_yaml(path: Path, **kwargs) -> Path:
    cfg_path = tiny_training_yaml(path, Path("unused"), **kwargs)
    cfg_path.write_text(cfg_path.read_text().replace("'CUSTOM:unused'", "'GOT10K_train_full'"))
    return cfg_path


def _train(cfg_path: Path, save_dir: Path, data: Path, overrides=(), **kwargs):
    cfg = load_config(cfg_path, overrides=list(overrides))
    paths = get_paths(save_dir=save_dir, datasets={"got10k": data})
    return run_training.run(cfg, "ostrack", cfg_path.stem, save_dir=save_dir, progress=False, paths=paths, **kwargs)


# ----------------------------------------------------------------------------------------- start-up check

def test_bad_rows_mark_frames_invalid_and_unparsable_files_are_errors():
    parsed = parse_box_rows("1,2,3,4\ninf,2,3,4\n1,2,1e30,4\nfoo bar\n1,2,-3,4\nnan,1,1,1\n5,6,0,0\n1,2,3\n")
    assert parsed.values.shape == (8, 4)
    usable = np.isfinite(parsed.values).all(axis=1) & (parsed.values[:, 2] > 0)
    assert usable.tolist() == [True] + [False] * 7
    assert parsed.problems == {INFINITE: 1, HUGE: 1, NOT_A_NUMBER: 1, "negative size": 1, "NaN": 1,
                               "not 4 values": 1}  # 5,6,0,0 marks an absent target: not a problem
    assert parsed.example == "row 2 [inf, 2.0, 3.0, 4.0] is infinite"
    assert parse_box_rows("1 2 3 4\n\n5\t6\t7\t8\n").problems == {}  # spaces, tabs and blank lines
    for garbage in ("\x00\x01binary\xff", "a,b,c,d\n", "1,2,3\n"):
        with pytest.raises(TableFormatError):
            parse_box_rows(garbage)
    labels = parse_label_values("0\n1\nx\n", 5)
    assert np.isnan(labels.values[2:]).all() and labels.problems == {NOT_A_NUMBER: 1, "no label value": 2}


def test_start_up_check_names_every_skipped_file_and_counts_bad_values(hostile_got10k, tmp_path, caplog):
    dataset = Got10k(hostile_got10k, split="train_full")
    with caplog.at_level(logging.INFO):
        report, = check_training_data([dataset], tmp_path / "cache", max_skipped_share=0.5)
    assert dataset.sequence_names == ["seq_000", "seq_001", "seq_003", "seq_004"]  # seq_002 dropped
    assert report.skipped == {"sequence(s) listed but not found on disk": ["seq_gone"],
                              "sequence(s) with a missing annotation file": ["train/seq_002/cover.label"]}
    assert report.problems == {INFINITE: 1, HUGE: 1, NOT_A_NUMBER: 1} and report.frames == 96
    for fragment in ("seq_gone", "train/seq_002/cover.label", "1 infinite", "1 absurdly large", "1 not a number",
                     "seq_000/groundtruth.txt: row 4"):
        assert fragment in caplog.text
    visible = dataset.get_sequence_info(0)["visible"]
    assert not visible[3] and not visible[5] and visible[4]  # the inf and 1e30 frames are never sampled
    assert not dataset.get_sequence_info(1)["valid"][4]

    with pytest.raises(DatasetError, match=r"seq_gone.*cover.label.*--strict_data") as strict:
        check_training_data([Got10k(hostile_got10k, split="train_full")], strict=True)
    assert "\n" not in str(strict.value)
    with pytest.raises(DatasetError, match=r"33% of its sequences are unusable .*MAX_SKIPPED_SHARE = 0.1"):
        check_training_data([Got10k(hostile_got10k, split="train_full")], max_skipped_share=0.1)


def test_check_results_are_cached_by_file_and_reparsed_when_a_file_changes(hostile_got10k, tmp_path,
                                                                            monkeypatch):
    root = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(hostile_got10k), str(root)], check=True)
    first = check_dataset(Got10k(root), tmp_path / "cache")
    parsed = []
    original = Got10k.check_sequence
    monkeypatch.setattr(Got10k, "check_sequence", lambda self, i: parsed.append(i) or original(self, i))
    again = check_dataset(Got10k(root), tmp_path / "cache")
    assert parsed == [] and again.problems == first.problems and again.skipped == first.skipped
    (root / "train" / "seq_004" / "groundtruth.txt").write_text("1,1,inf,5\n" * 24)
    changed = check_dataset(Got10k(root), tmp_path / "cache")
    assert parsed == [4] and changed.problems[INFINITE] == 25  # only seq_004 (index 4 in list.txt order)


def test_large_datasets_are_checked_in_parallel_with_the_same_result(tmp_path):
    chunk = tmp_path / "TRAIN_0"
    for index in range(230):  # annotations only: the check reads no frame
        (chunk / "frames" / f"s{index:03d}").mkdir(parents=True)
        rows = "1,2,3,4\n" * 5 + ("inf,1,1,1\n" if index % 7 == 0 else "") + ("x,y\n" if index == 11 else "")
        (chunk / "anno").mkdir(exist_ok=True)
        (chunk / "anno" / f"s{index:03d}.txt").write_text("garbage\n" if index == 3 else rows)
    serial = check_dataset(TrackingNet(tmp_path, chunks=[0]), processes=1)
    parallel = check_dataset(TrackingNet(tmp_path, chunks=[0]), processes=2)
    assert parallel.problems == serial.problems == {INFINITE: 33, NOT_A_NUMBER: 1}
    assert parallel.skipped == serial.skipped
    assert [name.split(" ")[0] for name in serial.skipped["sequence(s) with an unparsable annotation file"]] == [
        "TRAIN_0/anno/s003.txt"]
    assert parallel.usable == serial.usable == 229


def test_missing_trackingnet_chunks_count_towards_the_skipped_share(tmp_path):
    for chunk, names in ((0, ("a", "b")), (1, ("c", "d"))):
        for name in names:
            (tmp_path / f"TRAIN_{chunk}" / "frames" / name).mkdir(parents=True)
            (tmp_path / f"TRAIN_{chunk}" / "anno").mkdir(exist_ok=True)
            (tmp_path / f"TRAIN_{chunk}" / "anno" / f"{name}.txt").write_text("1,2,3,4\n")
    report = check_dataset(TrackingNet(tmp_path, chunks=range(4)))
    assert report.skipped == {"chunk folder(s) (not found)": ["TRAIN_2", "TRAIN_3"]}
    assert report.skipped_share == pytest.approx(0.5)  # two missing chunks of about two sequences each


# -------------------------------------------------------------------------------------------- training runs

def test_short_training_survives_hostile_data_and_names_it(hostile_got10k, tmp_path, caplog):
    cfg_path = _tiny_got10k_yaml(tmp_path / "hostile.yaml", epochs=1, samples=16)
    with caplog.at_level(logging.INFO):
        trainer = _train(cfg_path, tmp_path / "out", hostile_got10k,
                         overrides=["DATA.MAX_SKIPPED_SHARE=0.5", "DATA.MAX_FAILED_DRAW_SHARE=0.5"])
    assert trainer.iteration == 4
    for fragment in ("seq_gone", "train/seq_002/cover.label", "1 infinite", "1 absurdly large", "1 not a number",
                     "epoch 1 data: 16 pair(s) used"):
        assert fragment in caplog.text
    assert trainer.skipped[FAILED + "unreadable frame"] > 0
    assert "training pair fails repeatedly: GOT10k_train_full file train/seq_003/" in caplog.text


def test_strict_data_stops_before_training_with_one_line(hostile_got10k, tmp_path, monkeypatch, capsys):
    cfg_path = _tiny_got10k_yaml(tmp_path / "strict.yaml", epochs=1, samples=8)
    monkeypatch.setenv("LORETRACK_GOT10K_DIR", str(hostile_got10k))
    monkeypatch.syspath_prepend(str(REPO_ROOT / "tracking"))
    train_main = importlib.import_module("train").main
    args = ["--config", str(cfg_path), "--device", "cpu", "--no_progress", "--save_dir", str(tmp_path / "out"),
            "--opts", "DATA.MAX_SKIPPED_SHARE=0.5"]
    assert run_main(train_main, [*args, "--strict_data"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: GOT10k_train_full in "), errors
    assert "seq_gone" in errors[0] and "--strict_data" in errors[0]


def test_too_much_skipped_data_stops_the_run(hostile_got10k, tmp_path):
    cfg_path = _tiny_got10k_yaml(tmp_path / "share.yaml", epochs=1, samples=8)
    with pytest.raises(DatasetError, match=r"GOT10k_train_full .*33% of its sequences are unusable"):
        _train(cfg_path, tmp_path / "out", hostile_got10k)  # default DATA.MAX_SKIPPED_SHARE 0.1


def test_too_many_failed_draws_stop_the_run_naming_the_top_cause(tmp_path):
    root = make_custom_dataset(tmp_path / "data", num_sequences=3)
    for name in ("seq_000", "seq_001"):
        for frame in (root / name).glob("*.jpg"):
            frame.write_bytes(b"truncated")
    cfg_path = tiny_training_yaml(tmp_path / "failing.yaml", root, epochs=1, samples=16)
    with pytest.raises(DataFailureError, match=r"epoch 1: \d+ of \d+ pair draws \(\d+%\) failed, more than "
                                               r"DATA.MAX_FAILED_DRAW_SHARE = 0.1; top cause: unreadable frame"):
        run_training.run(load_config(cfg_path), "ostrack", "failing", save_dir=tmp_path / "out", progress=False,
                         paths=get_paths(save_dir=tmp_path / "out"))


# ------------------------------------------------------------------------------------------------- sampler

def _sampler(root: Path, seed: int = 5) -> TrackingSampler:
    dataset = Got10k(root)
    check_dataset(dataset)
    crops = CropSettings(32, 2.0, 0, 0), CropSettings(64, 4.0, 3, 0.25)
    return TrackingSampler([dataset], [1], 24, 10, PairProcessing(*crops, [0.5] * 3, [0.25] * 3), seed=seed)


def _epochs(sampler: TrackingSampler, workers: int, epochs=(1, 2)) -> list[list[dict]]:
    loader = torch.utils.data.DataLoader(sampler, batch_size=6, num_workers=workers, collate_fn=collate_pairs,
                                         persistent_workers=workers > 0, multiprocessing_context="fork"
                                         if workers else None)
    result = []
    for epoch in epochs:
        sampler.set_epoch(epoch)
        result.append([{"search": b["search_images"].clone(), "skipped": b["skipped"]} for b in loader])
    return result


def test_redraws_are_the_same_with_any_worker_count_and_after_resume(hostile_got10k):
    in_process = _epochs(_sampler(hostile_got10k), 0)
    in_workers = _epochs(_sampler(hostile_got10k), 2)
    resumed = _epochs(_sampler(hostile_got10k), 0, epochs=(2,))
    failed = sum(n for epoch in in_process for batch in epoch for counts in batch["skipped"]
                 for cause, n in counts.items() if cause.startswith(FAILED))
    assert failed > 0, "the unreadable frames were never drawn: the test would not exercise redraws"
    for a, b in zip([*in_process, in_process[1]], [*in_workers, resumed[0]], strict=True):
        for batch_a, batch_b in zip(a, b, strict=True):
            assert torch.equal(batch_a["search"], batch_b["search"]) and batch_a["skipped"] == batch_b["skipped"]
    assert len({sample_seed(1, 2, 3, attempt) for attempt in range(100)}) == 100


@pytest.mark.parametrize("error", [TypeError, AttributeError, NameError, AssertionError])
def test_programming_errors_are_never_swallowed(hostile_got10k, error):
    sampler = _sampler(hostile_got10k)

    def broken(*args):
        raise error("a bug in our code")

    sampler.processing = broken
    with pytest.raises(error, match="a bug in our code"):
        sampler[0]


def test_data_errors_in_processing_are_redrawn_and_counted(hostile_got10k):
    sampler = _sampler(hostile_got10k)
    processing, calls = sampler.processing, []

    def fails_first(*args):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("bad value")
        return processing(*args)

    sampler.processing = fails_first
    assert sampler[0]["skipped"].get(FAILED + "ValueError") == 1


# ---------------------------------------------------------------------------------------------------- crops

def test_training_crops_that_miss_the_image_are_rejected_on_every_side():
    image = np.full((100, 100, 3), 128, np.uint8)
    processing = PairProcessing(CropSettings(32, 2.0, 0, 0), CropSettings(64, 4.0, 0, 0), [0.5] * 3, [0.25] * 3,
                                grayscale_prob=0, flip_prob=0, brightness_jitter=0)
    inside = torch.tensor([40.0, 40.0, 20.0, 20.0])
    for box in ([40, -60, 10, 10], [-60, 40, 10, 10], [150, 40, 10, 10], [40, 150, 10, 10], [114, 40, 10, 10]):
        with pytest.raises(PairRejected, match="crop misses the image"):
            processing(image, inside, image, torch.tensor(box, dtype=torch.float32), SampleRng.from_seed(0))
        assert crop_misses_image(*crop_geometry(box, 4.0), 100, 100)
    assert not crop_misses_image(*crop_geometry([90, 90, 10, 10], 4.0), 100, 100)
    assert processing(image, inside, image, inside, SampleRng.from_seed(0))["search_images"].shape == (3, 64, 64)
    for bad in ([10, 10, float("inf"), 20], [10, 10, 1e30, 1e30]):  # OverflowError before
        with pytest.raises(BadBoxError):
            processing(image, inside, image, torch.tensor(bad), SampleRng.from_seed(0))


def test_custom_folder_labels_stay_optional(tmp_path):
    root = make_custom_dataset(tmp_path, num_sequences=1, num_frames=4)
    report = check_dataset(CustomFolder(root))
    assert report.usable == 1 and not report.skipped and not report.problems
