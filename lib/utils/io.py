"""Durable file writes: a crash never leaves a half-written result, checkpoint or pack behind.

Outputs are checked before the work that produces them (:func:`ensure_writable`, :func:`check_free_space`), and a
write that fails for lack of space (ENOSPC, EDQUOT, EFBIG, or torch.save's "unexpected pos") becomes one
:class:`DiskFullError` line saying what needs how much space where (:func:`reporting_disk_full`).

Every temporary file or folder we create beside its target is named ``.<target>.tmp-<host>-<pid>-<token>``,
so the next start can tell its own leftovers from live work: :func:`remove_stale_temp_files` removes only
those whose host is this host and whose process is gone (a live DDP rank or a parallel runner, even on another
node sharing the folder, is never disturbed).
"""
from __future__ import annotations

import errno
import fnmatch
import os
import re
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from lib.utils.errors import UserError

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
    """Whether process ``pid`` of this machine still runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # with /proc: it ended just now
    except OSError:
        return True
    return stat[stat.rfind(")") + 2:][:1] not in ("Z", "X")


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


def create_exclusive_file(path: str | Path, text: str) -> bool:
    """Create ``path`` holding ``text`` only if nothing is there yet; False when another writer was first.

    The complete file appears at once (a hard link of a flushed temporary file, which NFS also makes atomic), so
    a reader never sees it half-written; where hard links are not supported it is created with O_EXCL and
    written after. Exactly one of any number of concurrent callers, on any host sharing the folder, gets True.
    """
    path = Path(path)
    tmp = temp_sibling(path)
    try:
        tmp.write_text(text)
        fsync_path(tmp)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as err:
            if err.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV):
                return _create_with_o_excl(path, text)
            if os.stat(tmp).st_nlink != 2:  # NFS can report an error for a link it made (a retried request)
                raise
        fsync_path(path.parent)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _create_with_o_excl(path: Path, text: str) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    return True


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


# ---------------------------------------------------------------------------------------- checked outputs

class OutputError(UserError):
    """An output location cannot be written (a file in the way, no permission, a read-only file system)."""


class DiskFullError(UserError):
    """There is not enough space (or quota, or file-size allowance) for an output."""


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# torch.save reports a failed write only through its zip writer's messages, without an errno.
_TORCH_WRITE_FAILURES = ("unexpected pos", "enforce fail at inline_container", "PytorchStreamWriter failed")


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _why_unwritable(folder: Path, err: OSError) -> str:
    ancestor = _existing_ancestor(folder)
    if ancestor.exists() and not ancestor.is_dir():
        return f"{ancestor} is a file, not a folder"
    return f"{err.strerror or err}" + (f" ({err.filename})" if err.filename else "")


def ensure_writable(folder: str | Path, what: str, create: bool = True) -> Path:
    """Prove that files can be made in ``folder`` before any work is done (``create``: make it now; else probe
    the nearest existing folder above it, so a run that fails its later start-up checks leaves no empty folders).

    A probe file is created and removed: ``os.access`` answers yes to root even where a write would fail.
    """
    folder = Path(folder)
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
            target = folder
        else:
            target = _existing_ancestor(folder.absolute())
            if not target.is_dir():
                raise NotADirectoryError(20, "Not a directory", str(target))
        probe = temp_sibling(target / "write-probe")
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.unlink(probe)
    except OSError as err:
        raise OutputError(f"cannot write {what} in {folder}: {_why_unwritable(folder, err)}; choose another "
                          "location or make it writable") from None
    return folder


def ensure_writable_file(path: str | Path | None, what: str) -> Path | None:
    """:func:`ensure_writable` for the folder of the file ``path`` (None: no such output asked for)."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {what} to {path}: it is a folder; give a file name")
    ensure_writable(path.parent, what)
    return path


def format_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def free_bytes(folder: str | Path) -> int:
    return shutil.disk_usage(_existing_ancestor(Path(folder).resolve())).free


def _no_space_message(what: str, where: Path, needed: int | None, free: int | None, hint: str) -> str:
    size = f"it needs about {format_bytes(needed)}" if needed is not None else "it needs more space"
    if free is not None:
        size += f", {format_bytes(free)} free"
    return (f"no space to write {what} to {where} (disk full, quota or file-size limit; {size}); free some space "
            f"or choose another location, then {hint}")


def check_free_space(folder: str | Path, needed_bytes: int, what: str, hint: str) -> None:
    """Stop before a write of about ``needed_bytes`` that cannot fit in ``folder``'s file system."""
    free = free_bytes(folder)
    if free < needed_bytes:
        raise DiskFullError(_no_space_message(what, Path(folder), needed_bytes, free, hint))


def is_disk_full(err: BaseException | None) -> bool:
    """Whether ``err`` (or what caused it) is a write that failed for lack of space, quota or file size."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
            return True
        text = str(err)
        if isinstance(err, RuntimeError) and any(marker in text for marker in _TORCH_WRITE_FAILURES):
            return True
        if not isinstance(err, OSError) and any(os.strerror(code) in text for code in DISK_FULL_ERRNOS):
            return True  # e.g. lmdb.Error, which carries the C library's message only
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


@contextmanager
def reporting_disk_full(what: str, where: str | Path, needed: int | Callable[[], int] | None,
                        hint: str) -> Iterator[None]:
    """Turn a write that fails for lack of space into one :class:`DiskFullError` line.

    ``needed`` may be a function, so that an expensive estimate is made only when a write failed. The writer
    inside must remove its partial output (as :func:`atomic_path` does).
    """
    try:
        yield
    except DiskFullError:
        raise
    except Exception as err:
        known = is_disk_full(err)
        if not known and not _is_io_error(err):
            raise
        size = needed() if callable(needed) else needed
        try:
            free: int | None = free_bytes(where)
        except OSError:
            free = None
        if not known and not _short_of_space(size, free):
            raise
        raise DiskFullError(_no_space_message(what, Path(where), size, free, hint)) from err


def _is_io_error(err: BaseException) -> bool:
    """EIO: what LMDB reports for a short write, which is how a full disk or a file-size limit often shows."""
    return (isinstance(err, OSError) and err.errno == errno.EIO) or os.strerror(errno.EIO) in str(err)


def _short_of_space(needed: int | None, free: int | None) -> bool:
    """Whether ``needed`` bytes exceed the free space or this process's file-size limit (RLIMIT_FSIZE)."""
    if needed is None:
        return False
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):
        limit = -1
    return (free is not None and needed > free) or (limit >= 0 and needed > limit)


def folder_bytes(folder: str | Path) -> int:
    """Total size of the files under ``folder`` (what a pack of it needs, at least)."""
    return sum(entry.stat().st_size for entry in Path(folder).rglob("*") if entry.is_file())
