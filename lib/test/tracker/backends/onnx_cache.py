"""The ONNX file cache: a model is exported once and re-used by every later tracker, across processes.

Files live in ``<save_dir>/cache/onnx/`` under a key hashing everything that shapes the export. They are
written atomically, carry a SHA-256 in a side file, and a damaged or half-written entry is rebuilt; an
exclusive file lock makes parallel workers export a model once.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lib.test.tracker.backends.base import BackendError
from lib.utils.io import atomic_path, atomic_write_text, remove_stale_temp_files
from lib.utils.paths import REPO_ROOT, get_paths
from lib.utils.provenance import file_sha256
from lib.utils.run_layout import onnx_cache_dir

log = logging.getLogger(__name__)

# The files that define the network: a change in any of them invalidates every export.
MODEL_SOURCES = ("lib/models/vit.py", "lib/models/head.py", "lib/models/ostrack.py")


def default_cache_dir() -> Path:
    """``<save_dir>/cache/onnx`` of the current settings."""
    return onnx_cache_dir(get_paths())


def weights_digest(model: nn.Module) -> str:
    """SHA-256 over every state-dict entry (name, dtype, shape, bytes)."""
    hasher = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        hasher.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return hasher.hexdigest()


def sources_digest() -> str:
    """Hash of the model's source files: a change in the network code invalidates the exports."""
    hasher = hashlib.sha256()
    for rel in MODEL_SOURCES:
        path = REPO_ROOT / rel
        hasher.update(rel.encode())
        hasher.update(path.read_bytes() if path.is_file() else b"missing")
    return hasher.hexdigest()


class OnnxCache:
    """``<dir>/<digest>.onnx`` + ``<digest>.json`` (the key, the file's size and SHA-256).

    An entry counts only when the side file exists and the ONNX file's checksum matches it; otherwise it is
    rebuilt. Builds take an exclusive file lock, so parallel workers export a model once. Subclasses keep other
    single-file models the same way under another ``suffix``.
    """

    suffix = ".onnx"

    def __init__(self, root: Path, max_entries: int = 8) -> None:
        self.root = Path(root)
        self.max_entries = max_entries  # older entries are deleted beyond this (a ViT-B export is ~370 MB)
        self.builds = 0  # how many files this cache object has (re)built: tests and logs read it
        remove_stale_temp_files(self.root)  # exports killed before their rename

    @staticmethod
    def digest(key: Mapping[str, Any]) -> str:
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]

    def path_for(self, key: Mapping[str, Any]) -> Path:
        return self.root / f"{self.digest(key)}{self.suffix}"

    def _valid(self, path: Path) -> bool:
        meta_path = path.with_suffix(".json")
        if not (path.is_file() and meta_path.is_file()):
            return False
        try:
            meta = json.loads(meta_path.read_text())
            return path.stat().st_size == meta["size"] and file_sha256(path) == meta["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def get_or_build(self, key: Mapping[str, Any], build: Callable[[Path], None]) -> tuple[Path, bool]:
        """The cached file for ``key`` (built with ``build(tmp_path)`` if missing or damaged), and whether
        it was a cache hit."""
        path = self.path_for(key)
        if self._valid(path):
            return path, True
        self.root.mkdir(parents=True, exist_ok=True)
        with file_lock(path.with_suffix(".lock")):
            if self._valid(path):  # another process built it while we waited
                return path, True
            if path.exists():
                log.warning("ONNX cache entry %s is damaged or incomplete; rebuilding it", path)
            path.with_suffix(".json").unlink(missing_ok=True)
            with atomic_path(path, suffix=".tmp.onnx") as tmp:
                build(tmp)
                size, sha = tmp.stat().st_size, file_sha256(tmp)
            meta = {"key": dict(key), "size": size, "sha256": sha, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
            atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=1, default=str))
            self.builds += 1
        self.prune(keep={path})
        return path, False

    def prune(self, keep: set[Path] = frozenset()) -> None:
        """Delete the least recently built entries beyond ``max_entries`` (never those in ``keep``)."""
        entries = sorted(self.root.glob(f"*{self.suffix}"), key=lambda f: f.stat().st_mtime, reverse=True)
        for old in entries[self.max_entries:]:
            if old in keep:
                continue
            for suffix in (self.suffix, ".json", ".lock"):
                with contextlib.suppress(OSError):
                    old.with_suffix(suffix).unlink()
            log.info("pruned old ONNX cache entry %s", old)

    def open_session(self, path: Path, options: Any) -> Any:
        """An ONNX Runtime CPU session on ``path``; a file it cannot read is a user-fixable error."""
        import onnxruntime as ort

        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for unreadable models
            raise BackendError(f"ONNX Runtime cannot load {path} ({err}); delete the file to rebuild it") from None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes (a no-op where fcntl does not exist)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock, the atomic rename still keeps files whole
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
