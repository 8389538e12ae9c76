"""The test runner on the three real OTB mini sequences, with a deterministic dummy tracker.

Real trackers are tested elsewhere; here the tracker only has to be deterministic, slow on request, and able
to crash, so that resuming, parallel workers, crash reports and atomic writes can be checked exactly.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from lib.test.evaluation.data import Sequence
from lib.test.evaluation.datasets import get_dataset
from lib.test.evaluation.results_store import result_path_base, result_problem
from lib.test.evaluation.running import device_for_worker, run_dataset, threads_per_worker
from lib.utils.run_layout import claims_folder, result_files

MINI_OTB = ["Couple", "Crossing", "Football1"]
REPO_ROOT = Path(__file__).resolve().parents[3]


class DummyTracker:
    """Moves the initial box by a fixed fractional step per frame (x goes negative: tests truncation to zero)."""

    def __init__(self, device: str, delay: float = 0.0, crash_on_init_x: float | None = None) -> None:
        self.device, self.delay, self.crash_on_init_x = device, delay, crash_on_init_x

    def initialize(self, image: np.ndarray, info: dict) -> None:
        assert image.dtype == np.uint8 and image.ndim == 3
        self.box, self.frame = list(info["init_bbox"]), 0

    def track(self, image: np.ndarray) -> dict:
        self.frame += 1
        if self.box[0] == self.crash_on_init_x and self.frame == 10:
            raise RuntimeError("dummy tracker lost its mind")
        time.sleep(self.delay)
        x, y, w, h = self.box
        return {"target_bbox": [x - 0.75 * self.frame, y + 0.5, w + 0.25, h]}


def broken_factory(device: str) -> DummyTracker:
    raise FileNotFoundError(f"no checkpoint for {device}")


def expected_rows(seq: Sequence) -> list[list[int]]:
    x, y, w, h = seq.init_bbox
    rows = [[int(x), int(y), int(w), int(h)]]
    rows += [[int(np.trunc(x - 0.75 * k)), int(y + 0.5), int(w + 0.25), int(h)] for k in range(1, len(seq))]
    return rows


def read_results(results_dir: Path) -> dict[str, str]:
    """Box files only: time files differ between runs by nature."""
    return {path.name: path.read_text() for path in sorted(results_dir.rglob("*.txt"))
            if not path.name.endswith("_time.txt")}


def assert_no_partial_files(results_dir: Path) -> None:
    """No partial result file; a killed runner's half-made claim in claims/ is removed by the next start."""
    partial = [path for path in results_dir.rglob("*") if path.name.startswith(".")
               and claims_folder(results_dir) not in path.parents]
    assert not partial, "temporary files left behind"


@pytest.fixture(scope="module")
def mini_otb(shared_data):
    return get_dataset("otb", root=shared_data / "otb_mini_sequences", sequences=MINI_OTB)


@pytest.fixture(scope="module")
def reference_results(mini_otb, tmp_path_factory) -> dict[str, str]:
    """An uninterrupted sequential run, against which every other run must give identical files."""
    results_dir = tmp_path_factory.mktemp("reference")
    report = run_dataset(DummyTracker, mini_otb, results_dir, show_progress=False, log=lambda _: None)
    assert report.done == MINI_OTB and report.ok
    return read_results(results_dir)


def test_result_format_matches_ostrack(mini_otb, reference_results, tmp_path):
    for seq in mini_otb:
        lines = reference_results[f"{seq.name}.txt"].splitlines()
        assert [list(map(int, line.split("\t"))) for line in lines] == expected_rows(seq)
    assert "\t-1\t" not in reference_results["Couple.txt"] and "\n-1\t47\t25\t62\n" in reference_results["Couple.txt"]
    report = run_dataset(DummyTracker, mini_otb[:1], tmp_path, show_progress=False, log=lambda _: None)
    time_lines = (tmp_path / "Couple_time.txt").read_text().splitlines()
    assert len(time_lines) == 140 and all(len(line.split(".")[1]) == 6 for line in time_lines)
    result = report.results[0]
    assert result.num_frames == 140 and result.fps == pytest.approx(140 / sum(map(float, time_lines)), rel=1e-3)


def test_got10k_and_trackingnet_results_go_to_a_tag_folder(mini_otb, tmp_path):
    football = mini_otb["Football1"]
    seq = Sequence("GOT-10k_Val_000001", football.frames[:3], "got10k", football.ground_truth_rect[:1])
    assert result_path_base(tmp_path, seq) == tmp_path / "got10k" / "GOT-10k_Val_000001"
    run_dataset(DummyTracker, [seq], tmp_path, show_progress=False, log=lambda _: None)
    assert result_problem(tmp_path, seq) is None
    assert all(path.is_file() for path in result_files(tmp_path / "got10k" / seq.name))


