"""The split lists shipped in ``lib/data/lists/``, by name, for training and evaluation alike.

A split list names part of a dataset, one entry per line: LaSOT's are sequence names, GOT-10k's are 0-based line
numbers of the official ``train/list.txt`` (``GOT-10k_Train_000001`` is index 0). Training samples from them and
the ``got10k_ltrval`` benchmark evaluates on ``got10k_val``, so both read them here. Origins and checks:
``lib/data/lists/README.md``.
"""
from __future__ import annotations

from pathlib import Path

from lib.utils.errors import DatasetError

LISTS_DIR = Path(__file__).resolve().parent / "lists"
SPLIT_FILES: dict[str, str] = {
    "lasot_train": "lasot_train_split.txt",
    "got10k_train": "got10k_train_split.txt",
    "got10k_val": "got10k_val_split.txt",
    "got10k_vot_train": "got10k_vot_train_split.txt",
    "got10k_vot_val": "got10k_vot_val_split.txt",
}


def split_path(split: str) -> Path:
    """The file of the split list ``split`` (a key of :data:`SPLIT_FILES`)."""
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown split list '{split}'; known: {sorted(SPLIT_FILES)}")
    return LISTS_DIR / SPLIT_FILES[split]


def split_entries(split: str) -> list[str]:
    """The non-empty lines of the split list ``split``, in file order."""
    path = split_path(split)
    if not path.is_file():
        raise DatasetError(f"split list {path} is missing; restore it from the repository "
                           "(git checkout -- lib/data/lists)")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def split_indices(split: str) -> list[int]:
    """The entries of a GOT-10k split list: 0-based indices into the official ``train/list.txt``."""
    return [int(entry) for entry in split_entries(split)]
