"""Where data, weights and outputs live.

Resolution order for every path (first hit wins):

1. an explicit override passed by a command-line flag (``get_paths(data_dir=...)``);
2. an environment variable: ``LORETRACK_DATA_DIR``, ``LORETRACK_SAVE_DIR``, ``LORETRACK_PRETRAINED_DIR``,
   ``LORETRACK_WORKSPACE_DIR``, or ``LORETRACK_<NAME>_DIR`` for one dataset (e.g. ``LORETRACK_LASOT_DIR``);
3. the local settings file written by ``tracking/create_default_local_file.py``
   (``local_settings.yaml`` in the repository root, or the file named by ``LORETRACK_SETTINGS``);
4. defaults: ``<repo>/data``, ``<repo>/output``, ``<repo>/pretrained_models``.

Each dataset lives in its usual sub-folder of the data root (:data:`DATASET_SUBDIRS`) unless it has its
own setting. Nobody needs to edit code to point the framework at their data.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lib.utils.errors import SettingsError

REPO_ROOT = Path(__file__).resolve().parents[2]
SETTINGS_FILE_NAME = "local_settings.yaml"
ENV_PREFIX = "LORETRACK_"

# Benchmark / training set name -> sub-folder of the data root.
DATASET_SUBDIRS: dict[str, str] = {
    "lasot": "lasot",
    "lasot_extension_subset": "lasot_extension_subset",
    "got10k": "got10k",
    "trackingnet": "trackingnet",
    "coco": "coco",
    "uav": "uav",
    "otb": "otb",
    "nfs": "nfs",
    "tnl2k": "tnl2k",
    "imagenetvid": "vid",
    "lasot_lmdb": "lasot_lmdb",
    "got10k_lmdb": "got10k_lmdb",
    "trackingnet_lmdb": "trackingnet_lmdb",
    "coco_lmdb": "coco_lmdb",
    "imagenetvid_lmdb": "vid_lmdb",
    "embedded": "embedded",
}

_ROOT_KEYS = ("workspace_dir", "data_dir", "save_dir", "pretrained_dir")


def settings_file() -> Path:
    """The local settings file in use (it need not exist)."""
    env = os.environ.get(ENV_PREFIX + "SETTINGS")
    return Path(env) if env else REPO_ROOT / SETTINGS_FILE_NAME


def _read_settings_file(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise SettingsError(f"{path}: not valid YAML ({err}); fix it or re-create it with "
                            "tracking/create_default_local_file.py") from None
    if not isinstance(content, dict):
        raise SettingsError(f"{path}: expected a mapping of settings, got {type(content).__name__}")
    unknown = set(content) - set(_ROOT_KEYS) - {"datasets"}
    if unknown:
        raise SettingsError(f"{path}: unknown setting(s) {sorted(unknown)}; allowed: "
                            f"{list(_ROOT_KEYS) + ['datasets']}")
    for key in _ROOT_KEYS:
        if content.get(key) is not None and not isinstance(content[key], str):
            raise SettingsError(f"{path}: '{key}' must be a folder path (a string), got {content[key]!r}")
    datasets = content.get("datasets") or {}
    if not isinstance(datasets, dict):
        raise SettingsError(f"{path}: 'datasets' must be a mapping of dataset name to folder (e.g. 'datasets: "
                            f"{{lasot: /data/LaSOT}}'), got {datasets!r}")
    wrong = {name: value for name, value in datasets.items() if value is not None and not isinstance(value, str)}
    if wrong:
        raise SettingsError(f"{path}: 'datasets' entries must be folder paths (strings), got {wrong}")
    unknown = set(datasets) - set(DATASET_SUBDIRS)
    if unknown:
        raise SettingsError(f"{path}: unknown dataset(s) {sorted(unknown)} under 'datasets'; "
                            f"known: {sorted(DATASET_SUBDIRS)}")
    return content


@dataclass(frozen=True)
class Paths:
    """Resolved locations; build it with :func:`get_paths`."""

    workspace_dir: Path
    data_dir: Path
    save_dir: Path
    pretrained_dir: Path
    dataset_overrides: Mapping[str, Path] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)

    def dataset_dir(self, name: str, must_exist: bool = True) -> Path:
        """Root folder of dataset ``name``; a clear error naming the setting when it is missing."""
        key = name.lower()
        if key not in DATASET_SUBDIRS:
            raise SettingsError(f"unknown dataset '{name}'; known: {sorted(DATASET_SUBDIRS)}")
        path = self.dataset_overrides.get(key, self.data_dir / DATASET_SUBDIRS[key])
        if must_exist and not path.is_dir():
            env = f"{ENV_PREFIX}{key.upper()}_DIR"
            raise SettingsError(
                f"dataset '{key}' not found at {path}; put it there, or set {env} "
                f"(or {ENV_PREFIX}DATA_DIR for the data root, or 'datasets: {{{key}: PATH}}' in {settings_file()})")
        return path


def get_paths(workspace_dir: str | Path | None = None, data_dir: str | Path | None = None,
              save_dir: str | Path | None = None, pretrained_dir: str | Path | None = None,
              datasets: Mapping[str, str | Path] | None = None,
              environ: Mapping[str, str] | None = None) -> Paths:
    """Resolve all paths (flags > environment > settings file > defaults)."""
    env = os.environ if environ is None else environ
    file_settings = _read_settings_file(settings_file())
    flags = {"workspace_dir": workspace_dir, "data_dir": data_dir, "save_dir": save_dir,
             "pretrained_dir": pretrained_dir}
    defaults = {"workspace_dir": REPO_ROOT, "data_dir": REPO_ROOT / "data", "save_dir": REPO_ROOT / "output",
                "pretrained_dir": REPO_ROOT / "pretrained_models"}
    resolved: dict[str, Path] = {}
    sources: dict[str, str] = {}
    for key in _ROOT_KEYS:
        env_key = ENV_PREFIX + key.upper()
        if flags[key] is not None:
            resolved[key], sources[key] = Path(flags[key]), "flag"
        elif env.get(env_key):
            resolved[key], sources[key] = Path(env[env_key]), env_key
        elif file_settings.get(key):
            resolved[key], sources[key] = Path(file_settings[key]), str(settings_file())
        else:
            resolved[key], sources[key] = defaults[key], "default"
        if not resolved[key].is_absolute():
            base = settings_file().parent if sources[key] == str(settings_file()) else Path.cwd()
            resolved[key] = (base / resolved[key]).resolve()
    overrides: dict[str, Path] = {}
    for name in DATASET_SUBDIRS:
        env_key = f"{ENV_PREFIX}{name.upper()}_DIR"
        if datasets and datasets.get(name):
            overrides[name] = Path(datasets[name]).resolve()
        elif env.get(env_key):
            overrides[name] = Path(env[env_key]).resolve()
        elif (file_settings.get("datasets") or {}).get(name):
            overrides[name] = (settings_file().parent / file_settings["datasets"][name]).resolve()
    return Paths(dataset_overrides=overrides, sources=sources, **resolved)


def write_settings_file(path: Path, workspace_dir: Path, data_dir: Path, save_dir: Path,
                        pretrained_dir: Path | None = None) -> Path:
    """Write a local settings file atomically (used by ``tracking/create_default_local_file.py``)."""
    from lib.utils.io import atomic_write_text

    content = {
        "workspace_dir": str(Path(workspace_dir).resolve()),
        "data_dir": str(Path(data_dir).resolve()),
        "save_dir": str(Path(save_dir).resolve()),
        "pretrained_dir": str(Path(pretrained_dir or Path(workspace_dir) / "pretrained_models").resolve()),
        "datasets": {},
    }
    header = ("# LoReTrack local settings (written by tracking/create_default_local_file.py).\n"
              "# Environment variables LORETRACK_*_DIR and command-line flags take precedence.\n"
              "# Per-dataset roots: add e.g. 'lasot: /data/LaSOTBenchmark' under 'datasets'.\n")
    atomic_write_text(path, header + yaml.safe_dump(content, sort_keys=False))
    return path
