"""Bad input to the command-line scripts: one line on stderr, exit code 2, traceback only with --debug."""
from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from lib.models import build_model, save_checkpoint
from lib.utils.paths import REPO_ROOT
from tests.model_configs import student_config

VIDEO_DEMO = REPO_ROOT / "tracking" / "video_demo.py"


def _run(*args, timeout=120):
    return subprocess.run([sys.executable, str(VIDEO_DEMO), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def _assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    cfg = student_config()
    (folder / "tiny.yaml").write_text(cfg.to_yaml())
    torch.manual_seed(1)
    checkpoint = save_checkpoint(folder / "tiny.pth.tar", build_model(cfg))
    video = folder / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for t in range(6):
        frame = np.full((120, 160, 3), 40, np.uint8)
        frame[40:70, 20 + 10 * t:50 + 10 * t] = (0, 200, 255)
        writer.write(frame)
    writer.release()
    return folder / "tiny.yaml", checkpoint, video


@pytest.mark.e2e
def test_unknown_key(tmp_path, files):
    _, checkpoint, video = files
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  HEAD:\n    NUM_CHANELS: 32\n")
    _assert_one_line_error(_run(bad, checkpoint, video, "--init_bbox", "20,40,30,30"),
                           "unknown key 'MODEL.HEAD.NUM_CHANELS'", "bad.yaml")


@pytest.mark.e2e
def test_malformed_yaml(tmp_path, files):
    _, checkpoint, video = files
    bad = tmp_path / "broken.yaml"
    bad.write_text("MODEL: {HEAD: [\n")
    _assert_one_line_error(_run(bad, checkpoint, video, "--init_bbox", "20,40,30,30"), "malformed YAML",
                           "broken.yaml")


@pytest.mark.e2e
def test_missing_weight_file(files, tmp_path):
    config, _, video = files
    _assert_one_line_error(_run(config, tmp_path / "none.pth.tar", video, "--init_bbox", "20,40,30,30"),
                           "weight file not found")


@pytest.mark.e2e
def test_checkpoint_of_another_architecture(files, tmp_path):
    config, _, video = files
    cfg = student_config()
    cfg.MODEL.BACKBONE.EMBED_DIM = 96
    cfg.MODEL.BACKBONE.NUM_HEADS = 6
    path = save_checkpoint(tmp_path / "other.pth.tar", build_model(cfg))
    _assert_one_line_error(_run(config, path, video, "--init_bbox", "20,40,30,30"), "does not fit this model")
    debug = _run(config, path, video, "--init_bbox", "20,40,30,30", "--debug")
    assert debug.returncode == 2 and "Traceback" in debug.stderr


@pytest.mark.e2e
def test_bad_video_and_box(files, tmp_path):
    config, checkpoint, video = files
    _assert_one_line_error(_run(config, checkpoint, tmp_path / "none.mp4", "--init_bbox", "1,1,5,5"),
                           "video not found")
    _assert_one_line_error(_run(config, checkpoint, video), "--init_bbox")
    _assert_one_line_error(_run(config, checkpoint, video, "--init_bbox", "20,40,0,30"), "zero or negative size")


@pytest.mark.e2e
def test_video_demo_writes_annotated_video_and_boxes(files, tmp_path):
    config, checkpoint, video = files
    result = _run(config, checkpoint, video, "--init_bbox", "20,40,30,30", "--output", tmp_path)
    assert result.returncode == 0, result.stderr
    boxes = np.loadtxt(tmp_path / "clip_boxes.txt", delimiter=",")
    assert boxes.shape == (6, 4) and np.allclose(boxes[0], [20, 40, 30, 30])
    capture = cv2.VideoCapture(str(tmp_path / "clip_tracked.mp4"))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == 6
