"""Where a training dataset's files come from: a plain folder or an LMDB (ours or an official pack).

Readers only ever ask for files by their path relative to the dataset root ('airplane/airplane-1/img/00000001.jpg'),
so the same reader works on all of them. An LMDB stores every file under its relative path (POSIX separators) as
the raw file bytes. ``tracking/pack_lmdb.py`` adds one listing entry per folder (``__loretrack__/ls/<folder>``) and
a ``__loretrack__/meta`` entry that marks the database as ours. The packs made by the official STARK/OSTrack tools
hold the files only; there a folder is listed with cursor seeks over LMDB's sorted keys (one seek per entry of the
folder, never a pass over every key), and the readers take their sequence lists from the list/split files, as the
official readers do. The official TrackingNet pack is one LMDB per chunk (``<root>/TRAIN_<k>_lmdb``, keys relative
to the chunk folder) beside plain files such as ``seq_list.json``: :class:`LmdbFolderStorage` shows it as the
folder layout (``TRAIN_<k>/...``).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lib.utils.errors import DatasetError, SettingsError, UserError
from lib.utils.io import check_free_space, durable_rename, fsync_path, move_aside, remove_stale_temp_files, temp_sibling

INDEX_PREFIX = "__loretrack__/"
LISTING_PREFIX = INDEX_PREFIX + "ls/"
META_KEY = INDEX_PREFIX + "meta"
LMDB_FORMAT = "loretrack-lmdb-1"


class CorruptFrameError(UserError):
    """A frame is missing or cannot be decoded; the sampler counts these and draws another pair."""

    def __init__(self, relpath: str, source: str, reason: str) -> None:
        super().__init__(f"cannot read frame {relpath} in {source}: {reason}")
        self.relpath = relpath
        self.source = source


def decode_rgb(data: bytes, relpath: str, source: str) -> np.ndarray:
    """Encoded image bytes to an RGB uint8 array (OpenCV's decoder, as the official loaders use)."""
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as err:
        raise CorruptFrameError(relpath, source, f"decoder error ({err})") from None
    if image is None:
        raise CorruptFrameError(relpath, source, "not a decodable image (truncated or corrupt file?)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _clean(relpath: str) -> str:
    return relpath.replace(os.sep, "/").strip("/")


class Storage:
    """Read-only access to the files of one dataset by relative path."""

    def read_bytes(self, relpath: str) -> bytes:
        """The file's content; ``FileNotFoundError`` when it does not exist."""
        raise NotImplementedError

    def exists(self, relpath: str) -> bool:
        """True for a file or a folder."""
        raise NotImplementedError

    def is_dir(self, relpath: str) -> bool:
        raise NotImplementedError

    def list_subdirs(self, relpath: str = "") -> list[str]:
        """Sorted names of the folders directly inside ``relpath`` (empty when it is not a folder)."""
        raise NotImplementedError

    def list_files(self, relpath: str = "") -> list[str]:
        """Sorted names of the files directly inside ``relpath`` (empty when it is not a folder)."""
        raise NotImplementedError

    def describe(self) -> str:
        """The dataset location, for messages."""
        raise NotImplementedError

    def list_dir(self, relpath: str = "") -> list[str]:
        return sorted(self.list_subdirs(relpath) + self.list_files(relpath))

    def read_text(self, relpath: str) -> str:
        return self.read_bytes(relpath).decode("utf-8", errors="replace")

    def read_image(self, relpath: str) -> np.ndarray:
        """An RGB frame, or :class:`CorruptFrameError` when it is missing or undecodable."""
        try:
            data = self.read_bytes(relpath)
        except FileNotFoundError:
            raise CorruptFrameError(relpath, self.describe(), "file not found") from None
        except OSError as err:
            raise CorruptFrameError(relpath, self.describe(), f"read error ({err})") from None
        return decode_rgb(data, relpath, self.describe())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()!r})"


