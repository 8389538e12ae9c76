"""Bad input to the command-line scripts: one line on stderr, exit code 2, traceback only with --debug."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from lib.models import build_model, save_checkpoint
from lib.utils.paths import REPO_ROOT
from tests.model_configs import student_config

DEMO = REPO_ROOT / "tracking" / "demo.py"


def _run(*args, timeout=120):
    return subprocess.run([sys.executable, str(DEMO), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def _assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def tiny_yaml(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    cfg = student_config()
    path.write_text(cfg.to_yaml())
    return path


def test_unknown_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  HEAD:\n    NUM_CHANELS: 32\n")
    _assert_one_line_error(_run("--config", bad), "unknown key 'MODEL.HEAD.NUM_CHANELS'", "bad.yaml")


def test_malformed_yaml(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("MODEL: {HEAD: [\n")
    _assert_one_line_error(_run("--config", bad), "malformed YAML", "broken.yaml")


def test_missing_weight_file(tiny_yaml, tmp_path):
    _assert_one_line_error(_run("--config", tiny_yaml, "--checkpoint", tmp_path / "none.pth.tar"),
                           "weight file not found")


def test_checkpoint_of_another_architecture(tiny_yaml, tmp_path):
    cfg = student_config()
    cfg.MODEL.BACKBONE.EMBED_DIM = 96
    cfg.MODEL.BACKBONE.NUM_HEADS = 6
    path = save_checkpoint(tmp_path / "other.pth.tar", build_model(cfg))
    _assert_one_line_error(_run("--config", tiny_yaml, "--checkpoint", path), "does not fit this model")
    debug = _run("--config", tiny_yaml, "--checkpoint", path, "--debug")
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_smoke_run_with_a_checkpoint(tiny_yaml, tmp_path):
    torch.manual_seed(1)
    path = save_checkpoint(tmp_path / "tiny.pth.tar", build_model(student_config()))
    result = _run("--config", tiny_yaml, "--checkpoint", path, "--frames", "5")
    assert result.returncode == 0, result.stderr
    assert "tracked 5 frames" in result.stdout
