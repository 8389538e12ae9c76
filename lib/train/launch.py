"""One training process per rank through torch's elastic launcher (what torchrun runs), and faults in one line.

:func:`launch` runs the workers with ``torch.distributed.launcher.elastic_launch`` in this process, configured
exactly as torchrun configures it from the same flags (``--max_restarts`` included). When the job fails it
names the cause once: the rank that was killed (and by which signal), frozen or failed, the last good
checkpoint and ``--resume``; torchrun's own log lines and tracebacks appear only with ``--debug``.

Worker side (:func:`run_worker`): a worker records why it failed in torchelastic's error file, where the
launcher reads it, instead of printing it once per rank. A rank that lost contact with the others (a peer
died, or a collective waited longer than ``--collective_timeout``) exits quietly; the launcher says which.
Workers that torchrun restarts resume their launch's run by themselves (:func:`restarted_launch`).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.utils.errors import UserError
from lib.utils.run_layout import TrainingRun

LAUNCH_ID_ENV = "LORETRACK_LAUNCH_ID"  # set by the launcher for its workers: which launch a worker belongs to
RESTART_COUNT_ENV = "TORCHELASTIC_RESTART_COUNT"  # set by torch's elastic agent: 0, then 1 after a restart, ...
ERROR_FILE_ENV = "TORCHELASTIC_ERROR_FILE"  # set by the elastic agent: where a worker records why it failed
DEFAULT_COLLECTIVE_TIMEOUT_S = 600.0  # a frozen rank stops the job after this wait (torch's default is 30 min)
EXIT_FAILED = 1
EXIT_USER_ERROR = 2
_TORCH_LAUNCHER_LOGGERS = ("torch.distributed.elastic", "torch.distributed.launcher", "torch.distributed.run")
# what gloo, NCCL and the c10d store say when another rank died or did not answer in time
_LOST_PEER_MARKERS = ("connection reset", "connection closed", "connection refused", "broken pipe", "timed out",
                      "timeout", "socket closed", "pair closure")


@dataclass(frozen=True)
class LaunchOptions:
    """torchrun's flags that ``train.py`` passes through (static rendezvous: one master address and port)."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    max_restarts: int = 0

    def validate(self) -> None:
        if self.nproc_per_node < 1 or self.nnodes < 1:
            raise UserError("--nproc_per_node and --nnodes must be at least 1")
        if not 0 <= self.node_rank < self.nnodes:
            raise UserError(f"--node_rank {self.node_rank} must be in 0..{self.nnodes - 1} (--nnodes {self.nnodes})")
        if self.max_restarts < 0:
            raise UserError("--max_restarts must be 0 or more")
        if not 0 < self.master_port < 65536:
            raise UserError(f"--master_port {self.master_port} is not a TCP port (1..65535)")


@dataclass(frozen=True)
class LaunchResult:
    """How the job ended: the exit code for the command line, and the one line to print when it failed."""

    exit_code: int
    message: str | None = None


def collective_timeout(text: str) -> float:
    """``--collective_timeout``: seconds, finite and positive."""
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"--collective_timeout {text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise UserError(f"--collective_timeout must be a positive number of seconds, not {text}")
    return value


# --------------------------------------------------------------------------------------------------- workers
def restarted_launch() -> tuple[str | None, int]:
    """This worker's launch id (None outside :func:`launch`) and how often torchrun has restarted its group."""
    return os.environ.get(LAUNCH_ID_ENV) or None, int(os.environ.get(RESTART_COUNT_ENV, "0") or 0)


