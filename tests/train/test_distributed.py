"""DDP on CPU (gloo): per-rank seeds and RNG states, and killed, frozen and restarted workers with real processes."""
from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lib.models import read_checkpoint
from lib.train import launch, run_training
from lib.train.trainer import Trainer
from lib.utils.errors import UserError
from lib.utils.paths import REPO_ROOT, get_paths
from lib.utils.run_layout import TrainingRun
from tests.training_fixtures import free_port, make_custom_dataset, tiny_training_yaml

TRAIN_SCRIPT = REPO_ROOT / "tracking" / "train.py"
EPOCHS = 4
TIMEOUT_S = 15  # --collective_timeout in the tests: above the start-up skew of two ranks on a busy 2-core machine


# ------------------------------------------------------------------------------------------------ seeds, state
def test_each_rank_trains_with_the_base_seed_plus_its_rank():
    """The official code seeds every rank with base seed + rank, so drop-path masks differ per GPU."""
    assert [run_training.rank_seed(42, rank) for rank in range(4)] == [42, 43, 44, 45]
    draws = []
    for rank in (0, 1):
        run_training.seed_process(run_training.rank_seed(42, rank))
        draws.append((torch.rand(3), random.random()))
    assert not torch.equal(draws[0][0], draws[1][0]) and draws[0][1] != draws[1][1]


def _tiny_trainer(rank: int, seed: int) -> Trainer:
    net = torch.nn.Linear(2, 2)
    loader = torch.utils.data.DataLoader(list(range(4)), generator=torch.Generator().manual_seed(7))
    return Trainer(SimpleNamespace(net=net), torch.optim.SGD(net.parameters(), lr=0.1), loader, max_epoch=1,
                   rank=rank, seed=seed)


def test_each_rank_gets_its_own_rng_state_back(caplog):
    states = []
    for rank in (0, 1):
        run_training.seed_process(run_training.rank_seed(42, rank))
        states.append(_tiny_trainer(rank, 42 + rank).rng_state())
    saved = {**_tiny_trainer(0, 42).state_dict(), "rng": states}  # as rank 0 saves it after gathering
    assert [state["seed"] for state in saved["rng"]] == [42, 43]
    restored = _tiny_trainer(1, 43)
    torch.manual_seed(0)
    restored.load_state_dict(saved)
    assert torch.equal(torch.get_rng_state(), states[1]["torch"])
    assert torch.equal(restored.train_loader.generator.get_state(), states[1]["loader"])
    third = _tiny_trainer(2, 44)  # resumed on more ranks than were saved: keeps its seed and says so
    with caplog.at_level(logging.WARNING, logger="lib.train.trainer"):
        third.load_state_dict(saved)
    assert "rank 2 keeps its fresh seed" in caplog.text


# ---------------------------------------------------------------------------------------------- fault messages
def _failure(exitcode: int, pid: int, message: str = "", error_file: Path | None = None) -> SimpleNamespace:
    if error_file is not None:
        error_file.write_text("{}")
    return SimpleNamespace(exitcode=exitcode, pid=pid, message=message, error_file=str(error_file or "<N/A>"))


@pytest.fixture
def run_folder(tmp_path) -> TrainingRun:
    run = TrainingRun(get_paths(save_dir=tmp_path), "ostrack", "tiny")
    run.checkpoint_dir.mkdir(parents=True)
    (run.checkpoint_dir / "OSTrack_ep0003.pth.tar").write_bytes(b"x")
    return run


def test_a_failed_job_is_described_by_its_cause_in_one_line(run_folder, tmp_path):
    checkpoint = run_folder.checkpoint_dir / "OSTrack_ep0003.pth.tar"
    hint = f"the last good checkpoint is {checkpoint} (epoch 3): add --resume to the same command to continue"
    killed = launch.describe_failure({0: _failure(-15, 10), 1: _failure(-9, 11)}, run_folder)
    assert (killed.exit_code, killed.message) == (1, f"rank 1 (pid 11) was killed by SIGKILL; {hint}")
    frozen = launch.describe_failure({0: _failure(1, 10, "lost peer: Timed out waiting 20000ms", tmp_path / "e0"),
                                      1: _failure(-15, 11)}, run_folder, 20, stopped_pids={11})
    assert frozen.exit_code == 1 and frozen.message.startswith("rank 1 (pid 11) was frozen (stopped): the other "
                                                               "ranks gave up after --collective_timeout 20 s")
    lost_node = launch.describe_failure({0: _failure(1, 10, "lost peer: Timed out", tmp_path / "e1")}, run_folder, 20)
    assert lost_node.message.startswith("rank 0 waited --collective_timeout 20 s for the other ranks in vain")
    user = launch.describe_failure({0: _failure(2, 10, "TRAIN.LR must be positive", tmp_path / "e2"),
                                    1: _failure(-15, 11)}, run_folder)
    assert (user.exit_code, user.message) == (2, "TRAIN.LR must be positive")
    run_folder.checkpoint_dir.joinpath("OSTrack_ep0003.pth.tar").unlink()
    early = launch.describe_failure({1: _failure(-9, 11)}, run_folder)
    assert early.message.endswith("no checkpoint was written yet: run the same command again to start over")


def test_only_collective_failures_count_as_a_lost_peer():
    gloo = "[third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 3000ms for recv operation"
    assert launch.lost_peer(RuntimeError(gloo))
    assert launch.lost_peer(RuntimeError("[gloo/transport/tcp/pair.cc:545] Read error: Connection reset by peer"))
    assert not launch.lost_peer(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))  # our bug: traceback
    assert not launch.lost_peer(ValueError("timed out"))


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "soon"])
def test_collective_timeout_must_be_positive_seconds(value):
    with pytest.raises(UserError, match="--collective_timeout"):
        launch.collective_timeout(value)


