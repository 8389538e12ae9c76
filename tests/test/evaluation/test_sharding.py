"""Many runners, one results folder: claims, take-over of dead runners' claims, one manifest, torchrun ranks."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from lib.test.evaluation.claims import ClaimBoard, RunnerRank, read_holder
from lib.test.evaluation.datasets import get_dataset
from lib.test.evaluation.results_store import (
    ResultsExistError,
    RunIdentity,
    close_results_folder,
    open_results_folder,
    result_problem,
)
from lib.test.evaluation.running import run_dataset
from lib.utils.errors import UserError
from lib.utils.io import create_exclusive_file, host_tag
from lib.utils.run_layout import (
    MANIFEST_NAME,
    claim_file,
    claims_folder,
    results_folder,
    runner_claims_folder,
    sequence_claim_base,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
IDENTITY = RunIdentity("digest-a", None, "eager")
DONE_LINE = re.compile(r"^(seq\d+): \d+ frames, ", re.MULTILINE)


class SlowStaticTracker:
    """Reports the initial box, after ``delay`` seconds per frame so that concurrent runners overlap (the
    baseline trackers' package imports torch, which would cost each spawned worker seconds). With ``gate`` (a
    folder) it says it is ready there and waits for ``<gate>/go``, so that several start tracking at once."""

    def __init__(self, device: str = "cpu", delay: float = 0.0, gate: str | None = None) -> None:
        self.delay = delay
        if gate:
            (Path(gate) / f"ready-{os.getpid()}").touch()
            while not (Path(gate) / "go").exists():
                time.sleep(0.005)

    def initialize(self, image, info):
        self.box = list(info["init_bbox"])

    def track(self, image):
        time.sleep(self.delay)
        return {"target_bbox": self.box}


def make_benchmark(root: Path, count: int, frames: int = 3) -> Path:
    """``count`` tiny sequences in the 'folder' benchmark layout."""
    for index in range(count):
        folder = root / f"seq{index}"
        folder.mkdir(parents=True)
        for frame in range(frames):
            cv2.imwrite(str(folder / f"{frame:04d}.png"), np.full((48, 64, 3), 20 * frame, np.uint8))
        (folder / "groundtruth.txt").write_text("10,12,20,16\n")
    return root


def fake_claim(base: Path, host: str, pid: int, age_s: float = 0.0, lease_s: float = 60.0) -> Path:
    """A claim as another runner would have left it, its last heartbeat ``age_s`` ago."""
    path = claim_file(base, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    machine = ClaimBoard()._content("feed")  # this machine's boot and PID namespace, for local holders
    content = {**json.loads(machine), "host": host, "pid": pid, "lease_s": lease_s, "token": "feed"}
    assert create_exclusive_file(path, json.dumps(content))
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def quiet(_: str) -> None:
    pass


def run_in_threads(target, count: int) -> None:
    """``count`` threads running ``target`` (which waits on a barrier of that many to start together)."""
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_each_rank_takes_its_own_shard_first():
    assert RunnerRank().order(list(range(5))) == [0, 1, 2, 3, 4]
    assert RunnerRank(1, 3).order(list(range(7))) == [1, 4, 2, 5, 0, 3, 6]
    rank = RunnerRank.from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                                        "TORCHELASTIC_RUN_ID": "job7", "MASTER_ADDR": "node0", "MASTER_PORT": "29500"})
    assert rank == RunnerRank(3, 4, 1, 2, "job7@node0:29500") and rank.distributed
    assert RunnerRank.from_environment({}) == RunnerRank()
    for bad in ({"RANK": "4", "WORLD_SIZE": "4"}, {"RANK": "x", "WORLD_SIZE": "2"}, {"RANK": "0"}):
        with pytest.raises(UserError, match="RANK|WORLD_SIZE"):
            RunnerRank.from_environment(bad)


def test_each_rank_uses_its_own_gpus(monkeypatch):
    import torch

    from lib.test.evaluation.running import device_for_worker
    from lib.test.evaluation.tester import TestRun, rank_gpus

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    on_gpu = TestRun("ostrack", "any", device="cuda")
    assert rank_gpus(on_gpu, RunnerRank(5, 8, 3, 4)) == range(3, 4)
    assert rank_gpus(TestRun("ostrack", "any", num_gpus=2), RunnerRank(1, 2, 1, 2)) == range(2, 4)
    assert rank_gpus(TestRun("ostrack", "any"), RunnerRank(1, 2, 1, 2)) == range(0)
    with pytest.raises(UserError, match="needs cuda:4..cuda:4, but this machine has 4 GPU"):
        rank_gpus(on_gpu, RunnerRank(4, 5, 4, 5))
    assert [device_for_worker(k, 2, first_gpu=2) for k in range(3)] == ["cuda:2", "cuda:3", "cuda:2"]


def test_claim_lease_must_be_positive():
    from lib.test.evaluation.tester import TestRun, check_devices

    for minutes in (0, -1, float("nan"), float("inf")):
        with pytest.raises(UserError, match="--claim_lease must be a positive number of minutes"):
            check_devices(TestRun("ostrack", "any", claim_lease_min=minutes))
    with pytest.raises(UserError, match="lease"):
        ClaimBoard(lease_s=0)


def test_exactly_one_of_many_concurrent_takers_gets_a_stale_claim(tmp_path):
    base = sequence_claim_base(tmp_path, "seq0", "folder")
    fake_claim(base, socket.gethostname(), dead_pid())
    board, barrier, won = ClaimBoard(lease_s=60), threading.Barrier(16), []

    def take() -> None:
        barrier.wait()
        claim = board.try_acquire(base)
        if claim is not None:
            won.append(claim)

    run_in_threads(take, 16)
    assert len(won) == 1 and won[0].taken_over is not None and won[0].path == claim_file(base, 1)
    assert read_holder(won[0].path).pid == os.getpid() and not claim_file(base, 0).exists()
    assert board.try_acquire(base) is None  # held by a live process (this one)
    board.release(won[0])
    assert not won[0].path.exists()


def test_dead_runners_claims_are_taken_over_live_ones_respected(tmp_path):
    bench = make_benchmark(tmp_path / "bench", 5, frames=2)
    sequences = get_dataset("folder", root=bench)
    results = tmp_path / "results"
    base = {seq.name: sequence_claim_base(results, seq.name, seq.dataset) for seq in sequences}
    fake_claim(base["seq0"], socket.gethostname(), dead_pid())  # this machine, process gone
    fake_claim(base["seq1"], "elsewhere", 4242, age_s=120)  # another machine, no heartbeat for 2 leases
    fake_claim(base["seq2"], "elsewhere", 4242, age_s=5)  # another machine, heartbeat 5 s ago
    half_made = claims_folder(results) / f".seq4.claim-0.tmp-{host_tag()}-{dead_pid()}-deadbeef"
    half_made.write_text("{")  # a runner killed while it claimed
    dead_runner = fake_claim(runner_claims_folder(results) / "killed-runner", socket.gethostname(), dead_pid())
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        fake_claim(base["seq3"], socket.gethostname(), sleeper.pid, age_s=5)  # a live process of this machine
        report = run_dataset(SlowStaticTracker, sequences, results, show_progress=False, log=quiet,
                             board=ClaimBoard(lease_s=60))
    finally:
        sleeper.kill()
        sleeper.wait()
    assert report.done == ["seq0", "seq1", "seq4"] and report.elsewhere == ["seq2", "seq3"] and report.ok
    assert "2 tracked by other runners" in report.summary()
    assert [seq.name for seq in sequences if result_problem(results, seq) is None] == ["seq0", "seq1", "seq4"]
    remaining = sorted(path.name for path in claims_folder(results).iterdir() if path.is_file())
    assert remaining == ["seq2.claim-0", "seq3.claim-0"]  # taken-over claims are released after tracking
    assert not half_made.exists() and not dead_runner.exists()

    rerun = run_dataset(SlowStaticTracker, sequences, results, show_progress=False, log=quiet)  # seq3's holder died
    assert rerun.done == ["seq3"] and rerun.elsewhere == ["seq2"] and sorted(rerun.skipped) == ["seq0", "seq1", "seq4"]


def test_a_runner_taken_over_while_tracking_leaves_the_results_to_the_new_holder(tmp_path):
    bench = make_benchmark(tmp_path / "bench", 2, frames=3)
    sequences = get_dataset("folder", root=bench)
    results = tmp_path / "results"
    base = sequence_claim_base(results, "seq0", sequences[0].dataset)
    other, taken = ClaimBoard(lease_s=60), []

    class SuspendedTracker(SlowStaticTracker):
        """While it tracks seq0 its heartbeat stops for two leases and another runner takes the claim over."""

        def track(self, image):
            if not taken and claim_file(base, 0).exists():
                os.utime(claim_file(base, 0), (time.time() - 120, time.time() - 120))
                taken.append(other.try_acquire(base))
            return super().track(image)

    report = run_dataset(SuspendedTracker, sequences, results, show_progress=False, log=quiet,
                         board=ClaimBoard(lease_s=60))
    assert taken[0] is not None and taken[0].path == claim_file(base, 1)
    assert report.done == ["seq1"] and report.elsewhere == ["seq0"] and report.ok
    assert "seq0: tracked by another runner (its claim was taken over" in report.summary()
    assert [seq.name for seq in sequences if result_problem(results, seq) is None] == ["seq1"]
    assert read_holder(taken[0].path).token == taken[0].token  # the new holder's claim is left alone
    other.release(taken[0])


def test_the_manifest_is_created_exactly_once_by_racing_runners(tmp_path, monkeypatch):
    import lib.test.evaluation.results_store as results_store

    created, real_create = [], results_store.create_exclusive_file

    def counting_create(path, text):
        made = real_create(path, text)
        created.append(made)
        return made

    monkeypatch.setattr(results_store, "create_exclusive_file", counting_create)
    board, barrier, runners, errors = ClaimBoard(lease_s=60), threading.Barrier(12), [], []

    def join() -> None:
        barrier.wait()
        try:
            runners.append(open_results_folder(tmp_path, IDENTITY, "folder", 4, board, log=quiet))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    run_in_threads(join, 12)
    assert not errors and len(runners) == 12 and created == [True]
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert len(manifest["datasets"]["folder"]["runners"]) == 12 and manifest["finished"] is None

    for index, runner in enumerate(runners):
        close_results_folder(tmp_path, "folder", board, runner, tracked=1 if index < 4 else 0, failed=[],
                             valid=[f"seq{k}" for k in range(4)], log=quiet)
        board.release(runner)
        finished = json.loads((tmp_path / MANIFEST_NAME).read_text())["datasets"]["folder"]["finished"]
        assert (finished is not None) == (index == 11), "only the last runner to end finishes the dataset"
    entry = json.loads((tmp_path / MANIFEST_NAME).read_text())["datasets"]["folder"]
    assert (entry["done"], entry["reused"], entry["failed"]) == (4, 0, 0)


def test_a_rank_starting_after_the_others_ended_joins_their_session(tmp_path):
    """torchrun's ranks are one session even when one starts only after the others tracked everything."""
    for rank, tracked in ((0, 2), (1, 0)):
        board = ClaimBoard(lease_s=60, rank=RunnerRank(rank, 2, rank, 2, "job@node0:29500"))
        runner = open_results_folder(tmp_path, IDENTITY, "folder", 2, board, log=quiet)
        close_results_folder(tmp_path, "folder", board, runner, tracked=tracked, failed=[],
                             valid=["seq0", "seq1"], log=quiet)
        board.release(runner)
    entry = json.loads((tmp_path / MANIFEST_NAME).read_text())["datasets"]["folder"]
    assert sorted(record["rank"] for record in entry["runners"].values()) == [0, 1]
    assert (entry["done"], entry["reused"]) == (2, 0) and entry["finished"] is not None


