"""Training end to end on tiny generated data: checkpoints, logs, exact resume, bad data, divergence (DDP: in
test_distributed.py)."""
from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lib.config import load_config
from lib.models import build_model, read_checkpoint
from lib.train import run_training
from lib.utils.paths import REPO_ROOT, get_paths
from lib.utils.run_layout import MANIFEST_NAME, TrainingRun, checkpoint_name
from tests.training_fixtures import make_custom_dataset, tiny_training_yaml

TRAIN_SCRIPT = REPO_ROOT / "tracking" / "train.py"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_custom_dataset(tmp_path_factory.mktemp("custom"))


def _run(cfg_path: Path, save_dir: Path, **kwargs):
    cfg = load_config(cfg_path)
    return run_training.run(cfg, "ostrack", cfg_path.stem, save_dir=save_dir, progress=False,
                            paths=get_paths(save_dir=save_dir), **kwargs)


def _checkpoint_dir(save_dir: Path, name: str) -> Path:
    return TrainingRun(get_paths(save_dir=save_dir), "ostrack", name).checkpoint_dir


def _latest(save_dir: Path, name: str) -> Path:
    return list(TrainingRun(get_paths(save_dir=save_dir), "ostrack", name).checkpoints().values())[-1]


def test_training_writes_checkpoints_logs_and_validates(dataset, tmp_path, caplog):
    cfg_path = tiny_training_yaml(tmp_path / "tiny.yaml", dataset, epochs=2, val_root=dataset)
    with caplog.at_level(logging.INFO, logger="lib.train.hooks"):
        trainer = _run(cfg_path, tmp_path / "out")
    # without a progress bar every PRINT_INTERVAL (1) steps gets a log line, as on a cluster
    assert "epoch 1 step 4/4: loss" in caplog.text and "epoch 2 step 1/4: loss" in caplog.text
    folder = _checkpoint_dir(tmp_path / "out", "tiny")
    assert sorted(p.name for p in folder.iterdir()) == sorted([checkpoint_name(1), checkpoint_name(2),
                                                               MANIFEST_NAME])
    checkpoint = read_checkpoint(folder / checkpoint_name(2))
    assert checkpoint["epoch"] == 2 and checkpoint["net_type"] == "OSTrack" and "trainer" in checkpoint
    assert trainer.iteration == 8
    logging_hook, validation_hook = trainer.hooks[0], trainer.hooks[1]
    assert [h["epoch"] for h in logging_hook.history] == [1, 2]
    assert all(torch.isfinite(torch.tensor(h["Loss/total"])) for h in logging_hook.history)
    assert logging_hook.history[1]["LearningRate/group0"] == pytest.approx(1e-4)  # step decay after epoch 1
    assert logging_hook.history[0]["LearningRate/group1"] == pytest.approx(1e-4)  # backbone x 0.1
    assert [r["epoch"] for r in validation_hook.results] == [1, 2]
    tensorboard_dir = TrainingRun(get_paths(save_dir=tmp_path / "out"), "ostrack", "tiny").tensorboard_dir
    assert list(tensorboard_dir.glob("events.out.tfevents*"))


def _train_command(cfg_path: Path, save_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, str(TRAIN_SCRIPT), "--script", "ostrack", "--config", str(cfg_path), "--save_dir",
            str(save_dir), "--no_progress", "--device", "cpu", *extra]