def test_parallel_run_reports_a_crash_and_resumes(mini_otb, reference_results, tmp_path):
    crossing_x = mini_otb["Crossing"].init_bbox[0]
    messages: list[str] = []
    report = run_dataset(partial(DummyTracker, crash_on_init_x=crossing_x), mini_otb, tmp_path, threads=2,
                         show_progress=False, log=messages.append)
    assert sorted(report.done) == ["Couple", "Football1"] and report.failed == ["Crossing"] and not report.ok
    failure = report.results[1]
    assert "RuntimeError: dummy tracker lost its mind" in failure.error and "track" in failure.details
    assert "Crossing: FAILED: RuntimeError" in messages[-1]
    assert not list(tmp_path.glob("Crossing*")), "a crashed sequence must leave no result file"
    assert_no_partial_files(tmp_path)
    assert report.fps and all(result.fps for result in report.results if result.status == "done")

    rerun = run_dataset(DummyTracker, mini_otb, tmp_path, threads=2, show_progress=False, log=lambda _: None)
    assert rerun.done == ["Crossing"] and sorted(rerun.skipped) == ["Couple", "Football1"] and rerun.ok
    assert read_results(tmp_path) == reference_results


def _processes_with_marker(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.e2e
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses SIGKILL and /proc")
def test_killed_run_resumes_to_identical_files(shared_data, mini_otb, reference_results, tmp_path):
    """SIGKILL the runner (2 workers) after its first sequence; a re-run completes only the rest."""
    results_dir = tmp_path / "results"
    script = tmp_path / "run_slowly.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(REPO_ROOT)!r}]
        from functools import partial
        from lib.test.evaluation.datasets import get_dataset
        from lib.test.evaluation.running import run_dataset
        from tests.test.evaluation.test_running import DummyTracker

        if __name__ == "__main__":
            order = ["Football1", "Couple", "Crossing"]  # Football1 (74 frames) finishes long before Couple (140)
            sequences = get_dataset("otb", root={str(shared_data / "otb_mini_sequences")!r}, sequences=order)
            sequences.sort(key=lambda seq: order.index(seq.name))
            run_dataset(partial(DummyTracker, delay=0.02), sequences, {str(results_dir)!r}, threads=2,
                        show_progress=False)
        """))
    marker = f"LORETRACK_KILL_TEST_{os.getpid()}_{time.monotonic_ns()}"
    runner = subprocess.Popen([sys.executable, str(script)], env={**os.environ, marker: "1"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (results_dir / "Football1.txt").exists():
        assert runner.poll() is None, runner.stderr.read().decode()
        assert time.monotonic() < deadline, "the runner produced no result within 60 s"
        time.sleep(0.01)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    runner.stderr.close()

    deadline = time.monotonic() + 10  # the workers die with the runner instead of tracking on as orphans
    while _processes_with_marker(marker):
        assert time.monotonic() < deadline, "worker processes outlived the killed runner"
        time.sleep(0.05)
    finished = sorted(read_results(results_dir))
    assert "Football1.txt" in finished and "Couple.txt" not in finished
    assert_no_partial_files(results_dir)

    report = run_dataset(DummyTracker, mini_otb, results_dir, show_progress=False, log=lambda _: None)
    assert report.skipped == [name[:-4] for name in finished] and sorted(report.done + report.skipped) == MINI_OTB
    assert read_results(results_dir) == reference_results


def test_a_tracker_that_cannot_be_built_fails_each_sequence_clearly(mini_otb, tmp_path):
    report = run_dataset(broken_factory, mini_otb[:2], tmp_path, threads=1, show_progress=False, log=lambda _: None)
    assert report.failed == MINI_OTB[:2]
    assert all(result.error == "could not build the tracker: FileNotFoundError: no checkpoint for cpu"
               for result in report.results)
    with pytest.raises(FileNotFoundError):  # in-process, nothing could run: fail at once
        run_dataset(broken_factory, mini_otb[:2], tmp_path, show_progress=False, log=lambda _: None)


def test_invalid_boxes_fail_with_the_sequence_name(mini_otb, tmp_path):
    frames = mini_otb["Football1"].frames[:3]
    bad_init = {"nan_box": [np.nan, 1, 10, 10], "flat_box": [10, 10, 0, 5], "far_box": [5000, 10, 10, 10],
                "behind_box": [-50, -50, 20, 20]}
    sequences = [Sequence(name, frames, "otb", np.array([box])) for name, box in bad_init.items()]
    report = run_dataset(DummyTracker, sequences, tmp_path, show_progress=False, log=lambda _: None)
    assert report.failed == list(bad_init) and not report.done
    reasons = ["NaN or infinity", "zero or negative size", "entirely outside", "entirely outside"]
    for result, reason in zip(report.results, reasons, strict=True):
        assert f"sequence '{result.name}'" in result.error and reason in result.error and result.details is None
    assert not any(tmp_path.iterdir())


def test_unusable_tracker_output_is_a_clear_failure(mini_otb, tmp_path):
    class NoBoxTracker(DummyTracker):
        def track(self, image):
            return {"box": [1, 2, 3, 4]}

    seq = Sequence("short", mini_otb["Couple"].frames[:2], "otb", mini_otb["Couple"].ground_truth_rect[:2])
    report = run_dataset(NoBoxTracker, [seq], tmp_path, show_progress=False, log=lambda _: None)
    assert "frame 1: the tracker must return {'target_bbox'" in report.results[0].error
    with pytest.raises(Exception, match="target_bbox"):
        run_dataset(NoBoxTracker, [seq], tmp_path, debug=True, show_progress=False, log=lambda _: None)


def test_worker_devices_and_thread_shares():
    assert [device_for_worker(k, 2) for k in range(3)] == ["cuda:0", "cuda:1", "cuda:0"]
    assert device_for_worker(5, 0) == "cpu"
    assert threads_per_worker(workers=4, cores=16) == 4 and threads_per_worker(workers=8, cores=2) == 1
