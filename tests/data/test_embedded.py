"""The embedded benchmark: deterministic, GOT-10k layout, boxes on the object, cached, never half-written."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from lib.data.embedded import (
    EmbeddedParams,
    cache,
    ensure_embedded_benchmark,
    is_complete,
    render_sequence,
    sequence_name,
    sequence_rng,
    writer,
)
from lib.utils.errors import UserError
from lib.utils.io import host_tag
from lib.utils.paths import REPO_ROOT

SMALL = dict(num_train=4, num_val=2, num_test=2, frames=(20, 26), size=(160, 120))
CLI = REPO_ROOT / "tracking" / "make_embedded_benchmark.py"


def _files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.fixture(scope="module")
def small_benchmark(tmp_path_factory) -> Path:
    return ensure_embedded_benchmark(tmp_path_factory.mktemp("embedded"), seed=0, progress=False, workers=1, **SMALL)


def test_same_seed_gives_identical_files_whatever_the_worker_count(small_benchmark, tmp_path):
    again = ensure_embedded_benchmark(tmp_path / "a", seed=0, progress=False, workers=2, **SMALL)
    assert _files(again) == _files(small_benchmark)
    other = ensure_embedded_benchmark(tmp_path / "b", seed=1, progress=False, workers=1, **SMALL)
    first = "train/EMB_Train_000001/00000001.jpg"
    assert _files(other)[first] != _files(small_benchmark)[first]


def test_got10k_layout(small_benchmark):
    width, height = SMALL["size"]
    for split, count in (("train", 4), ("val", 2), ("test", 2)):
        names = _lines(small_benchmark / split / "list.txt")
        assert names == [sequence_name(split, i) for i in range(count)]
        assert names[0] == {"train": "EMB_Train_000001", "val": "EMB_Val_000001", "test": "EMB_Test_000001"}[split]
        for name in names:
            seq = small_benchmark / split / name
            frames = sorted(seq.glob("*.jpg"))
            assert SMALL["frames"][0] <= len(frames) <= SMALL["frames"][1]
            assert [f.name for f in frames] == [f"{i:08d}.jpg" for i in range(1, len(frames) + 1)]
            assert cv2.imread(str(frames[0])).shape == (height, width, 3)
            boxes = np.loadtxt(seq / "groundtruth.txt", delimiter=",", ndmin=2)
            assert boxes.shape == (len(frames), 4)  # every frame, the test split included
            absence = np.loadtxt(seq / "absence.label", dtype=int, ndmin=1)
            cover = np.loadtxt(seq / "cover.label", dtype=int, ndmin=1)
            cut = np.loadtxt(seq / "cut_by_image.label", dtype=int, ndmin=1)
            assert len(absence) == len(cover) == len(cut) == len(frames)
            assert np.all((boxes[:, 2] > 0) & (boxes[:, 3] > 0))
            assert np.all((boxes[:, 0] >= 0) & (boxes[:, 1] >= 0))
            assert np.all((boxes[:, 0] + boxes[:, 2] <= width) & (boxes[:, 1] + boxes[:, 3] <= height))
            assert set(np.unique(cover)) <= set(range(9)) and set(np.unique(absence)) <= {0, 1}
            assert np.array_equal(absence == 1, cover == 0)
            assert cover[0] == 8 and absence[0] == 0  # trackers start from a fully visible object
            meta = _lines(seq / "meta_info.ini")
            assert meta[0] == "[METAINFO]" and meta[5].startswith("object_class: ")
            assert meta[9].startswith("motion_adverb: ") and f"resolution: ({width}, {height})" in meta
    manifest = cache._read_manifest(small_benchmark)
    assert manifest["params"] == EmbeddedParams(seed=0, **SMALL).as_dict()
    assert manifest["file_count"] == len(_files(small_benchmark)) - 1


def test_regular_got10k_loader_reads_it(small_benchmark):
    got10k = pytest.importorskip("lib.test.evaluation.benchmarks.got10k")
    sequences = got10k.read_got10k(small_benchmark, None, "test")
    assert [s.name for s in sequences] == ["EMB_Test_000001", "EMB_Test_000002"]
    assert sequences[0].ground_truth_rect.shape[0] == len(sequences[0].frames)
    assert sequences[0].extras["resolution"] == SMALL["size"]


def test_files_hold_what_the_renderer_draws(small_benchmark):
    rng = sequence_rng(0, "val", 1)
    num_frames = int(rng.integers(SMALL["frames"][0], SMALL["frames"][1] + 1))
    rendered = render_sequence(rng, num_frames, SMALL["size"])
    seq = small_benchmark / "val" / "EMB_Val_000002"
    assert np.allclose(np.loadtxt(seq / "groundtruth.txt", delimiter=","), rendered.boxes)
    decoded = cv2.cvtColor(cv2.imread(str(seq / "00000005.jpg")), cv2.COLOR_BGR2RGB)
    assert np.abs(decoded.astype(int) - rendered.frames[4]).mean() < 4  # JPEG loss only


def _render(index: int, keep_layers: bool = False, frames: int = 24):
    return render_sequence(sequence_rng(7, "train", index), frames, (160, 120), keep_layers=keep_layers)


def test_boxes_follow_the_object():
    for index in range(6):
        seq = _render(index, keep_layers=True)
        for t, (x, y, w, h) in enumerate(seq.boxes.astype(int)):
            mask = seq.target_masks[t]
            ys, xs = np.nonzero(mask)
            assert xs.min() == x and xs.max() == x + w - 1 and ys.min() == y and ys.max() == y + h - 1
            assert x <= xs.mean() <= x + w and y <= ys.mean() <= y + h
            changed = np.abs(seq.frames[t].astype(int) - seq.frames_without_target[t]).max(axis=2) > 12
            if seq.cover[t] == 8:  # the object is really drawn inside its box ...
                assert changed[mask].mean() > 0.3, (index, t)
            margin = 10  # ... and nowhere else (motion blur may smear it a few pixels out)
            outside = changed.copy()
            outside[max(y - margin, 0):y + h + margin, max(x - margin, 0):x + w + margin] = False
            assert outside.mean() < 0.01, (index, t)


def test_occlusion_and_distractors_occur():
    sequences = [_render(index, frames=30) for index in range(14)]
    full = [s for s in sequences if s.absence.any()]
    partial = [s for s in sequences if ((s.cover > 0) & (s.cover < 8)).any()]
    with_distractor = [s for s in sequences if s.meta["distractor"] != "none"]
    assert full and partial and with_distractor
    for seq in full:
        assert seq.meta["occlusion"].startswith("full")
        assert np.all(seq.cover[seq.absence == 1] == 0)
    near = False
    for seq in with_distractor:
        visible = ~np.isnan(seq.distractor_boxes[:, 0])
        gap = np.linalg.norm((seq.distractor_boxes[:, :2] + seq.distractor_boxes[:, 2:] / 2)
                             - (seq.boxes[:, :2] + seq.boxes[:, 2:] / 2), axis=1)
        near |= bool(np.any(gap[visible] < 2.5 * np.sqrt(seq.boxes[visible, 2] * seq.boxes[visible, 3])))
    assert near  # a look-alike that stays far away would be no distractor


def test_cached_benchmark_is_reused_and_new_parameters_get_a_new_folder(small_benchmark, monkeypatch):
    stamp = {path: path.stat().st_mtime_ns for path in small_benchmark.rglob("*") if path.is_file()}

    def must_not_regenerate(*args, **kwargs):
        raise AssertionError("a complete cached benchmark was generated again")

    with monkeypatch.context() as patch:
        patch.setattr(cache, "generate_embedded_benchmark", must_not_regenerate)
        again = ensure_embedded_benchmark(small_benchmark.parent, seed=0, progress=False, **SMALL)
    assert again == small_benchmark
    assert stamp == {path: path.stat().st_mtime_ns for path in small_benchmark.rglob("*") if path.is_file()}
    changed = ensure_embedded_benchmark(small_benchmark.parent, seed=0, progress=False, workers=1,
                                        **{**SMALL, "num_test": 1})
    assert changed != small_benchmark and changed.parent == small_benchmark.parent
    assert len(_lines(changed / "test" / "list.txt")) == 1 and small_benchmark.is_dir()


def test_default_root_is_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LORETRACK_DATA_DIR", str(tmp_path))
    root = ensure_embedded_benchmark(seed=0, progress=False, workers=1, num_train=1, num_val=0, num_test=0,
                                     frames=(20, 20), size=(64, 48))
    assert root.parent == tmp_path / "embedded" and (root / "train" / "EMB_Train_000001").is_dir()


def test_failed_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    real_write = writer.write_sequence
    calls = []

    def write_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-way
        return real_write(*args, **kwargs)

    monkeypatch.setattr(writer, "write_sequence", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        ensure_embedded_benchmark(tmp_path, seed=0, progress=False, workers=1, **SMALL)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(writer, "write_sequence", real_write)

    # a generation killed outright leaves its hidden temporary folder; the next run removes it, but never the
    # folder of a generation that still runs (here: this process)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    name = EmbeddedParams(seed=0, **SMALL).folder_name
    leftover = tmp_path / f".{name}.tmp-{host_tag()}-{int(dead.stdout)}-deadbeef"
    running = tmp_path / f".{name}.tmp-{host_tag()}-{os.getpid()}-0123abcd"
    for folder in (leftover, running):
        (folder / "train").mkdir(parents=True)
    root = ensure_embedded_benchmark(tmp_path, seed=0, progress=False, workers=1, **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([root.name, running.name])
    assert is_complete(root, EmbeddedParams(seed=0, **SMALL))


@pytest.mark.parametrize("kwargs, fragment", [
    ({"frames": (10, 12)}, "20 <= min"),
    ({"size": (32, 32)}, "frame size"),
    ({"num_train": 0, "num_val": 0, "num_test": 0}, "at least one sequence"),
    ({"seed": -1}, "seed"),
])
def test_bad_parameters_are_user_errors(kwargs, fragment):
    with pytest.raises(UserError, match=fragment):
        EmbeddedParams(**kwargs)


def _cli(*args: str, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLI), "--root", str(root), *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.mark.e2e
def test_cli(tmp_path):
    result = _cli("--train", "1", "--val", "1", "--test", "1", "--size", "96x64", "--frames", "20", "--quiet",
                  root=tmp_path)
    assert result.returncode == 0, result.stderr
    root = Path(result.stdout.strip())
    assert root.parent == tmp_path and (root / "val" / "EMB_Val_000001" / "00000020.jpg").is_file()
    for bad, fragment in ((("--size", "big"), "WIDTHxHEIGHT"), (("--frames", "5-9"), "20 <= min")):
        result = _cli(*bad, root=tmp_path)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ")
        assert fragment in lines[0]