class FolderStorage(Storage):
    """Files of a dataset folder on disk."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise SettingsError(f"dataset folder {self.root} does not exist or is not a folder")

    def _path(self, relpath: str) -> Path:
        return self.root / _clean(relpath)

    def read_bytes(self, relpath: str) -> bytes:
        return self._path(relpath).read_bytes()

    def exists(self, relpath: str) -> bool:
        return self._path(relpath).exists()

    def is_dir(self, relpath: str) -> bool:
        return self._path(relpath).is_dir()

    def _entries(self, relpath: str) -> list[os.DirEntry]:
        try:
            with os.scandir(self._path(relpath)) as entries:
                return list(entries)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def list_subdirs(self, relpath: str = "") -> list[str]:
        return sorted(e.name for e in self._entries(relpath) if e.is_dir())

    def list_files(self, relpath: str = "") -> list[str]:
        return sorted(e.name for e in self._entries(relpath) if not e.is_dir())

    def describe(self) -> str:
        return str(self.root)


class LmdbStorage(Storage):
    """Files of a dataset packed into one LMDB folder, by ``tracking/pack_lmdb.py`` or the official tools.

    LMDB allows one open handle per database and process, and a handle must not be used after ``fork``: all
    storages of one path share the process's handle, and forked data-loader workers drop the inherited handles
    and open their own on first use.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()
        if not (self.path / "data.mdb").is_file():
            raise SettingsError(f"{self.path} is not an LMDB folder (no data.mdb); create it with "
                                f"tracking/pack_lmdb.py --src <dataset folder> --dst {self.path}")
        meta = self._get(META_KEY)
        if meta is not None and json.loads(meta).get("format") != LMDB_FORMAT:
            raise DatasetError(f"{self.path} was written by another version of tracking/pack_lmdb.py "
                               f"({json.loads(meta).get('format')!r}, this one reads {LMDB_FORMAT!r}); re-pack the "
                               "dataset folder")
        #: False for an official pack: files only, folders listed by cursor seeks
        self.indexed = meta is not None
        self._listings: dict[str, dict[str, list[str]] | None] = {}

    def _get(self, key: str) -> bytes | None:
        with _lmdb_env(self.path).begin(buffers=False) as txn:
            return txn.get(key.encode("utf-8"))

    def _listing(self, relpath: str) -> dict[str, list[str]] | None:
        key = _clean(relpath)
        if key not in self._listings:
            if self.indexed:
                raw = self._get(LISTING_PREFIX + key)
                self._listings[key] = json.loads(raw) if raw is not None else None
            else:
                self._listings[key] = self._seek_listing(key)
        return self._listings[key]

    def _seek_listing(self, folder: str) -> dict[str, list[str]] | None:
        """The folder's entries from the sorted keys: a file is one key, a sub-folder is skipped with one seek
        past its last key (``<prefix><name>/...`` < ``<prefix><name>0``, as '0' follows '/'); None if empty."""
        prefix = (folder + "/").encode("utf-8") if folder else b""
        dirs, files = [], []
        with _lmdb_env(self.path).begin(buffers=False) as txn:
            cursor = txn.cursor()
            found = cursor.set_range(prefix)
            while found:
                key = cursor.key()
                if not key.startswith(prefix):
                    break
                name, slash, _ = key[len(prefix):].partition(b"/")
                if slash:
                    dirs.append(name.decode("utf-8"))
                    found = cursor.set_range(prefix + name + b"0")
                else:
                    files.append(name.decode("utf-8"))
                    found = cursor.next()
        if not dirs and not files:
            return None
        return {"dirs": sorted(dirs), "files": sorted(files)}

    def read_bytes(self, relpath: str) -> bytes:
        data = self._get(_clean(relpath))
        if data is None:
            raise FileNotFoundError(f"{relpath} is not in {self.path}")
        return data

    def exists(self, relpath: str) -> bool:
        return self._get(_clean(relpath)) is not None or self.is_dir(relpath)

    def is_dir(self, relpath: str) -> bool:
        if self.indexed or _clean(relpath) in self._listings:
            return self._listing(relpath) is not None
        prefix = (_clean(relpath) + "/").encode("utf-8") if _clean(relpath) else b""
        with _lmdb_env(self.path).begin(buffers=False) as txn:  # one seek: is any key inside the folder?
            cursor = txn.cursor()
            return cursor.set_range(prefix) and cursor.key().startswith(prefix)

    def list_subdirs(self, relpath: str = "") -> list[str]:
        return list((self._listing(relpath) or {}).get("dirs", []))

    def list_files(self, relpath: str = "") -> list[str]:
        return list((self._listing(relpath) or {}).get("files", []))

    def describe(self) -> str:
        return str(self.path)


