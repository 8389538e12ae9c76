"""Run identity: nothing a run made is overwritten or silently reused by another run.

Real processes and files throughout: training runs of a 2-block ViT on generated data, tracking/test.py on the
real OTB frames, kill -9 at the moment a checkpoint's temporary file is complete (a test-only pause before the
rename makes that moment certain).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lib.config import load_config
from lib.models import read_checkpoint, save_checkpoint
from lib.train import run_training
from lib.train.checkpointer import Checkpointer, ResumeError, RunExistsError, retained_epochs
from lib.utils.io import PAUSE_ENV, PAUSE_MARKER, host_tag, temp_sibling
from lib.utils.paths import REPO_ROOT, get_paths
from lib.utils.provenance import config_digest, file_sha256
from lib.utils.run_layout import MANIFEST_NAME, TrainingRun, checkpoint_name, results_folder
from tests.model_configs import parity_student
from tests.training_fixtures import make_custom_dataset, tiny_training_yaml

TRAIN_SCRIPT = REPO_ROOT / "tracking" / "train.py"
TEST_SCRIPT = REPO_ROOT / "tracking" / "test.py"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_custom_dataset(tmp_path_factory.mktemp("custom"), num_sequences=3)


def _layout(save_dir: Path, name: str) -> TrainingRun:
    return TrainingRun(get_paths(save_dir=save_dir), "ostrack", name)


def _train(cfg_path: Path, save_dir: Path, overrides: list[str] | None = None, **kwargs):
    cfg = load_config(cfg_path, overrides=overrides)
    return run_training.run(cfg, "ostrack", cfg_path.stem, save_dir=save_dir, progress=False,
                            paths=get_paths(save_dir=save_dir), config_file=cfg_path, **kwargs)


def _train_command(cfg_path: Path, save_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, str(TRAIN_SCRIPT), "--script", "ostrack", "--config", str(cfg_path), "--save_dir",
            str(save_dir), "--no_progress", "--device", "cpu", *extra]


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_the_official_checkpoint_name_is_kept():
    assert checkpoint_name(300) == "OSTrack_ep0300.pth.tar"


# ------------------------------------------------------------------------------------------- training

@pytest.mark.e2e
def test_a_second_run_into_the_same_folder_is_refused_and_the_first_is_untouched(dataset, tmp_path):
    cfg_path = tiny_training_yaml(tmp_path / "tiny.yaml", dataset, epochs=1, samples=8)
    _train(cfg_path, tmp_path / "out")
    folder = _layout(tmp_path / "out", "tiny").checkpoint_dir
    before = _digests(folder)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["config_digest"] == config_digest(load_config(cfg_path))
    assert manifest["config"]["TRAIN"]["EPOCH"] == 1 and manifest["finished"] is not None
    assert manifest["environment"]["torch"] == torch.__version__ and manifest["environment"]["host"]
    if (REPO_ROOT / ".git").exists():
        assert len(manifest["environment"]["code"]["commit"]) == 40
    assert manifest["checkpoints"][checkpoint_name(1)]["sha256"] == file_sha256(folder / checkpoint_name(1))

    # another YAML with the same file name (and another config): same run folder, refused too
    (tmp_path / "other").mkdir()
    other = tiny_training_yaml(tmp_path / "other" / "tiny.yaml", dataset, epochs=2, samples=8)
    result = subprocess.run(_train_command(other, tmp_path / "out"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error:") and str(folder) in message
    assert "--resume" in message and "--force" in message and "--save_dir" in message
    # even an identical config does not write over a run without --resume
    with pytest.raises(RunExistsError):
        _train(cfg_path, tmp_path / "out")
    assert _digests(folder) == before


def test_force_moves_the_old_run_aside(dataset, tmp_path):
    cfg_path = tiny_training_yaml(tmp_path / "tiny.yaml", dataset, epochs=1, samples=8)
    _train(cfg_path, tmp_path / "out")
    layout = _layout(tmp_path / "out", "tiny")
    before = _digests(layout.checkpoint_dir)
    _train(cfg_path, tmp_path / "out", ["TRAIN.LR=0.01"], force=True)
    moved = list(layout.checkpoint_dir.parent.glob("tiny.moved-*"))
    assert len(moved) == 1 and _digests(moved[0]) == before
    assert list(layout.tensorboard_dir.parent.glob("tiny.moved-*"))
    new_manifest = json.loads(layout.manifest_path.read_text())
    assert new_manifest["config"]["TRAIN"]["LR"] == 0.01
    assert _digests(layout.checkpoint_dir)[checkpoint_name(1)] != before[checkpoint_name(1)]


def test_resume_with_a_changed_config_is_refused_or_applied_for_real(dataset, tmp_path, caplog):
    cfg_path = tiny_training_yaml(tmp_path / "lr.yaml", dataset, epochs=3, samples=8)
    _train(cfg_path, tmp_path / "out", ["TRAIN.EPOCH=1"])
    with pytest.raises(ResumeError, match=r"TRAIN\.EPOCH 1 -> 3.*TRAIN\.LR 0\.001 -> 0\.005.*"
                                          r"--accept_config_changes"):
        _train(cfg_path, tmp_path / "out", ["TRAIN.LR=0.005"], resume=True)
    # keys that cannot change the result never count as a change
    with pytest.raises(ResumeError) as refused:
        _train(cfg_path, tmp_path / "out", ["TRAIN.NUM_WORKER=1", "TRAIN.PRINT_INTERVAL=7"], resume=True)
    assert "NUM_WORKER" not in str(refused.value) and "PRINT_INTERVAL" not in str(refused.value)

    with caplog.at_level(logging.WARNING, logger="lib.train.checkpointer"):
        trainer = _train(cfg_path, tmp_path / "out", ["TRAIN.LR=0.005"], resume=True, accept_config_changes=True)
    assert "TRAIN.LR 0.001 -> 0.005" in caplog.text
    history = trainer.hooks[0].history
    assert [h["epoch"] for h in history] == [2, 3]
    # LR_DROP_EPOCH 2: epoch 2 runs at the new LR, epoch 3 after one decay; the backbone at 0.1x
    assert history[0]["LearningRate/group0"] == pytest.approx(0.005)
    assert history[0]["LearningRate/group1"] == pytest.approx(0.0005)
    assert history[1]["LearningRate/group0"] == pytest.approx(0.0005)
    stored = read_checkpoint(_layout(tmp_path / "out", "lr").checkpoint_path(3))
    assert stored["config"]["TRAIN"]["LR"] == 0.005
    resumes = json.loads(_layout(tmp_path / "out", "lr").manifest_path.read_text())["resumes"]
    assert resumes[0]["accepted_changes"]["TRAIN.LR"] == [0.001, 0.005]


def test_resuming_a_finished_run_says_so(dataset, tmp_path, caplog):
    cfg_path = tiny_training_yaml(tmp_path / "done.yaml", dataset, epochs=1, samples=8)
    _train(cfg_path, tmp_path / "out")
    before = _digests(_layout(tmp_path / "out", "done").checkpoint_dir)
    with caplog.at_level(logging.WARNING):
        trainer = _train(cfg_path, tmp_path / "out", resume=True)
    assert "already finished (epoch 1 of 1)" in caplog.text
    assert trainer.iteration == 2  # loaded, not trained further
    after = _digests(_layout(tmp_path / "out", "done").checkpoint_dir)
    assert {k: v for k, v in after.items() if k != MANIFEST_NAME} == \
        {k: v for k, v in before.items() if k != MANIFEST_NAME}


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_one(dataset, tmp_path, caplog):
    cfg_path = tiny_training_yaml(tmp_path / "fall.yaml", dataset, epochs=3, samples=8)
    _train(cfg_path, tmp_path / "straight")
    expected = read_checkpoint(_layout(tmp_path / "straight", "fall").checkpoint_path(3))["net"]

    _train(cfg_path, tmp_path / "out")
    layout = _layout(tmp_path / "out", "fall")
    layout.checkpoint_path(3).unlink()
    newest = layout.checkpoint_path(2)
    newest.write_bytes(newest.read_bytes()[:2000])
    with caplog.at_level(logging.WARNING, logger="lib.train.checkpointer"):
        trainer = _train(cfg_path, tmp_path / "out", resume=True)
    assert f"skipping the unreadable checkpoint {newest}" in caplog.text
    assert [h["epoch"] for h in trainer.hooks[0].history] == [2, 3]
    actual = read_checkpoint(layout.checkpoint_path(3))["net"]
    assert all(torch.equal(expected[k], actual[k]) for k in expected)


@pytest.mark.e2e
@pytest.mark.slow
def test_kill_during_a_checkpoint_save_then_resume_is_bit_identical(dataset, tmp_path):
    cfg_path = tiny_training_yaml(tmp_path / "kill.yaml", dataset, epochs=3, samples=8)
    _train(cfg_path, tmp_path / "straight")
    expected = read_checkpoint(_layout(tmp_path / "straight", "kill").checkpoint_path(3))["net"]

    layout = _layout(tmp_path / "killed", "kill")
    env = dict(os.environ, **{PAUSE_ENV: checkpoint_name(2)})
    process = subprocess.Popen(_train_command(cfg_path, tmp_path / "killed"), stderr=subprocess.PIPE, text=True,
                               env=env, start_new_session=True)
    try:
        for line in process.stderr:
            if line.startswith(PAUSE_MARKER):
                temp = Path(line[len(PAUSE_MARKER):].strip())
                break
        else:
            pytest.fail("the training run ended without pausing before the rename")
        assert temp.is_file() and temp.name.startswith(f".{checkpoint_name(2)}.tmp-{host_tag()}-{process.pid}-")
        assert read_checkpoint(temp)["epoch"] == 2  # complete, only not renamed yet
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert temp.exists() and not layout.checkpoint_path(2).exists()

    resumed = subprocess.run(_train_command(cfg_path, tmp_path / "killed", "--resume"), capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"removed {temp}" in resumed.stderr and "resumed from" in resumed.stderr
    assert not temp.exists() and not [p for p in layout.checkpoint_dir.iterdir() if p.name.startswith(".")]
    actual = read_checkpoint(layout.checkpoint_path(3))["net"]
    assert all(torch.equal(expected[k], actual[k]) for k in expected)


def test_retention_keeps_the_released_test_epoch_and_deletes_only_its_own_files(tmp_path):
    for name in ("loretrack_96", "loretrack_128", "loretrack_192", "loretrack_256"):
        cfg = load_config(name, script="loretrack")
        assert cfg.TEST.EPOCH == 296
        kept = retained_epochs(list(range(1, cfg.TRAIN.EPOCH + 1)), cfg.TRAIN.SAVE_EPOCH_INTERVAL,
                               cfg.TRAIN.KEEP_LAST_EPOCHS, cfg.TRAIN.EPOCH)
        assert cfg.TEST.EPOCH in kept and set(range(291, 301)) <= kept
    assert retained_epochs([1, 2, 3, 4, 5, 6], keep_every=4, keep_last=0, max_epoch=10) == {4, 5, 6}

    layout = TrainingRun(get_paths(save_dir=tmp_path), "ostrack", "unit")
    checkpointer = Checkpointer(layout, keep_every=0, keep_last=0, max_epoch=10)
    checkpointer.start({"TRAIN": {"EPOCH": 10}}, None)
    foreign = layout.checkpoint_path(1)
    save_checkpoint(foreign, torch.nn.Linear(2, 2), epoch=1)  # not written by this run
    model = torch.nn.Linear(2, 2)
    for epoch in (2, 3, 4, 5):
        checkpointer.save(model, epoch)
    assert sorted(layout.checkpoints()) == [1, 4, 5]
    assert sorted(json.loads(layout.manifest_path.read_text())["checkpoints"]) == [checkpoint_name(4),
                                                                                  checkpoint_name(5)]


# ------------------------------------------------------------------------------------------- tracking

@pytest.fixture(scope="module")
def tiny_tracker(tmp_path_factory, parity_dir):
    folder = tmp_path_factory.mktemp("tracker")
    config, model = parity_student(folder, parity_dir)
    first = save_checkpoint(folder / "student.pth.tar", model, epoch=1)
    with torch.no_grad():
        model.box_head.conv5_size.bias.add_(0.01)
    return config, first, save_checkpoint(folder / "other.pth.tar", model, epoch=2)


def _track(config: Path, checkpoint: Path, otb_root: Path, save_dir: Path, *extra: str):
    command = [sys.executable, str(TEST_SCRIPT), "ostrack", str(config), "--dataset", "otb", "--dataset_root",
               str(otb_root), "--sequences", "Couple", "Crossing", "--checkpoint", str(checkpoint), "--save_dir",
               str(save_dir), "--no_progress", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.mark.e2e
def test_tracking_reuses_only_results_of_the_same_run(tiny_tracker, shared_data, tmp_path):
    config, checkpoint, other_checkpoint = tiny_tracker
    otb_root = shared_data / "otb_mini_sequences"
    first = _track(config, checkpoint, otb_root, tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    folder = results_folder(get_paths(save_dir=tmp_path), "ostrack", "student")
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["checkpoint"]["sha256"] == file_sha256(checkpoint) and manifest["backend"] == "eager"
    assert manifest["config_digest"] == config_digest(load_config(config))
    assert manifest["datasets"]["otb"]["done"] == 2 and manifest["finished"]
    assert manifest["environment"]["torch"] == torch.__version__
    couple = (folder / "Couple.txt").read_text()

    # the same run again: reused
    again = _track(config, checkpoint, otb_root, tmp_path)
    assert again.returncode == 0 and "2 skipped" in again.stdout

    # a truncated result file is tracked again, with a note
    (folder / "Couple.txt").write_text("".join(couple.splitlines(keepends=True)[:40]))
    repaired = _track(config, checkpoint, otb_root, tmp_path)
    assert repaired.returncode == 0 and "Couple: tracking again" in repaired.stdout and "1 skipped" in repaired.stdout
    assert (folder / "Couple.txt").read_text() == couple

    # another checkpoint, or other --opts: refused with the difference and the fixes; nothing changes
    for extra, difference in (((), "checkpoint SHA-256"), (("--opts", "TEST.SEARCH_FACTOR=4.5"), "config digest")):
        used = other_checkpoint if not extra else checkpoint
        refused = _track(config, used, otb_root, tmp_path, *extra)
        assert refused.returncode == 2, refused.stderr[-2000:]
        message = refused.stderr.strip().splitlines()
        assert len(message) == 1 and difference in message[0] and "--force" in message[0] and "--runid" in message[0]
    assert (folder / "Couple.txt").read_text() == couple

    # --force moves the old results aside and tracks again with the other checkpoint
    forced = _track(config, other_checkpoint, otb_root, tmp_path, "--force")
    assert forced.returncode == 0, forced.stderr[-2000:]
    moved = list(folder.parent.glob("student.moved-*"))
    assert len(moved) == 1 and (moved[0] / "Couple.txt").read_text() == couple
    assert json.loads((folder / MANIFEST_NAME).read_text())["checkpoint"]["sha256"] == file_sha256(other_checkpoint)
    assert "2 done" in forced.stdout


def test_stale_result_temp_files_are_removed_live_ones_kept(tmp_path):
    from lib.test.evaluation.running import run_dataset

    results = tmp_path / "results"
    results.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = temp_sibling(results / "seq.txt").with_name(f".seq.txt.tmp-{host_tag()}-{dead.pid}-deadbeef")
    live = temp_sibling(results / "seq.txt")  # this process: alive
    foreign = results / f".seq.txt.tmp-elsewhere-{dead.pid}-deadbeef"
    for path in (stale, live, foreign):
        path.write_text("partial")
    run_dataset(lambda device: None, [], results, show_progress=False, log=lambda _: None)
    assert not stale.exists() and live.exists() and foreign.exists()
