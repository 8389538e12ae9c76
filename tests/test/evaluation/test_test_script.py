"""tracking/test.py end to end on the real OTB frames: parallel workers, kill, resume, analysis."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lib.models import save_checkpoint
from lib.utils.paths import REPO_ROOT, get_paths
from lib.utils.run_layout import results_folder
from tests.model_configs import parity_student

SEQUENCES = ["Couple", "Crossing", "Football1"]


@pytest.fixture(scope="module")
def tiny_tracker(tmp_path_factory, parity_dir):
    folder = tmp_path_factory.mktemp("tracker")
    config, model = parity_student(folder, parity_dir)
    return config, save_checkpoint(folder / "student.pth.tar", model, epoch=1)


def _test_command(config, checkpoint, otb_root, save_dir, *extra):
    return [sys.executable, str(REPO_ROOT / "tracking" / "test.py"), "ostrack", str(config), "--dataset", "otb",
            "--dataset_root", str(otb_root), "--sequences", *SEQUENCES, "--threads", "2", "--checkpoint",
            str(checkpoint), "--save_dir", str(save_dir), "--no_progress", *extra]


def _analyse(otb_root, save_dir, json_path):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "tracking" / "analysis_results.py"), "--dataset", "otb",
                             "--dataset_root", str(otb_root), "--sequences", *SEQUENCES, "--tracker", "ostrack",
                             "--param", "student", "--save_dir", str(save_dir), "--json", str(json_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    table = [line for line in result.stdout.splitlines() if line.startswith("ostrack_student")]
    return table[0].split("|")[:6], json.loads(json_path.read_text())


@pytest.mark.e2e
@pytest.mark.slow
def test_killed_run_resumes_to_the_same_results(tiny_tracker, shared_data, tmp_path):
    config, checkpoint = tiny_tracker
    otb_root = shared_data / "otb_mini_sequences"
    straight = subprocess.run(_test_command(config, checkpoint, otb_root, tmp_path / "straight"),
                              capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr
    assert "3 done" in straight.stdout

    resumed_dir = tmp_path / "resumed"
    results = results_folder(get_paths(save_dir=resumed_dir), "ostrack", "student")
    process = subprocess.Popen(_test_command(config, checkpoint, otb_root, resumed_dir), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(results.glob("*_time.txt")):
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = sorted(p.name for p in results.glob("*.txt") if not p.name.endswith("_time.txt"))
    assert len(finished) < len(SEQUENCES), "the run finished before it could be killed"
    rerun = subprocess.run(_test_command(config, checkpoint, otb_root, resumed_dir), capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(finished)} skipped" in rerun.stdout

    for name in SEQUENCES:
        expected = results_folder(get_paths(save_dir=tmp_path / "straight"), "ostrack", "student") / f"{name}.txt"
        assert (results / f"{name}.txt").read_text() == expected.read_text()
    table_a, report_a = _analyse(otb_root, tmp_path / "straight", tmp_path / "a.json")
    table_b, report_b = _analyse(otb_root, resumed_dir, tmp_path / "b.json")
    assert table_a == table_b  # name, AUC, OP50, OP75, Precision, Norm Precision (FPS differs by nature)
    assert report_a["per_sequence"] == report_b["per_sequence"]
    without_fps = [{k: v for k, v in r["scores"]["ostrack_student"].items() if k != "FPS"}
                   for r in (report_a, report_b)]
    assert without_fps[0] == without_fps[1]


@pytest.mark.e2e
def test_bad_input_is_one_line_exit_2(tiny_tracker, shared_data, tmp_path):
    config, checkpoint = tiny_tracker
    otb_root = shared_data / "otb_mini_sequences"
    missing = subprocess.run(_test_command(config, tmp_path / "none.pth.tar", otb_root, tmp_path), capture_output=True,
                             text=True, timeout=120)
    assert missing.returncode == 2 and "weight file not found" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    no_data = subprocess.run(_test_command(config, checkpoint, tmp_path / "no_otb", tmp_path), capture_output=True,
                             text=True, timeout=120)
    assert no_data.returncode == 2 and "no_otb" in no_data.stderr