class LmdbFolderStorage(Storage):
    """A folder whose ``<name>_lmdb`` sub-folders are LMDBs, shown as folders ``<name>`` (the official TrackingNet
    pack: ``TRAIN_<k>_lmdb`` beside ``seq_list.json``); every other entry is read from the folder itself."""

    SUFFIX = "_lmdb"

    def __init__(self, root: str | Path) -> None:
        self.folder = FolderStorage(root)
        self.parts = {name[:-len(self.SUFFIX)]: LmdbStorage(self.folder.root / name)
                      for name in self.folder.list_subdirs()
                      if name.endswith(self.SUFFIX) and (self.folder.root / name / "data.mdb").is_file()}
        if not self.parts:
            raise SettingsError(f"{self.folder.root} is not an LMDB folder (no data.mdb, no <name>{self.SUFFIX} LMDB "
                                f"folders inside); create it with tracking/pack_lmdb.py --src <dataset folder> "
                                f"--dst {self.folder.root}")

    def _route(self, relpath: str) -> tuple[Storage, str]:
        head, _, rest = _clean(relpath).partition("/")
        return (self.parts[head], rest) if head in self.parts else (self.folder, relpath)

    def read_bytes(self, relpath: str) -> bytes:
        storage, rest = self._route(relpath)
        return storage.read_bytes(rest)

    def exists(self, relpath: str) -> bool:
        storage, rest = self._route(relpath)
        return (storage is not self.folder and not rest) or storage.exists(rest)

    def is_dir(self, relpath: str) -> bool:
        storage, rest = self._route(relpath)
        return (storage is not self.folder and not rest) or storage.is_dir(rest)

    def list_subdirs(self, relpath: str = "") -> list[str]:
        if not _clean(relpath):
            packed = {name + self.SUFFIX for name in self.parts}
            return sorted({d for d in self.folder.list_subdirs() if d not in packed} | set(self.parts))
        storage, rest = self._route(relpath)
        return storage.list_subdirs(rest)

    def list_files(self, relpath: str = "") -> list[str]:
        storage, rest = self._route(relpath)
        return storage.list_files(rest)

    def describe(self) -> str:
        return self.folder.describe()


def open_lmdb(path: str | Path) -> Storage:
    """An LMDB folder, or a folder of ``<name>_lmdb`` LMDB folders (official TrackingNet pack)."""
    if not (Path(path) / "data.mdb").is_file() and Path(path).is_dir():
        return LmdbFolderStorage(path)
    return LmdbStorage(path)


_LMDB_ENVS: dict[Path, Any] = {}


def _lmdb_env(path: Path) -> Any:
    """This process's read-only handle of the LMDB at ``path`` (an absolute path)."""
    if path not in _LMDB_ENVS:
        import lmdb

        _LMDB_ENVS[path] = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False,
                                     max_readers=2048)
    return _LMDB_ENVS[path]


def _drop_inherited_lmdb_envs() -> None:
    for env in _LMDB_ENVS.values():
        env.close()  # only unmaps in the child; the parent's handle is unaffected (no lock file is used)
    _LMDB_ENVS.clear()


os.register_at_fork(after_in_child=_drop_inherited_lmdb_envs)


STORAGE_KINDS: dict[str, Callable[[str | Path], Storage]] = {"folder": FolderStorage, "lmdb": open_lmdb}


def open_storage(location: str | Path | Storage, kind: str = "folder") -> Storage:
    """A :class:`Storage` for ``location`` (kept as is when it already is one)."""
    if isinstance(location, Storage):
        return location
    if kind not in STORAGE_KINDS:
        raise UserError(f"unknown dataset storage '{kind}'; use one of {sorted(STORAGE_KINDS)}")
    return STORAGE_KINDS[kind](location)


# ------------------------------------------------------------------------------------------------ packing

