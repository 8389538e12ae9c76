"""Lockstep benchmark runs (``run_dataset(..., batch=N)``, ``tracking/test.py --batch N``): the same result files
as one sequence at a time, failures that leave the batch alone, sequences of different lengths joining and leaving.

A tiny CE network with random weights on generated moving-square sequences: the boxes mean nothing, but every
frame's box depends on every earlier one, so a single bit of difference in any network call would show.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lib.models import build_model, save_checkpoint
from lib.test.evaluation import lockstep, running
from lib.test.evaluation.data import Sequence
from lib.test.evaluation.datasets import get_dataset
from lib.test.evaluation.running import RunReport, run_dataset, write_sequence_results
from lib.test.tracker.backends.gate import SAME_STATE_IOU_LIMIT
from lib.test.tracker.ostrack import OSTrackTracker
from lib.utils.boxes import pytracking_box_iou
from lib.utils.errors import UserError
from lib.utils.paths import get_paths
from lib.utils.run_layout import MANIFEST_NAME, results_folder
from lib.utils.synthetic import moving_square_clip
from tests.model_configs import tiny_config
from tests.training_fixtures import write_sequence

LENGTHS = {"alpha": 9, "bravo": 14, "charlie": 4, "delta": 16, "echo": 2, "foxtrot": 7}
QUIET = {"show_progress": False, "log": lambda _: None}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny CE network (template 64, search 128) with seeded random weights: its config file and checkpoint."""
    folder = tmp_path_factory.mktemp("tiny_model")
    cfg = tiny_config(64, 128, ce=True)
    torch.manual_seed(0)
    model = build_model(cfg, training=False).eval()
    (folder / "tiny.yaml").write_text(cfg.to_yaml())
    return cfg, model, folder / "tiny.yaml", save_checkpoint(folder / "tiny.pth.tar", model, epoch=1)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """A 'folder' benchmark of moving squares, one sequence per entry of LENGTHS."""
    root = tmp_path_factory.mktemp("videos")
    for index, (name, length) in enumerate(LENGTHS.items()):
        frames, boxes = moving_square_clip(length, size=(96, 128), target=24, seed=index)
        write_sequence(root / name, frames, boxes)
    return root


def builder(cfg, model, **options):
    return lambda device: OSTrackTracker.from_config(cfg, model=model, device=device, **options)


def box_files(results_dir: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(results_dir.rglob("*.txt")) if not p.name.endswith("_time.txt")}


def run_recording_boxes(*args, **kwargs) -> tuple[RunReport, dict[str, np.ndarray]]:
    """``run_dataset``, also returning every written sequence's boxes as floats (the files truncate them, which
    would hide a difference in the last bits until it grew)."""
    boxes: dict[str, np.ndarray] = {}

    def recording(seq, seq_boxes, seconds, base):
        boxes[seq.name] = seq_boxes.copy()
        return write_sequence_results(seq, seq_boxes, seconds, base)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(running, "write_sequence_results", recording)
        patch.setattr(lockstep, "write_sequence_results", recording)
        return run_dataset(*args, **kwargs), boxes