def test_exclusive_creation_has_one_winner_across_processes(tmp_path):
    target = tmp_path / "manifest.json"
    go = tmp_path / "go"
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path[:0] = [{str(REPO_ROOT)!r}]
        from lib.utils.io import create_exclusive_file
        open(os.path.join({str(tmp_path)!r}, f"ready-{{os.getpid()}}"), "w").close()
        while not os.path.exists({str(go)!r}):
            time.sleep(0.001)
        print(create_exclusive_file({str(target)!r}, f"made by {{os.getpid()}}\\n"), os.getpid())
        """)
    processes = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
                 for _ in range(6)]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < len(processes):
        assert time.monotonic() < deadline, "the processes did not start within 60 s"
        time.sleep(0.01)
    go.touch()
    answers = [process.communicate(timeout=60)[0].split() for process in processes]
    winners = [pid for made, pid in answers if made == "True"]
    assert len(winners) == 1 and target.read_text() == f"made by {winners[0]}\n"
    assert sorted(made for made, _ in answers) == ["False"] * 5 + ["True"]


def test_a_runner_of_another_identity_is_refused(tmp_path):
    board = ClaimBoard(lease_s=60)
    runner = open_results_folder(tmp_path, IDENTITY, "folder", 2, board, log=quiet)
    other = RunIdentity("digest-b", None, "eager")
    with pytest.raises(ResultsExistError, match="being tracked into by another run") as refused:
        open_results_folder(tmp_path, other, "folder", 2, board, force=True, log=quiet)
    assert "\n" not in str(refused.value) and "config digest digest-a -> digest-b" in str(refused.value)
    (tmp_path / "seq0.txt").write_text("1\t2\t3\t4\n")
    close_results_folder(tmp_path, "folder", board, runner, 1, [], ["seq0"], log=quiet)
    board.release(runner)
    with pytest.raises(ResultsExistError, match="holds results of another run .*--force"):
        open_results_folder(tmp_path, other, "folder", 2, board, log=quiet)
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["config_digest"] == "digest-a"
    assert not list(runner_claims_folder(tmp_path).iterdir())


RUNNER = """
import sys
from functools import partial
sys.path[:0] = [{repo!r}]
from lib.test.evaluation.datasets import get_dataset
from lib.test.evaluation.results_store import RunIdentity
from lib.test.evaluation.running import run_dataset
from tests.test.evaluation.test_sharding import SlowStaticTracker

