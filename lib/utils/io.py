"""Durable file writes: a crash never leaves a half-written result, checkpoint or pack behind.

Every temporary file or folder we create beside its target is named ``.<target>.tmp-<host>-<pid>-<token>``,
so the next start can tell its own leftovers from live work: :func:`remove_stale_temp_files` removes only
those whose host is this host and whose process is gone (a live DDP rank or a parallel runner, even on another
node sharing the folder, is never disturbed).
"""
from __future__ import annotations

import fnmatch
import os
import re
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

# A test-only hook (read at each rename): when a target's file name matches this glob, the writer prints
# PAUSE_MARKER and the temporary path to stderr and sleeps before the rename, so a test can kill it there.
PAUSE_ENV = "LORETRACK_TEST_PAUSE_BEFORE_RENAME"
PAUSE_MARKER = "paused before rename:"
_TEMP_NAME = re.compile(r"\.tmp-(?P<host>[\w.]+)-(?P<pid>\d+)-(?P<token>[0-9a-f]{8})")


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def host_tag() -> str:
    """This host's name as it appears in temporary file names (no dashes, so the name parses back)."""
    return re.sub(r"[^\w.]", "_", socket.gethostname()) or "host"


def temp_sibling(path: str | Path, suffix: str = "") -> Path:
    """A fresh temporary name beside ``path`` that records this host and process."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{host_tag()}-{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale_temp(path: Path) -> bool:
    """Ours (by name), made on this host, by a process that no longer runs."""
    if not path.name.startswith("."):
        return False
    match = _TEMP_NAME.search(path.name)
    return bool(match) and match["host"] == host_tag() and not process_alive(int(match["pid"]))


def remove_stale_temp_files(folder: str | Path, target_name: str | None = None) -> list[Path]:
    """Remove our killed writers' leftovers in ``folder`` (for ``target_name`` only, if given); returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    prefix = f".{target_name}.tmp-" if target_name else "."
    removed = []
    for entry in folder.iterdir():
        if entry.name.startswith(prefix) and is_stale_temp(entry):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def fsync_path(path: str | Path) -> None:
    """Flush a file, or a folder's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pause_before_rename_for_tests(target: Path, tmp: Path) -> None:
    pattern = os.environ.get(PAUSE_ENV)
    if pattern and fnmatch.fnmatch(target.name, pattern):
        print(f"{PAUSE_MARKER} {tmp}", file=sys.stderr, flush=True)
        time.sleep(3600)


def durable_rename(tmp: Path, target: Path) -> None:
    """Rename a complete temporary file or folder onto ``target``, then flush the folder entry."""
    pause_before_rename_for_tests(target, tmp)
    os.replace(tmp, target)
    fsync_path(target.parent)


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; flush it and rename it onto ``path`` only if the block succeeds.

    ``suffix`` matters to writers that pick a format from the extension (e.g. ``.tmp.mp4`` for videos).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = temp_sibling(path, suffix)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        fsync_path(tmp_path)
        durable_rename(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def move_aside(path: str | Path) -> Path:
    """Rename ``path`` to ``<name>.moved-<UTC time>`` beside it (what ``--force`` does: never delete)."""
    path = Path(path)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.moved-{stamp}")
    counter = 1
    while target.exists():
        counter += 1
        target = path.with_name(f"{path.name}.moved-{stamp}-{counter}")
    os.rename(path, target)
    return target
