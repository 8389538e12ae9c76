"""Building blocks shared by every benchmark reader: text tables, frame lists, sequence lists, selection."""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from collections.abc import Sequence as SequenceType
from pathlib import Path
from typing import Any

import numpy as np

from lib.test.evaluation.data import Sequence
from lib.utils.boxes import TableFormatError, parse_box_table, parse_number_table
from lib.utils.errors import DatasetError, UserError
from lib.utils.sorting import natural_sorted

SEQUENCE_LISTS_DIR = Path(__file__).resolve().parents[1] / "sequence_lists"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


# --------------------------------------------------------------------------------------------- text files

def load_table(path: str | Path) -> np.ndarray:
    """Numbers of a text file as a 2-D float64 array (any of comma, tab, space as delimiter)."""
    path = Path(path)
    text = path.read_text()  # FileNotFoundError is reported by the caller with the dataset context
    try:
        return parse_number_table(text)
    except TableFormatError as err:
        raise DatasetError(f"{path}: {err}; fix, re-download or re-create the file") from None


def load_annotation_boxes(path: str | Path) -> np.ndarray:
    """A benchmark's ground-truth file (``x, y, w, h`` per line) as an (N, 4) array; errors are DatasetErrors."""
    path = Path(path)
    try:
        return parse_box_table(path.read_text())
    except TableFormatError as err:
        raise DatasetError(f"{path}: {err}; fix, re-download or re-create the file") from None


def load_flags(path: str | Path) -> np.ndarray:
    """Per-frame integer labels, whether written one per line or as one comma-separated line."""
    return load_table(path).ravel().astype(np.int64)


def read_lines(path: str | Path) -> list[str]:
    """Non-empty stripped lines (sequence lists, attribute files, language descriptions)."""
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def read_key_values(path: str | Path) -> dict[str, str]:
    """``key: value`` lines (GOT-10k's meta_info.ini); section headers and other lines are ignored."""
    entries: dict[str, str] = {}
    for line in read_lines(path):
        key, sep, value = line.partition(":")
        if sep and not line.startswith("["):
            entries[key.strip()] = value.strip()
    return entries


def load_sequence_list(file_name: str) -> Any:
    """A list shipped in ``sequence_lists/`` (``.txt``: one name per line, ``.json``: records)."""
    path = SEQUENCE_LISTS_DIR / file_name
    return json.loads(path.read_text()) if path.suffix == ".json" else read_lines(path)


# -------------------------------------------------------------------------------------------------- frames

def numbered_frames(folder: Path, first: int, last: int, digits: int, ext: str = "jpg") -> list[str]:
    """Frame paths from a known naming pattern, so huge folders need not be listed."""
    prefix = f"{folder}{os.sep}"
    return [f"{prefix}{number:0{digits}d}.{ext}" for number in range(first, last + 1)]


def listed_frames(folder: Path) -> list[str]:
    """Every image file of ``folder``, in natural order (for layouts whose frame names are not predictable)."""
    try:
        names = [entry.name for entry in os.scandir(folder)
                 if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES)]
    except FileNotFoundError:
        raise FileNotFoundError(f"frame folder {folder} does not exist") from None
    if not names:
        raise DatasetError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) found")
    return [str(folder / name) for name in natural_sorted(names)]


def subfolders(root: Path) -> list[str]:
    return natural_sorted(entry.name for entry in os.scandir(root) if entry.is_dir())


def attribute_flags(all_attributes: SequenceType[str], present: Iterable[str]) -> dict[str, bool]:
    present = {name.strip().upper() for name in present}
    unknown = present - {name.upper() for name in all_attributes}
    if unknown:
        raise DatasetError(f"unknown attribute(s) {sorted(unknown)}; known: {list(all_attributes)}")
    return {name: name.upper() in present for name in all_attributes}


# ------------------------------------------------------------------------------------- building the list

def select_names(available: SequenceType[str], wanted: Iterable[str] | None, dataset: str) -> list[str]:
    """The requested subset in the benchmark's own order; unknown names are an error, not silently dropped."""
    if wanted is None:
        return list(available)
    wanted = list(wanted)
    unknown = [name for name in wanted if name not in set(available)]
    if unknown:
        lowered = {name.lower(): name for name in available}
        hints = [f"'{name}' (did you mean '{lowered[name.lower()]}'?)" if name.lower() in lowered else f"'{name}'"
                 for name in unknown]
        raise UserError(f"dataset '{dataset}' has no sequence(s) {', '.join(hints)}; "
                        f"it has {len(available)}, e.g. {list(available[:5])}")
    chosen = set(wanted)
    return [name for name in available if name in chosen]


def build_sequences(names: SequenceType[str], build: Callable[[str], Sequence], dataset: str,
                    root: Path) -> list[Sequence]:
    """Build every sequence; report all missing files at once, since a partial download is the usual cause.

    A sequence whose files exist but do not parse is kept as a frameless placeholder naming the problem
    (``Sequence.load_error``): it fails alone when tracked, and :func:`~lib.test.evaluation.datasets.get_dataset`
    decides whether it stops the caller.
    """
    sequences, missing = [], []
    for name in names:
        try:
            sequences.append(build(name))
        except FileNotFoundError as err:
            missing.append(f"{name}: {err.filename or err}")
        except DatasetError as err:
            sequences.append(Sequence(name, [], dataset, np.zeros((0, 4)), load_error=str(err)))
    if missing:
        shown = "; ".join(missing[:3]) + ("; ..." if len(missing) > 3 else "")
        raise DatasetError(
            f"dataset '{dataset}' at {root} is incomplete: files of {len(missing)} of {len(names)} sequences are "
            f"missing ({shown}). Check that the root points at the benchmark's top folder and that the download "
            f"is complete, or pass sequences=[...] to load only the sequences you have")
    return sequences