def agent_store(world_size: int, timeout_s: float) -> Any | None:
    """The elastic agent's key-value store under a prefix of this restart, for ``init_process_group(store=...)``;
    None where the agent hosts no store (then ``env://`` is right).

    Needed for ``--max_restarts``: torch's env:// rendezvous reuses the agent's store without a per-restart
    prefix, so a restarted rank can read a dead rank's address from the previous attempt and fail to connect.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    from datetime import timedelta

    import torch.distributed as dist

    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size, is_master=False,
                          timeout=timedelta(seconds=timeout_s))
    return dist.PrefixStore(f"/loretrack/attempt_{restarted_launch()[1]}", store)


def lost_peer(err: BaseException) -> bool:
    """Whether ``err`` says another rank died or did not answer in time (not a fault of this rank): a
    collective's error (raised by torch.distributed or DDP, or naming gloo/NCCL) about a timeout or a closed
    connection."""
    import torch.distributed as dist

    if not isinstance(err, RuntimeError):  # torch.distributed.DistError is one
        return False
    text = str(err).lower()
    frames = [frame.filename.replace(os.sep, "/") for frame in traceback.extract_tb(err.__traceback__)]
    from_collectives = isinstance(err, dist.DistError) or any(name in text for name in ("gloo", "nccl", "c10d")) \
        or any("torch/distributed/" in name or "torch/nn/parallel/" in name for name in frames)
    return from_collectives and any(marker in text for marker in _LOST_PEER_MARKERS)


def run_worker(train: Callable[[], Any], debug: bool = False) -> int:
    """Run one rank's ``train`` under the launcher; a failure is recorded for it, printed only with ``debug``.

    A bug (any other exception) keeps its traceback. Outside the launcher's workers this is ``train()``.
    """
    error_file = os.environ.get(ERROR_FILE_ENV)
    if not error_file or not os.environ.get(LAUNCH_ID_ENV):
        train()
        return 0
    try:
        train()
        return 0
    except UserError as err:
        _record_failure(error_file, str(err), debug)
        return EXIT_USER_ERROR
    except Exception as err:
        if not lost_peer(err):
            _record_failure(error_file, f"{type(err).__name__}: {err}", debug=False)
            raise  # a bug: its traceback stays
        _record_failure(error_file, f"lost peer: {str(err).splitlines()[0]}", debug)
        return EXIT_FAILED


def _record_failure(error_file: str, message: str, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    # torchelastic's error-file format: the launcher reads it as the failure's message and time
    Path(error_file).write_text(json.dumps({"message": message, "timestamp": int(time.time())}))


# -------------------------------------------------------------------------------------------------- launcher
def training_run(config: str | Path, script: str, save_dir: str | Path | None) -> TrainingRun:
    """The run folder ``train.py --config config --script script --save_dir save_dir`` trains into."""
    from lib.config import resolve_config_path
    from lib.utils.paths import get_paths

    return TrainingRun(get_paths(save_dir=Path(save_dir) if save_dir else None), script,
                       resolve_config_path(config, script).stem)


def launch(options: LaunchOptions, script: str | Path, worker_args: list[str], run: TrainingRun,
           debug: bool = False, timeout_s: float = DEFAULT_COLLECTIVE_TIMEOUT_S) -> LaunchResult:
    """Run ``script worker_args`` once per rank, as torchrun would; ``run`` is the run folder the workers
    train into (named in the message when the job fails), ``timeout_s`` their collective timeout."""
    options.validate()
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch
    from torch.distributed.run import config_from_args, get_args_parser

    torchrun_args = get_args_parser().parse_args([
        f"--nproc_per_node={options.nproc_per_node}", f"--nnodes={options.nnodes}",
        f"--node_rank={options.node_rank}", f"--master_addr={options.master_addr}",
        f"--master_port={options.master_port}", f"--max_restarts={options.max_restarts}",
        str(script), *worker_args])
    env = {LAUNCH_ID_ENV: uuid.uuid4().hex}
    if options.master_addr in ("127.0.0.1", "localhost") and "GLOO_SOCKET_IFNAME" not in os.environ:
        env["GLOO_SOCKET_IFNAME"] = "lo"  # one machine: gloo talks over loopback, whatever the interfaces
    with _environment(env), _quiet_torch_launcher(not debug), _StoppedWorkerReaper() as reaper:
        config, entrypoint, entry_args = config_from_args(torchrun_args)
        try:
            elastic_launch(config, entrypoint)(*entry_args)
        except ChildFailedError as err:
            return describe_failure(err.failures, run, timeout_s, reaper.stopped)
        except SignalException as err:
            return LaunchResult(128 + int(err.sigval), f"the launcher got {err.sigval.name}: the workers were "
                                                       f"stopped; {_resume_hint(run)}")
    return LaunchResult(0)


def describe_failure(failures: Mapping[int, Any], run: TrainingRun, timeout_s: float = DEFAULT_COLLECTIVE_TIMEOUT_S,
                     stopped_pids: frozenset[int] | set[int] = frozenset()) -> LaunchResult:
    """One line for a failed job from torchelastic's per-rank failures (``exitcode``, ``pid``, ``message``):
    a worker's own error first, then a rank killed by a signal, then a frozen rank, then the rank that lost
    contact. The ranks the agent terminated (SIGTERM) after the first failure are not the cause."""
    def message(rank: int) -> str:  # what the worker recorded; torch makes one up when there is no error file
        recorded = failures[rank].error_file and Path(failures[rank].error_file).is_file()
        return str(failures[rank].message or "") if recorded else ""

    ranks = sorted(failures)
    own = [r for r in ranks if failures[r].exitcode > 0 and not message(r).startswith("lost peer: ")]
    if own:
        rank = own[0]
        code = EXIT_USER_ERROR if failures[rank].exitcode == EXIT_USER_ERROR else EXIT_FAILED
        text = message(rank) or f"exit code {failures[rank].exitcode}"
        if code == EXIT_USER_ERROR:
            return LaunchResult(code, text)
        return LaunchResult(code, f"rank {rank} failed: {text.splitlines()[0]} (its traceback is above); "
                                  f"{_resume_hint(run)}")
    frozen = [r for r in ranks if failures[r].pid in stopped_pids]
    killed = [r for r in ranks if failures[r].exitcode < 0 and failures[r].exitcode != -signal.SIGTERM
              and r not in frozen]
    if killed:
        rank = killed[0]
        return LaunchResult(EXIT_FAILED, f"rank {rank} (pid {failures[rank].pid}) was killed by "
                                         f"{_signal_name(failures[rank].exitcode)}; {_resume_hint(run)}")
    waited = [r for r in ranks if message(r).startswith("lost peer: ")]
    timed_out = [r for r in waited if "time" in message(r).lower()]
    if frozen:
        rank = frozen[0]
        return LaunchResult(EXIT_FAILED, f"rank {rank} (pid {failures[rank].pid}) was frozen (stopped): the other "
                                         f"ranks gave up after --collective_timeout {timeout_s:g} s and the job "
                                         f"stopped; {_resume_hint(run)}")
    if timed_out:
        return LaunchResult(EXIT_FAILED, f"rank {timed_out[0]} waited --collective_timeout {timeout_s:g} s for the "
                                         "other ranks in vain (one froze, or its node was lost); "
                                         f"{_resume_hint(run)}")
    if waited:
        return LaunchResult(EXIT_FAILED, f"rank {waited[0]} lost contact with the other ranks (one died, or its "
                                         f"node was lost); {_resume_hint(run)}")
    rank = ranks[0]
    return LaunchResult(EXIT_FAILED, f"rank {rank} (pid {failures[rank].pid}) ended with "
                                     f"{_exit_text(failures[rank].exitcode)}; {_resume_hint(run)}")


def _resume_hint(run: TrainingRun) -> str:
    saved = run.checkpoints()
    if not saved:
        return "no checkpoint was written yet: run the same command again to start over"
    epoch, path = list(saved.items())[-1]
    return f"the last good checkpoint is {path} (epoch {epoch}): add --resume to the same command to continue"


def _signal_name(exitcode: int) -> str:
    try:
        return signal.Signals(-exitcode).name
    except ValueError:
        return f"signal {-exitcode}"


def _exit_text(exitcode: int) -> str:
    return _signal_name(exitcode) if exitcode < 0 else f"exit code {exitcode}"


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in os.environ (the workers inherit it) for the launch, as they were afterwards."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _quiet_torch_launcher(quiet: bool) -> Iterator[None]:
    """Keep the elastic agent's log lines (worker exit codes, SIGTERMs sent, restarts) for ``--debug``."""
    if not quiet:
        yield
        return
    import torch.distributed.elastic.agent.server.local_elastic_agent  # noqa: F401  (creates its loggers)
    import torch.distributed.elastic.multiprocessing.api  # noqa: F401

    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name.startswith(_TORCH_LAUNCHER_LOGGERS)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class _StoppedWorkerReaper:
    """Continue a stopped (SIGSTOP'ed, frozen) worker that the agent asked to terminate, so it ends now.

    A stopped process keeps SIGTERM pending and the elastic agent waits 30 s before its SIGKILL, at every restart
    too. Polls this process's children in /proc (Linux; elsewhere it does nothing) and remembers which were
    stopped, so the message can name the frozen rank.
    """

    def __init__(self, period_s: float = 0.2) -> None:
        self.period_s = period_s
        self.stopped: set[int] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stopped-worker-reaper", daemon=True)

    def __enter__(self) -> _StoppedWorkerReaper:
        if Path("/proc/self/status").exists():
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        while not self._done.wait(self.period_s):
            for pid, status in _children_status(os.getpid()).items():
                if status.get("State", "").startswith("T"):
                    self.stopped.add(pid)
                    if _pending(status) & (1 << (signal.SIGTERM - 1)):
                        try:
                            os.kill(pid, signal.SIGCONT)
                        except OSError:
                            pass


def _children_status(parent: int) -> dict[int, dict[str, str]]:
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        status = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
        if status.get("PPid", "").strip() == str(parent):
            found[int(entry)] = {key: value.strip() for key, value in status.items()}
    return found


def _pending(status: Mapping[str, str]) -> int:
    return int(status.get("ShdPnd", "0"), 16) | int(status.get("SigPnd", "0"), 16)
