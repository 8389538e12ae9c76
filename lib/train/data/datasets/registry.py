"""Training datasets by their OSTrack config names (``DATA.TRAIN.DATASETS_NAME``).

``build_dataset('GOT10K_vottrain')`` reads the GOT-10k folder from the path settings (``got10k``); the
``<NAME>_lmdb`` variants read the packed LMDB from the ``<key>_lmdb`` setting instead (e.g. ``got10k_lmdb``,
created with ``tracking/pack_lmdb.py``). ``'CUSTOM:<path>'`` reads GOT-10k-style folders of your own videos
(an LMDB folder is recognised by its ``data.mdb``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.train.data.datasets.base import TrackingDataset
from lib.train.data.datasets.coco import Coco17
from lib.train.data.datasets.custom import CustomFolder
from lib.train.data.datasets.got10k import Got10k
from lib.train.data.datasets.imagenetvid import ImagenetVID
from lib.train.data.datasets.lasot import Lasot
from lib.train.data.datasets.trackingnet import TrackingNet
from lib.utils.errors import UserError
from lib.utils.paths import Paths, get_paths
from lib.utils.run_layout import cache_root

LMDB_SUFFIX = "_lmdb"
CUSTOM_PREFIX = "CUSTOM:"


@dataclass(frozen=True)
class DatasetSpec:
    reader: Callable[..., TrackingDataset]
    path_key: str  # dataset key of lib.utils.paths (the LMDB variant uses path_key + '_lmdb')
    options: dict[str, Any] = field(default_factory=dict)


DATASETS: dict[str, DatasetSpec] = {
    "LASOT": DatasetSpec(Lasot, "lasot", {"split": "train"}),
    "GOT10K_train": DatasetSpec(Got10k, "got10k", {"split": "train"}),
    "GOT10K_val": DatasetSpec(Got10k, "got10k", {"split": "val"}),
    "GOT10K_vottrain": DatasetSpec(Got10k, "got10k", {"split": "vottrain"}),
    "GOT10K_votval": DatasetSpec(Got10k, "got10k", {"split": "votval"}),
    "GOT10K_train_full": DatasetSpec(Got10k, "got10k", {"split": "train_full"}),
    "GOT10K_official_val": DatasetSpec(Got10k, "got10k", {"split": "official_val"}),
    "COCO17": DatasetSpec(Coco17, "coco"),
    "TRACKINGNET": DatasetSpec(TrackingNet, "trackingnet"),
    "VID": DatasetSpec(ImagenetVID, "imagenetvid"),
}


def dataset_names() -> list[str]:
    """Every name :func:`build_dataset` accepts (besides ``CUSTOM:<path>``)."""
    return [n for name in DATASETS for n in (name, name + LMDB_SUFFIX)]


def _lookup(name: str) -> tuple[str, bool]:
    """(canonical name, whether the LMDB variant was asked for); case does not matter."""
    by_lower = {key.lower(): key for key in DATASETS}
    lowered = name.lower()
    if lowered in by_lower:
        return by_lower[lowered], False
    if lowered.endswith(LMDB_SUFFIX) and lowered[:-len(LMDB_SUFFIX)] in by_lower:
        return by_lower[lowered[:-len(LMDB_SUFFIX)]], True
    raise UserError(f"unknown training dataset '{name}'; known: {', '.join(dataset_names())}, "
                    f"or {CUSTOM_PREFIX}<folder> for your own GOT-10k-style videos")


def build_dataset(name: str, paths: Paths | None = None, storage: str | None = None,
                  root: str | Path | None = None, **options: Any) -> TrackingDataset:
    """The training dataset called ``name`` (an OSTrack config name, its ``_lmdb`` variant, or ``CUSTOM:<path>``).

    ``storage`` ('folder' or 'lmdb') overrides how the files are read; ``root`` overrides the configured
    location; ``options`` go to the reader (e.g. ``chunks=[0, 1]`` for TrackingNet, ``sequence_names=[...]``).
    A dataset whose folder is missing raises a SettingsError naming the variable that sets it.
    """
    if storage not in (None, "folder", "lmdb"):
        raise UserError(f"unknown dataset storage '{storage}'; use 'folder' or 'lmdb'")
    if name.upper().startswith(CUSTOM_PREFIX):
        location = Path(root or name[len(CUSTOM_PREFIX):]).expanduser()
        kind = storage or ("lmdb" if (location / "data.mdb").is_file() else "folder")
        return CustomFolder(location, storage=kind, **options)
    canonical, lmdb_name = _lookup(name)
    if lmdb_name and storage == "folder":
        raise UserError(f"'{name}' names the LMDB variant but storage='folder' was asked for")
    kind = "lmdb" if lmdb_name else (storage or "folder")
    spec = DATASETS[canonical]
    paths = paths or get_paths()
    if root is None:
        root = paths.dataset_dir(spec.path_key + (LMDB_SUFFIX if kind == "lmdb" else ""))
    arguments = {**spec.options, **options}
    if spec.reader is ImagenetVID:
        arguments.setdefault("cache_file", cache_root(paths) / f"imagenetvid_{kind}_tracks.json")
    return spec.reader(root, storage=kind, **arguments)
