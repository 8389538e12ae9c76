"""The main demo end to end (tiny settings) and the video demo on a video made from real OTB frames."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from lib.models import build_model, save_checkpoint
from lib.utils.paths import REPO_ROOT
from tests.model_configs import student_config


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(1200)  # two demo runs, each allowed 600 s below (about 2 minutes each on an idle machine)
def test_quick_demo_runs_every_stage_and_reuses_them(tmp_path):
    # eager: the default 'auto' would measure the back-ends of every model first (tested in test_auto_backend.py)
    command = [sys.executable, str(REPO_ROOT / "tracking" / "demo.py"), "--quick", "--output", str(tmp_path),
               "--no_progress", "--backend", "eager"]
    env = dict(os.environ, LORETRACK_DATA_DIR=str(tmp_path / "data"))
    first = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    for row in ("teacher", "student ", "student + KD", "static box"):
        assert any(line.startswith(row) for line in first.stdout.splitlines()), row
    results = json.loads((tmp_path / "demo" / "demo_results.json").read_text())
    assert set(results["table"]) == {"teacher", "student", "student + KD", "static box"}
    assert (tmp_path / "demo" / "plots" / "success_plot.png").is_file()
    videos = list((tmp_path / "demo").glob("*_tracked.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 0
    second = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert second.returncode == 0
    assert second.stdout.count("reusing") == 3 and "training" not in second.stdout
    assert second.stdout.count(": back-end eager") == 3


def test_demo_tracks_with_auto_by_default():
    from lib.demo import DemoSettings

    assert DemoSettings().backend == "auto"


@pytest.mark.e2e
def test_video_demo_on_real_otb_frames(tmp_path, shared_data, parity_dir):
    frames_dir = shared_data / "otb_mini_sequences" / "Crossing" / "img"
    files = sorted(frames_dir.glob("*.jpg"))[:30]
    first = cv2.imread(str(files[0]))
    video = tmp_path / "crossing.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25, (first.shape[1], first.shape[0]))
    for path in files:
        writer.write(cv2.imread(str(path)))
    writer.release()
    init = (shared_data / "otb_mini_sequences" / "Crossing" / "groundtruth_rect.txt").read_text().split()[:4]
    (tmp_path / "crossing.txt").write_text(",".join(init) + "\n")  # the sidecar box file
    cfg = student_config()
    (tmp_path / "student.yaml").write_text(cfg.to_yaml())
    model = build_model(cfg)
    model.load_state_dict(torch.load(parity_dir / "state_dict_student.pt", weights_only=True))
    checkpoint = save_checkpoint(tmp_path / "student.pth.tar", model)
    result = subprocess.run([sys.executable, str(REPO_ROOT / "tracking" / "video_demo.py"),
                             str(tmp_path / "student.yaml"), str(checkpoint), str(video), "--output",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    boxes = np.loadtxt(tmp_path / "out" / "crossing_boxes.txt", delimiter=",")
    assert boxes.shape == (30, 4)
    assert np.allclose(boxes[0], [float(v) for v in init])
    assert (tmp_path / "out" / "crossing_tracked.mp4").stat().st_size > 10_000