if __name__ == "__main__":
    sequences = get_dataset("folder", root={bench!r})
    report = run_dataset(partial(SlowStaticTracker, delay=0.1, gate={gate!r}), sequences, {results!r},
                         threads={threads}, show_progress=False, identity=RunIdentity("digest-a", None, "eager"),
                         dataset="folder")
    sys.exit(0 if report.ok else 1)
"""


@pytest.mark.e2e
def test_two_runners_track_every_sequence_exactly_once(tmp_path):
    """A runner with 2 workers and a sequential one; their 3 trackers start at the same moment on one folder."""
    bench = make_benchmark(tmp_path / "bench", 10)
    results, gate = tmp_path / "results", tmp_path / "gate"
    gate.mkdir()
    processes = []
    for threads in (2, 0):
        script = tmp_path / f"runner{threads}.py"
        script.write_text(RUNNER.format(repo=str(REPO_ROOT), bench=str(bench), gate=str(gate), results=str(results),
                                        threads=threads))
        processes.append(subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + 90
    while len(list(gate.glob("ready-*"))) < 3:
        assert all(process.poll() is None for process in processes), [p.communicate()[1] for p in processes]
        assert time.monotonic() < deadline, "the runners did not build their trackers within 90 s"
        time.sleep(0.01)
    (gate / "go").touch()
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    tracked = [DONE_LINE.findall(out) for out, _ in outputs]
    assert all(tracked), f"both runners must have tracked some sequences: {tracked}"
    counts = Counter(name for names in tracked for name in names)
    assert counts == Counter({f"seq{index}": 1 for index in range(10)}), counts
    sequences = get_dataset("folder", root=bench)
    assert all(result_problem(results, seq) is None for seq in sequences)
    entry = json.loads((results / MANIFEST_NAME).read_text())["datasets"]["folder"]
    assert entry["done"] == 10 and entry["reused"] == 0 and entry["finished"] is not None
    assert sorted(record["done"] for record in entry["runners"].values()) == sorted(map(len, tracked))
    assert not [path for path in claims_folder(results).rglob("*") if path.is_file()], "claims left behind"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import torch

    from lib.models import build_model, save_checkpoint
    from tests.model_configs import student_config

    folder = tmp_path_factory.mktemp("tiny_model")
    torch.manual_seed(0)
    config = student_config()
    (folder / "student.yaml").write_text(config.to_yaml())
    return folder / "student.yaml", save_checkpoint(folder / "student.pth.tar", build_model(config), epoch=1)


@pytest.mark.e2e
@pytest.mark.slow
def test_torchrun_ranks_shard_one_results_folder(tiny_model, tmp_path):
    config, checkpoint = tiny_model
    bench = make_benchmark(tmp_path / "bench", 6)
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun) if torchrun.exists() else sys.executable, *([] if torchrun.exists() else
               ["-m", "torch.distributed.run"]), "--nproc_per_node", "2", "--master_port", "0",
               str(REPO_ROOT / "tracking" / "test.py"), "ostrack", str(config), "--dataset", "folder",
               "--dataset_root", str(bench), "--checkpoint", str(checkpoint), "--save_dir", str(tmp_path / "out"),
               "--no_progress"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=240,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert finished.returncode == 0, finished.stderr[-3000:]
    counts = Counter(DONE_LINE.findall(finished.stdout))
    assert counts == Counter({f"seq{index}": 1 for index in range(6)}), finished.stdout
    assert "rank 0 of 2: " in finished.stdout and "rank 1 of 2: " in finished.stdout  # (one may find nothing left)
    results = results_folder(_paths(tmp_path / "out"), "ostrack", "student")
    assert all(result_problem(results, seq) is None for seq in get_dataset("folder", root=bench))
    manifest = json.loads((results / MANIFEST_NAME).read_text())
    runners = manifest["datasets"]["folder"]["runners"].values()
    assert sorted(record["rank"] for record in runners) == [0, 1] and manifest["finished"] is not None
    assert manifest["datasets"]["folder"]["done"] == 6 and sum(record["done"] for record in runners) == 6


def _paths(save_dir: Path):
    from lib.utils.paths import get_paths

    return get_paths(save_dir=save_dir)