@pytest.mark.e2e
@pytest.mark.slow
def test_run_killed_mid_epoch_resumes_to_identical_weights(dataset, tmp_path):
    cfg_path = tiny_training_yaml(tmp_path / "resume.yaml", dataset, epochs=3, samples=96)
    straight = subprocess.run(_train_command(cfg_path, tmp_path / "straight"), capture_output=True, text=True,
                              timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]

    folder = _checkpoint_dir(tmp_path / "killed", "resume")
    process = subprocess.Popen(_train_command(cfg_path, tmp_path / "killed"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (folder / checkpoint_name(1)).exists():
        time.sleep(0.01)
    time.sleep(0.3)  # well inside epoch 2 (an epoch takes a few seconds)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (folder / checkpoint_name(3)).exists(), "the run ended before it could be killed"
    resumed = subprocess.run(_train_command(cfg_path, tmp_path / "killed", "--resume"), capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr

    expected = read_checkpoint(_checkpoint_dir(tmp_path / "straight", "resume") / checkpoint_name(3))
    actual = read_checkpoint(folder / checkpoint_name(3))
    for key, value in expected["net"].items():
        assert torch.equal(value, actual["net"][key]), key
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(dataset, tmp_path, monkeypatch):
    class PoisonedActor(run_training.TrackingActor):
        def __call__(self, batch, epoch):
            if epoch == 2:
                with torch.no_grad():
                    self.model.box_head.conv5_size.bias.fill_(float("nan"))
            return super().__call__(batch, epoch)

    monkeypatch.setattr(run_training, "TrackingActor", PoisonedActor)
    cfg_path = tiny_training_yaml(tmp_path / "nan.yaml", dataset, epochs=3)
    with pytest.raises(run_training.TrainingStoppedError, match=rf"epoch 2.*NaN.*{re.escape(checkpoint_name(1))}"):
        _run(cfg_path, tmp_path / "out")
    folder = _checkpoint_dir(tmp_path / "out", "nan")
    assert _latest(tmp_path / "out", "nan").name == checkpoint_name(1)
    weights = read_checkpoint(folder / checkpoint_name(1))["net"]
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_bad_data_is_skipped_with_counted_warnings(tmp_path, caplog):
    root = make_custom_dataset(tmp_path / "data", num_sequences=3)
    (root / "seq_000" / "00000005.jpg").write_bytes(b"not a jpeg")  # corrupt frame
    (root / "seq_000" / "00000006.jpg").unlink()  # missing frame
    (root / "seq_001" / "groundtruth.txt").write_text("10,10,0,0\n" * 24)  # zero-size boxes: never visible
    (root / "seq_empty").mkdir()
    (root / "seq_empty" / "groundtruth.txt").write_text("")
    with open(root / "list.txt", "a") as handle:
        handle.write("seq_empty\n")
    cfg_path = tiny_training_yaml(tmp_path / "bad.yaml", root, epochs=1, samples=64)
    with caplog.at_level(logging.WARNING):
        trainer = _run(cfg_path, tmp_path / "out")
    assert trainer.iteration == 16
    assert trainer.skipped["sequence too short or mostly invisible"] > 0
    assert trainer.skipped["failed: unreadable frame"] > 0
    assert "unreadable frame" in caplog.text


@pytest.mark.e2e
def test_missing_dataset_root_names_the_setting(tmp_path):
    cfg_path = tmp_path / "got.yaml"
    tiny_training_yaml(cfg_path, tmp_path, epochs=1)
    cfg_text = cfg_path.read_text().replace(f"'CUSTOM:{tmp_path}'", "GOT10K_vottrain")
    cfg_path.write_text(cfg_text)
    env = dict(os.environ, LORETRACK_DATA_DIR=str(tmp_path / "nowhere"))
    result = subprocess.run(_train_command(cfg_path, tmp_path / "out"), capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 2
    assert "LORETRACK_GOT10K_DIR" in result.stderr.strip().splitlines()[-1]


@pytest.mark.e2e
def test_wandb_logging_works_offline(dataset, tmp_path):
    cfg_path = tiny_training_yaml(tmp_path / "wb.yaml", dataset, epochs=1, samples=8)
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
    result = subprocess.run(_train_command(cfg_path, tmp_path / "out", "--use_wandb", "1"), capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = list((tmp_path / "out" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


@pytest.mark.parametrize("num_workers", [1, 2])
def test_loader_workers_follow_the_epoch(dataset, tmp_path, num_workers):
    """Persistent worker processes hold their own copy of the sampler: the epoch set in the main process
    must still reach them, or every epoch repeats the first one's pairs."""
    cfg = load_config(tiny_training_yaml(tmp_path / "tiny.yaml", dataset, samples=8, batch=4))
    paths = get_paths(save_dir=tmp_path)
    crops = run_training.crop_settings(cfg, build_model(cfg, training=True))

    def epochs_of_batches(workers: int) -> list[list[torch.Tensor]]:
        sampler = run_training.build_sampler(cfg, "TRAIN", paths, seed=7, crops=crops)
        loader = run_training.build_loader(sampler, 4, workers, run_training.RunContext())
        result = []
        for epoch in (1, 2, 3):
            sampler.set_epoch(epoch)
            result.append([batch["search_images"].clone() for batch in loader])
        return result

    in_process, in_workers = epochs_of_batches(0), epochs_of_batches(num_workers)
    for epoch, (expected, got) in enumerate(zip(in_process, in_workers, strict=True), start=1):
        assert len(expected) == len(got) == 2
        for a, b in zip(expected, got, strict=True):
            assert torch.equal(a, b), f"epoch {epoch}: workers drew different pairs than the main process"
    assert not torch.equal(in_process[0][0], in_process[1][0]), "epochs 1 and 2 drew the same pairs"


def test_number_of_loader_workers_does_not_change_the_trained_weights(dataset, tmp_path):
    cfg_path = tiny_training_yaml(tmp_path / "tiny.yaml", dataset, epochs=3, samples=16, batch=4)
    weights = []
    for workers in (0, 1):
        save_dir = tmp_path / f"workers{workers}"
        _run(cfg_path, save_dir, num_workers=workers)
        weights.append(read_checkpoint(_latest(save_dir, "tiny"))["net"])
    assert weights[0].keys() == weights[1].keys()
    differing = [k for k in weights[0] if not torch.equal(weights[0][k], weights[1][k])]
    assert not differing, f"NUM_WORKER 0 and 1 trained different weights: {differing[:3]}"
