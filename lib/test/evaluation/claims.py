"""Several runners, one results folder: who tracks which sequence, so that none is tracked twice.

Runners are ``tracking/test.py`` processes (and their ``--threads`` workers) on one or many machines sharing
the results folder: torchrun ranks, or commands started by hand. Before a sequence is tracked its runner
*claims* it: a small JSON file (host, pid, start time, lease) in the folder's ``claims/`` (layout in
:mod:`lib.utils.run_layout`), created exclusively and complete at once (:func:`lib.utils.io.create_exclusive_file`),
so exactly one runner gets it. The holder's heartbeat thread touches the file (its mtime) every quarter lease;
the claim is released (removed) once the sequence's result files are written, or it failed. Results are only
written while the claim is still the writer's (:meth:`ClaimBoard.holds`).

A claim is *stale* when its holder is gone: on the same machine (host, boot and PID namespace) when its process
no longer runs, anywhere when no heartbeat came for a whole lease (``--claim_lease``, 10 minutes by default;
the clocks of the machines must agree to well within it). A stale claim is taken over by creating the next
*generation* of the file (``<seq>.claim-<n+1>``) exclusively, so of several runners that find it stale at
once exactly one becomes the new holder. The holder checks the results once more after claiming: a sequence
another runner finished meanwhile is not tracked again. A sequence that failed is released too, so another
runner of the same session that has not tried it yet tries it once more. Each run starts by removing stale
claims and the half-made files of killed claimers, and ends by removing the claim folders if they are empty.

Under torchrun each rank takes the sequences of its own shard (``sequences[rank::world_size]``) first, then
goes on to the other ranks' sequences that nobody has claimed yet: a rank that finishes early helps the slow
ones instead of idling, and a rank that died leaves no hole (its claims become stale).
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from lib.utils.errors import UserError
from lib.utils.io import create_exclusive_file, process_alive
from lib.utils.provenance import now
from lib.utils.run_layout import CLAIM_SUFFIX, claim_file, claim_generation

DEFAULT_LEASE_S = 600.0
_LOCK_POLL_S = 0.02
_LOCK_REPORT_AFTER_S = 5.0
T = TypeVar("T")


# ------------------------------------------------------------------------------------------------- ranks

@dataclass(frozen=True)
class RunnerRank:
    """This process's place among torchrun's ranks (rank 0 of 1 outside torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    launch: str | None = None  # one torchrun launch (run id @ master address:port): its ranks are one session

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> RunnerRank:
        """Read torchrun's RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE; no process group is needed."""
        environ = os.environ if environ is None else environ
        if "RANK" not in environ and "WORLD_SIZE" not in environ:
            return cls()
        values = {}
        for key, default in (("RANK", None), ("WORLD_SIZE", None), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1")):
            text = environ.get(key, default)
            if text is None or not text.strip().isdigit():
                raise UserError(f"environment variable {key}={text!r} must be a whole number >= 0 (set by torchrun; "
                                "unset RANK and WORLD_SIZE to run without it)")
            values[key] = int(text)
        launch = (f"{environ.get('TORCHELASTIC_RUN_ID', 'none')}@{environ.get('MASTER_ADDR', '')}:"
                  f"{environ.get('MASTER_PORT', '')}")
        rank = cls(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"], values["LOCAL_WORLD_SIZE"], launch)
        if not (0 <= rank.rank < rank.world_size and 0 <= rank.local_rank < rank.local_world_size):
            raise UserError(f"RANK={rank.rank} must be below WORLD_SIZE={rank.world_size} and LOCAL_RANK="
                            f"{rank.local_rank} below LOCAL_WORLD_SIZE={rank.local_world_size}; check the launcher")
        return rank

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def order(self, items: Sequence[T]) -> list[T]:
        """``items`` in the order this rank tries them: its shard ``items[rank::world_size]`` first, then the
        shards of the following ranks (rank+1, rank+2, ...), each of which it tracks only if nobody claimed them."""
        return [item for offset in range(self.world_size)
                for item in items[(self.rank + offset) % self.world_size::self.world_size]]

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world_size}"


# ------------------------------------------------------------------------------------------------ holders

@lru_cache(maxsize=1)
def _machine() -> tuple[str, str, str]:
    """(host, boot id, PID namespace): where a PID means this very process table."""
    def read(path: str, link: bool = False) -> str:
        try:
            return os.readlink(path) if link else Path(path).read_text().strip()
        except OSError:
            return ""

    return socket.gethostname(), read("/proc/sys/kernel/random/boot_id"), read("/proc/self/ns/pid", link=True)


@dataclass(frozen=True)
class ClaimHolder:
    """Who holds a claim file, as the file says (``pid`` 0 when the file cannot be read)."""

    path: Path
    host: str
    pid: int
    started: str
    heartbeat: float  # the file's mtime, touched by the holder's heartbeat
    lease_s: float
    boot_id: str = ""
    pid_namespace: str = ""
    rank: int | None = None
    token: str = ""

    def local(self) -> bool:
        """Whether the holder's PID can be checked here (same host, boot and PID namespace)."""
        return (self.host, self.boot_id, self.pid_namespace) == _machine()

    def stale(self, at: float | None = None) -> bool:
        """Its holder is gone: a local process that no longer runs, or no heartbeat for a whole lease."""
        at = time.time() if at is None else at
        if at - self.heartbeat > self.lease_s:
            return True
        return self.pid > 0 and self.local() and not process_alive(self.pid)

    def describe(self) -> str:
        who = f"rank {self.rank}, " if self.rank is not None else ""
        return f"{who}pid {self.pid} on {self.host} since {self.started}"


def read_holder(path: Path, default_lease_s: float = DEFAULT_LEASE_S) -> ClaimHolder | None:
    """The holder of claim file ``path``; None when it is gone. A file that does not parse (written without
    hard links and not complete yet) is judged by its mtime alone."""
    try:
        heartbeat = path.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError:
        heartbeat = time.time()  # cannot tell: never take it over for that
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        content = None
    unreadable = ClaimHolder(path, "?", 0, "?", heartbeat, default_lease_s)
    if not isinstance(content, dict):
        return unreadable
    try:
        return ClaimHolder(path, str(content["host"]), int(content["pid"]), str(content.get("started", "?")),
                           heartbeat, float(content.get("lease_s", default_lease_s)), str(content.get("boot_id", "")),
                           str(content.get("pid_namespace", "")), content.get("rank"), str(content.get("token", "")))
    except (KeyError, TypeError, ValueError):
        return unreadable


# ---------------------------------------------------------------------------------------------- heartbeat

class _Heartbeat:
    """One daemon thread per process that touches every claim file the process holds."""

    def __init__(self) -> None:
        self.paths: dict[Path, float] = {}  # claim file -> its heartbeat interval
        self.guard = threading.Lock()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()

    def add(self, path: Path, interval_s: float) -> None:
        with self.guard:
            self.paths[path] = interval_s
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="claim-heartbeat", daemon=True)
                self.thread.start()
        self.wake.set()

    def remove(self, path: Path) -> None:
        with self.guard:
            self.paths.pop(path, None)

    def _run(self) -> None:
        while True:
            with self.guard:
                paths = dict(self.paths)
            for path in paths:
                try:
                    os.utime(path)
                except OSError:
                    pass  # released meanwhile, or taken over after a lease without heartbeat
            self.wake.clear()
            self.wake.wait(min(paths.values(), default=60.0))


_heartbeat: _Heartbeat | None = None
_heartbeat_guard = threading.Lock()


def _process_heartbeat() -> _Heartbeat:
    global _heartbeat
    with _heartbeat_guard:
        if _heartbeat is None or _heartbeat.pid != os.getpid():  # a forked child has no thread of its parent
            _heartbeat = _Heartbeat()
        return _heartbeat


# -------------------------------------------------------------------------------------------------- claims

@dataclass(frozen=True)
class Claim:
    """A claim this process holds: release it (or use :meth:`ClaimBoard.claim`) when the work is done."""

    path: Path
    token: str
    base: Path
    taken_over: ClaimHolder | None = None  # the stale claim it replaced, if any


@dataclass(frozen=True)
class ClaimBoard:
    """How this runner claims: its lease and rank. Picklable, so ``--threads`` workers claim with it too."""

    lease_s: float = DEFAULT_LEASE_S
    rank: RunnerRank = field(default_factory=RunnerRank)

    def __post_init__(self) -> None:
        if not self.lease_s > 0:
            raise UserError(f"the claim lease must be a positive number of seconds, got {self.lease_s}")

    def _content(self, token: str) -> str:
        host, boot_id, namespace = _machine()
        return json.dumps({"host": host, "pid": os.getpid(), "started": now(), "lease_s": self.lease_s,
                           "boot_id": boot_id, "pid_namespace": namespace, "rank": self.rank.rank,
                           "world_size": self.rank.world_size, "token": token}) + "\n"

    @staticmethod
    def generations(base: Path) -> list[int]:
        try:
            names = os.listdir(base.parent)
        except FileNotFoundError:
            return []
        return sorted(gen for name in names if (gen := claim_generation(base, name)) is not None)

    def holder(self, base: Path) -> ClaimHolder | None:
        """The holder of the newest claim on ``base`` (stale or not); None when nobody claims it."""
        for generation in reversed(self.generations(base)):
            holder = read_holder(claim_file(base, generation), self.lease_s)
            if holder is not None:
                return holder
        return None

    def try_acquire(self, base: Path) -> Claim | None:
        """Claim ``base`` for this process, taking over a stale claim; None while a live runner holds it."""
        for _ in range(100):  # every retry follows a change made by another runner
            generations = self.generations(base)
            stale = None
            if generations:
                stale = read_holder(claim_file(base, generations[-1]), self.lease_s)
                if stale is None:
                    continue  # released meanwhile: look again
                if not stale.stale():
                    return None
            generation = generations[-1] + 1 if generations else 0
            token = os.urandom(8).hex()
            path = claim_file(base, generation)
            try:
                base.parent.mkdir(parents=True, exist_ok=True)
                if not create_exclusive_file(path, self._content(token)):
                    continue  # another runner was first
            except FileNotFoundError:
                continue  # a runner that ended removed the empty folder just now
            for older in generations:  # tidy up: the newest generation alone decides
                claim_file(base, older).unlink(missing_ok=True)
            _process_heartbeat().add(path, self.lease_s / 4)
            return Claim(path, token, base, stale)
        return None

    def holds(self, claim: Claim) -> bool:
        """Whether ``claim`` is still this process's: a runner that was suspended beyond its lease (no heartbeat)
        has been taken over, and the sequence's results are then the new holder's to write."""
        generations = self.generations(claim.base)
        if not generations or claim_file(claim.base, generations[-1]) != claim.path:
            return False
        holder = read_holder(claim.path, self.lease_s)
        return holder is not None and holder.token == claim.token

    def release(self, claim: Claim) -> None:
        _process_heartbeat().remove(claim.path)
        holder = read_holder(claim.path, self.lease_s)
        if holder is not None and holder.token == claim.token:
            claim.path.unlink(missing_ok=True)

    @contextmanager
    def claim(self, base: Path) -> Iterator[Claim | None]:
        """Hold ``base`` for the block (None: a live runner holds it; do not do its work)."""
        claim = self.try_acquire(base)
        try:
            yield claim
        finally:
            if claim is not None:
                self.release(claim)

    @contextmanager
    def lock(self, base: Path, what: str, log: Callable[[str], None] = print) -> Iterator[Claim]:
        """Hold ``base`` for the block, waiting while a live runner holds it (a dead one's is taken over)."""
        started = time.monotonic()
        reported = False
        while (claim := self.try_acquire(base)) is None:
            if not reported and time.monotonic() - started > _LOCK_REPORT_AFTER_S:
                holder = self.holder(base)
                log(f"waiting for {what}, held by {holder.describe() if holder else 'another runner'} (taken over "
                    f"if it gives no sign of life for {self.lease_s:g} s)")
                reported = True
            time.sleep(_LOCK_POLL_S)
        try:
            yield claim
        finally:
            self.release(claim)

    def remove_stale(self, folder: Path) -> list[Path]:
        """Remove the stale claims in ``folder`` (a claim file is never rewritten, so one found stale stays stale,
        whoever else removes or takes it over meanwhile); returns them."""
        if not folder.is_dir():
            return []
        removed = []
        for path in folder.iterdir():
            if path.is_file() and not path.name.startswith(".") and CLAIM_SUFFIX in path.name:
                holder = read_holder(path, self.lease_s)
                if holder is not None and holder.stale():
                    path.unlink(missing_ok=True)
                    removed.append(path)
        return removed

    def live_holders(self, folder: Path) -> list[ClaimHolder]:
        """Live holders of every claim in ``folder`` (not below it)."""
        if not folder.is_dir():
            return []
        holders = (read_holder(path, self.lease_s) for path in folder.iterdir()
                   if path.is_file() and not path.name.startswith("."))
        return [holder for holder in holders if holder is not None and not holder.stale()]


def remove_empty_folders(folders: Iterable[Path]) -> None:
    """Remove those of ``folders`` that are empty, deepest first (a claim made meanwhile keeps its folder)."""
    for folder in sorted(folders, key=lambda path: len(path.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:
            pass
