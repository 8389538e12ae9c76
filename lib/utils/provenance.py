"""Manifests: what made a run folder, so every number can be traced to its exact weights and settings.

A training run folder and a results folder each hold ``manifest.json`` (name from
:mod:`lib.utils.run_layout`): the fully merged config and its digest, the code version, library versions, host
and times, plus what the kind of run adds (checkpoints written; the checkpoint, back-end and datasets tracked).
"""
from __future__ import annotations

import hashlib
import json
import platform
import socket
import subprocess
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from lib.config.config import flatten
from lib.config.defaults import NON_RESULT_KEYS
from lib.utils.errors import UserError
from lib.utils.io import atomic_write_text

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST_VERSION = 1


class ManifestError(UserError):
    """A manifest cannot be read, or does not match the run that wants to use its folder."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def result_relevant(config: Mapping[str, Any]) -> dict[str, Any]:
    """The flat config without the keys that cannot change a result (:data:`NON_RESULT_KEYS`)."""
    return {key: value for key, value in flatten(config).items() if key not in NON_RESULT_KEYS}


def config_digest(config: Mapping[str, Any]) -> str:
    """SHA-256 of the result-relevant config (key order and non-result keys do not matter)."""
    text = json.dumps(result_relevant(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Result-relevant keys whose values differ: key -> (old, new); a key missing on one side shows as None."""
    before, after = result_relevant(old), result_relevant(new)
    return {key: (before.get(key), after.get(key)) for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)}


def describe_differences(differences: Mapping[str, tuple[Any, Any]], limit: int = 6) -> str:
    items = [f"{key} {old!r} -> {new!r}" for key, (old, new) in differences.items()]
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def file_sha256(path: str | Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            hasher.update(block)
    return hasher.hexdigest()


def files_digest(paths: Iterable[Path], root: Path) -> str:
    """One SHA-256 over the names (relative to ``root``) and bytes of ``paths``: identifies a set of files."""
    hasher = hashlib.sha256()
    for path in sorted(paths):
        name = path.relative_to(root).as_posix().encode()
        data = path.read_bytes()
        for part in (name, data):
            hasher.update(len(part).to_bytes(8, "little"))
            hasher.update(part)
    return hasher.hexdigest()


@lru_cache(maxsize=1)
def code_version() -> dict[str, Any] | None:
    """The git commit of this checkout and whether tracked files differ from it (None outside git)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def environment() -> dict[str, Any]:
    """Code, library versions and host: what else than the config can change a number."""
    import torch

    return {"code": code_version(), "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
            "host": socket.gethostname(), "platform": platform.platform()}


def new_manifest(kind: str, config: Mapping[str, Any], config_file: str | Path | None = None,
                 **fields: Any) -> dict[str, Any]:
    """A fresh manifest for a run of ``kind`` ('training' or 'tracking') started now."""
    return {"manifest_version": MANIFEST_VERSION, "kind": kind,
            "config_file": str(Path(config_file).resolve()) if config_file else None,
            "config_digest": config_digest(config), "config": dict(config), **fields,
            "environment": environment(), "started": now(), "finished": None}


def read_manifest(path: str | Path) -> dict[str, Any] | None:
    """The manifest at ``path``; None if there is none; a :class:`ManifestError` if it is unreadable."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ManifestError(f"cannot read the manifest {path} ({err}); move the folder aside (--force) or "
                            "restore the file") from None
    if not isinstance(content, dict) or "config_digest" not in content:
        raise ManifestError(f"{path} is not a run manifest; move the folder aside (--force) or restore the file")
    return content


def manifest_text(manifest: Mapping[str, Any]) -> str:
    return json.dumps(manifest, indent=1, sort_keys=False, default=str) + "\n"


def write_manifest(path: str | Path, manifest: Mapping[str, Any]) -> Path:
    atomic_write_text(path, manifest_text(manifest))
    return Path(path)