@pytest.fixture(scope="module")
def reference(tiny, videos, tmp_path_factory) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Batch 1 (files and float boxes): one sequence at a time, the way every run tracked before batches existed."""
    cfg, model, _, _ = tiny
    results_dir = tmp_path_factory.mktemp("batch1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report, boxes = run_recording_boxes(builder(cfg, model), get_dataset("folder", root=videos), results_dir,
                                            **QUIET)
    finally:
        torch.set_num_threads(threads)
    assert sorted(report.done) == sorted(LENGTHS)
    return box_files(results_dir), boxes


def assert_same_boxes(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        assert np.array_equal(got[name], want[name]), f"{name}: {np.abs(got[name] - want[name]).max()}"


class BatchSpy:
    """The tracker's batched network, recording each call's batch size."""

    def __init__(self, network) -> None:
        self.network, self.sizes = network, []

    def __call__(self, template, search, ce_template_mask=None):
        self.sizes.append(template.shape[0])
        return self.network(template, search, ce_template_mask)


def recording_builder(cfg, model, trackers: list[OSTrackTracker], **options):
    def build(device: str) -> OSTrackTracker:
        trackers.append(OSTrackTracker.from_config(cfg, model=model, device=device, **options))
        return trackers[-1]
    return build


def spied_builder(cfg, model, spies: list[BatchSpy], **options):
    def build(device: str) -> OSTrackTracker:
        tracker = OSTrackTracker.from_config(cfg, model=model, device=device, **options)
        spies.append(BatchSpy(tracker.batch_network))
        tracker.__dict__["batch_network"] = spies[-1]  # the cached property, replaced by the spy
        return tracker
    return build


def test_batch_3_writes_the_files_of_batch_1(tiny, videos, reference, tmp_path):
    cfg, model, _, _ = tiny
    spies: list[BatchSpy] = []
    report, boxes = run_recording_boxes(spied_builder(cfg, model, spies), get_dataset("folder", root=videos),
                                        tmp_path, batch=3, **QUIET)
    assert sorted(report.done) == sorted(LENGTHS) and report.ok
    assert box_files(tmp_path) == reference[0]  # byte for byte
    assert_same_boxes(boxes, reference[1])  # and bit for bit before truncation
    for name, length in LENGTHS.items():
        times = np.loadtxt(tmp_path / f"{name}_time.txt", ndmin=1)
        assert times.shape == (length,) and (times > 0).all()
    sizes = spies[0].sizes
    # alpha, bravo, charlie; charlie ends after 3 steps, delta joins; alpha ends after 5 more, echo joins and ends
    # after 1; foxtrot joins, bravo ends after 4; delta and foxtrot go on in 2 steps of 2; delta ends alone (3
    # plain batch-1 calls, which the batched network does not see)
    assert sizes == [3] * 13 + [2] * 2


class PoisonedTracker(OSTrackTracker):
    """Returns a non-finite box on the third frame of the sequence that starts at ``poison_box``."""

    poison_box: list[float] = []

    def start_sequence(self, image, info):
        state = super().start_sequence(image, info)
        state.poisoned = list(info["init_bbox"]) == self.poison_box
        return state

    def finish(self, state, crop, out):
        result = super().finish(state, crop, out)
        return {"target_bbox": [math.nan] * 4} if state.poisoned and state.frame_id == 3 else result


def test_a_failing_sequence_leaves_the_batch_and_the_others_finish(tiny, videos, reference, tmp_path):
    cfg, model, _, _ = tiny
    healthy = list(get_dataset("folder", root=videos))
    base = healthy[1]  # 'bravo', 14 frames
    corrupt_frame = tmp_path / "corrupt.jpg"
    corrupt_frame.write_bytes(b"not an image")
    frames = list(base.frames)
    frames[5] = str(corrupt_frame)
    gt = base.ground_truth_rect
    bad = [Sequence("broken_frame", frames, "folder", gt),
           Sequence("zero_width", base.frames, "folder", np.vstack([[10, 10, 0, 8], gt[1:]])),
           Sequence("nan_output", base.frames, "folder", gt + [[0.5, 0, 0, 0]])]
    PoisonedTracker.poison_box = list(bad[2].init_bbox)
    sequences = [healthy[0], bad[0], healthy[2], bad[1], healthy[3], bad[2], healthy[4], healthy[5], healthy[1]]

    def build(device):
        return PoisonedTracker.from_config(cfg, model=model, device=device)

    results_dir = tmp_path / "results"
    report, boxes = run_recording_boxes(build, sequences, results_dir, batch=3, **QUIET)
    assert sorted(report.failed) == ["broken_frame", "nan_output", "zero_width"]
    assert sorted(report.done) == sorted(LENGTHS)
    errors = {result.name: result.error for result in report.results if result.status == "failed"}
    assert "cannot read image" in errors["broken_frame"] and "corrupt.jpg" in errors["broken_frame"]
    assert "sequence 'zero_width'" in errors["zero_width"] and "zero or negative size" in errors["zero_width"]
    assert "sequence 'nan_output', frame 3" in errors["nan_output"] and "non-finite" in errors["nan_output"]
    assert box_files(results_dir) == reference[0]  # no file for a failed sequence, correct boxes for the others
    assert_same_boxes(boxes, reference[1])
    with pytest.raises(UserError, match="cannot read image"):  # --debug: the first error stops the run
        run_dataset(build, [bad[0]], tmp_path / "debug", batch=3, debug=True, **QUIET)


def test_batch_is_checked(tiny, videos, tmp_path):
    cfg, model, _, _ = tiny
    sequences = get_dataset("folder", root=videos)
    with pytest.raises(UserError, match="--batch must be >= 1"):
        run_dataset(builder(cfg, model), sequences, tmp_path, batch=0, **QUIET)
    with pytest.raises(UserError, match="cannot track sequences in lockstep"):
        run_dataset(lambda device: object(), sequences, tmp_path, batch=2, **QUIET)


@pytest.mark.e2e
def test_test_script_with_batch(tiny, videos, reference, tmp_path, tracking_script, capsys):
    from lib.utils.cli import run_main

    _, _, config, checkpoint = tiny
    script = tracking_script("test")
    command = ["ostrack", str(config), "--dataset", "folder", "--dataset_root", str(videos), "--checkpoint",
               str(checkpoint), "--save_dir", str(tmp_path), "--no_progress"]
    assert run_main(script.main, [*command, "--batch", "4"]) == 0
    results_dir = results_folder(get_paths(save_dir=tmp_path), "ostrack", "tiny")
    assert box_files(results_dir) == reference[0]
    assert json.loads((results_dir / MANIFEST_NAME).read_text())["batch"] == 4
    assert f"{len(LENGTHS)} done" in capsys.readouterr().out
    # the results do not depend on the batch size: the same folder, all sequences reused
    assert run_main(script.main, [*command, "--batch", "2"]) == 0
    assert f"{len(LENGTHS)} skipped" in capsys.readouterr().out
    assert run_main(script.main, [*command, "--batch", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--batch must be >= 1, got 0" in err
    # two worker processes, each with a lockstep batch of 2, fed from one queue: the same files again
    workers = [*command[:-3], "--save_dir", str(tmp_path / "workers"), "--no_progress", "--batch", "2",
               "--threads", "2"]
    assert run_main(script.main, workers) == 0
    assert f"{len(LENGTHS)} done" in capsys.readouterr().out
    assert box_files(results_folder(get_paths(save_dir=tmp_path / "workers"), "ostrack", "tiny")) == reference[0]


@pytest.mark.slow
def test_onnx_batches_within_the_gate_and_int8_never_mixes_batch_mates(tiny, videos, tmp_path):
    """fp32 ORT runs the batch in one call (dynamic batch axis), its boxes within the accuracy gate's IoU of its
    own batch-1 run; dynamic int8 would quantise a batch with one scale, so it gets the frames one by one and
    gives exactly its batch-1 boxes."""
    pytest.importorskip("onnxruntime")
    cfg, model, _, _ = tiny
    sequences = get_dataset("folder", root=videos)
    for name in ("onnx", "onnx-int8"):
        options = {"backend": name, "backend_options": {"cache_dir": str(tmp_path / "cache"), "threads": 1}}
        _, alone = run_recording_boxes(builder(cfg, model, **options), sequences, tmp_path / f"{name}_1", **QUIET)
        trackers: list[OSTrackTracker] = []
        report, batched = run_recording_boxes(recording_builder(cfg, model, trackers, **options), sequences,
                                              tmp_path / f"{name}_3", batch=3, **QUIET)
        assert report.ok and sorted(batched) == sorted(alone)
        if name == "onnx":
            assert trackers[0].batch_network is trackers[0].backend
            for seq in alone:
                iou = pytracking_box_iou(batched[seq], alone[seq])
                assert iou.min() >= SAME_STATE_IOU_LIMIT, (seq, iou.min())
        else:
            assert trackers[0].batch_network is None
            assert_same_boxes(batched, alone)