def _walk_files(src: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """(relative folder, sub-folder names, file names) for every folder under ``src``, sorted."""
    for folder, dirs, files in os.walk(src, followlinks=True):
        dirs.sort()
        rel = Path(folder).relative_to(src).as_posix()
        yield ("" if rel == "." else rel), list(dirs), sorted(files)


def pack_folder(src: str | Path, dst: str | Path, force: bool = False,
                progress: Callable[[str], None] | None = None, progress_interval_s: float = 2.0) -> dict[str, int]:
    """Pack every file under ``src`` into a new LMDB folder ``dst`` (keys = relative paths) plus folder listings.

    The database is written to a hidden temporary sibling (see :func:`lib.utils.io.temp_sibling`) and renamed into
    place only when complete, so ``dst`` is never half-written; the temporary folder of a run killed outright is
    removed by the next run. With ``force`` an existing ``dst`` is moved aside, never deleted: a pack can take
    hours to rebuild. Returns ``{'files': n, 'bytes': total}``.
    """
    src, dst = Path(src).resolve(), Path(dst).resolve()
    if not src.is_dir():
        raise UserError(f"--src {src} is not a folder")
    if dst == src or src in dst.parents or dst in src.parents:
        raise UserError(f"--dst {dst} and --src {src} must not contain each other")
    if dst.exists() and not force:
        raise UserError(f"{dst} already exists; pass --force to move it aside and pack a new one")
    if dst.exists() and not (dst / "data.mdb").is_file():
        raise UserError(f"{dst} exists and is not an LMDB folder; refusing to replace it, choose another --dst")
    say = progress or (lambda message: None)
    dst.parent.mkdir(parents=True, exist_ok=True)
    for leftover in remove_stale_temp_files(dst.parent, dst.name):
        say(f"removed {leftover}, left by a pack that was killed")

    folders = list(_walk_files(src))
    total_files = sum(len(files) for _, _, files in folders)
    total_bytes = sum((src / rel / name).stat().st_size for rel, _, files in folders for name in files)
    if not total_files:
        raise UserError(f"--src {src} holds no files: nothing to pack (is it the dataset's top folder?)")
    check_free_space(dst.parent, int(total_bytes * 1.1) + 2**20, "the LMDB pack", "run the same command again")
    say(f"packing {total_files} files ({total_bytes / 2**20:.1f} MiB) from {src}")

    tmp = temp_sibling(dst)
    try:
        written, written_bytes = _write_lmdb(tmp, src, folders, total_files, total_bytes, say, progress_interval_s)
        if dst.exists():  # checked again: another run may have created it meanwhile
            if not force:
                raise UserError(f"{dst} was created by another run while packing; pass --force to move it aside")
            say(f"moved the old {dst.name} aside to {move_aside(dst)}")
        durable_rename(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"wrote {dst}: {written} files, {written_bytes / 2**20:.1f} MiB")
    return {"files": written, "bytes": written_bytes}


def _write_lmdb(path: Path, src: Path, folders: list[tuple[str, list[str], list[str]]], total_files: int,
                total_bytes: int, say: Callable[[str], None], progress_interval_s: float) -> tuple[int, int]:
    """Write the database into the new folder ``path`` and flush it; returns (files, bytes)."""
    import lmdb

    map_size = int(total_bytes * 1.5) + 4096 * (total_files + len(folders)) + 2**26
    env = lmdb.open(str(path), map_size=map_size, subdir=True, map_async=True, writemap=False)
    try:
        written, written_bytes, last_report = 0, 0, time.monotonic()
        txn = env.begin(write=True)
        for rel, dirs, files in folders:
            listing = json.dumps({"dirs": dirs, "files": files}).encode("utf-8")
            txn.put((LISTING_PREFIX + rel).encode("utf-8"), listing)
            for name in files:
                key = f"{rel}/{name}" if rel else name
                data = (src / rel / name).read_bytes()
                txn.put(key.encode("utf-8"), data)
                written += 1
                written_bytes += len(data)
                if written % 1000 == 0:  # bounded transactions keep memory flat on huge datasets
                    txn.commit()
                    txn = env.begin(write=True)
                if time.monotonic() - last_report >= progress_interval_s:
                    last_report = time.monotonic()
                    say(f"  {written}/{total_files} files ({100.0 * written / max(total_files, 1):.1f}%)")
        meta = {"format": LMDB_FORMAT, "files": written, "bytes": written_bytes, "source": src.name}
        txn.put(META_KEY.encode("utf-8"), json.dumps(meta).encode("utf-8"))
        txn.commit()
        env.sync(True)
    finally:
        env.close()
    fsync_path(path)  # the folder's entries (data.mdb, lock.mdb) must reach the disk before the rename
    return written, written_bytes