def test_launcher_flags_are_checked_before_any_process_starts():
    with pytest.raises(UserError, match="--max_restarts"):
        launch.LaunchOptions(nproc_per_node=2, max_restarts=-1).validate()
    with pytest.raises(UserError, match="--node_rank 2"):
        launch.LaunchOptions(nnodes=2, node_rank=2).validate()


# ----------------------------------------------------------------------------------------------- real processes
def _train_command(cfg_path: Path, save_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, str(TRAIN_SCRIPT), "--script", "ostrack", "--config", str(cfg_path), "--save_dir",
            str(save_dir), "--no_progress", "--device", "cpu", "--mode", "multiple", "--nproc_per_node", "2",
            "--master_port", str(free_port()), "--collective_timeout", str(TIMEOUT_S), *extra]


def _worker_pid(launcher_pid: int, rank: int) -> int | None:
    """The pid of the launcher's worker process of ``rank`` (the elastic agent runs inside the launcher)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"\nPPid:\t{launcher_pid}\n" in status and f"RANK={rank}".encode() in environ:
            return int(entry)
    return None


def _saved_epochs(run: TrainingRun) -> list[int]:
    return list(run.checkpoints())


def _wait_for(condition, process: subprocess.Popen, what: str, limit_s: float = 240) -> object:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            pytest.fail(f"the job ended (exit code {process.returncode}) before {what}: {process.stderr.read()}")
        time.sleep(0.01)
    process.kill()
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def ddp_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    cfg_path = tiny_training_yaml(root / "ddp.yaml", make_custom_dataset(root / "data"), epochs=EPOCHS, samples=16,
                                  batch=2)
    return root, cfg_path


@pytest.fixture(scope="module")
def uninterrupted(ddp_setup):
    root, cfg_path = ddp_setup
    result = subprocess.run(_train_command(cfg_path, root / "straight"), capture_output=True, text=True,
                            timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, TrainingRun(get_paths(save_dir=root / "straight"), "ostrack", "ddp")


@pytest.mark.e2e
@pytest.mark.slow
def test_two_ranks_train_with_their_own_seeds_and_save_both_rng_states(uninterrupted):
    result, run = uninterrupted
    assert "(2 process(es))" in result.stderr
    checkpoint = read_checkpoint(run.checkpoints()[EPOCHS])
    assert checkpoint["trainer"]["iteration"] == 4 * EPOCHS  # 16 samples / (2 ranks x batch 2) per epoch
    assert not any(k.startswith("module.") for k in checkpoint["net"])
    rng = checkpoint["trainer"]["rng"]
    assert [(state["rank"], state["seed"]) for state in rng] == [(0, 42), (1, 43)]
    assert not torch.equal(rng[0]["torch"], rng[1]["torch"])


@pytest.mark.e2e
@pytest.mark.slow
def test_killed_worker_restarts_then_frozen_worker_stops_the_job_and_resume_is_bit_identical(ddp_setup,
                                                                                            uninterrupted):
    """One job with --max_restarts 1: rank 1 is killed after epoch 1 (torchrun restarts the group, which resumes
    by itself), then frozen after the next checkpoint (the job ends within the collective timeout, in one
    line); --resume then finishes with the weights of the uninterrupted run."""
    root, cfg_path = ddp_setup
    run = TrainingRun(get_paths(save_dir=root / "faults"), "ostrack", "ddp")
    command = _train_command(cfg_path, root / "faults", "--max_restarts", "1")
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = _wait_for(lambda: _worker_pid(job.pid, 1), job, "rank 1 started")
        _wait_for(lambda: _saved_epochs(run), job, "the first checkpoint")
        os.kill(first, signal.SIGKILL)
        killed_after = _saved_epochs(run)[-1]
        second = _wait_for(lambda: (pid := _worker_pid(job.pid, 1)) not in (None, first) and pid, job,
                           "the restarted rank 1")
        _wait_for(lambda: _saved_epochs(run)[-1] > killed_after, job, "a checkpoint after the restart")
        os.kill(second, signal.SIGSTOP)
        frozen_at = time.monotonic()
        _, stderr = job.communicate(timeout=TIMEOUT_S + 60)
        ended_after = time.monotonic() - frozen_at
    finally:
        if job.poll() is None:
            job.kill()
    last = _saved_epochs(run)[-1]
    assert job.returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr and "torch.distributed" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        f"error: rank 1 (pid {second}) was frozen (stopped): the other ranks gave up after --collective_timeout "
        f"{TIMEOUT_S} s and the job stopped; the last good checkpoint is {run.checkpoints()[last]} (epoch {last}): "
        "add --resume to the same command to continue")
    assert ended_after < TIMEOUT_S + 30, f"the frozen job took {ended_after:.0f} s to end"
    assert "torchrun restarted the workers (restart 1)" in stderr
    assert last < EPOCHS

    resumed = subprocess.run(command[:-2] + ["--resume"], capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = read_checkpoint(uninterrupted[1].checkpoints()[EPOCHS])
    got = read_checkpoint(run.checkpoints()[EPOCHS])
    differing = [k for k in expected["net"] if not torch.equal(expected["net"][k], got["net"][k])]
    assert not differing, f"killed, restarted, frozen and resumed: weights differ from the uninterrupted run in " \
                          f"{differing[:3]}"
    for rank in (0, 1):
        assert torch.equal(expected["trainer"]["rng"][rank]["torch"], got["trainer"]["rng"][rank]["torch"])
