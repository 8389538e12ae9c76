"""Raw tracking results on disk: which folders a tracker's runs are in, and reading their box and time files.

Result layout (OSTrack/pytracking, named by :mod:`lib.utils.run_layout`):
``<results_root>/<tracker>/<param>[_<run:03d>][_<backend>]/<seq>.txt`` (+ ``<seq>_time.txt``); our runner
writes GOT-10k and TrackingNet results one folder deeper, in ``<tag>/``. Both places are searched, so local
GOT-10k-val analysis works. Folders of external raw results (other toolkits, other name casing such as
``jogging_1.txt`` for ``Jogging_1``) are matched case-insensitively when the exact name is absent.

Every reading error is an :class:`~lib.test.analysis.metrics.InvalidResultError` naming the file, so an
analysis can report it and go on.
"""
from __future__ import annotations

from collections.abc import Sequence as SequenceType
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lib.test.analysis.metrics import InvalidResultError
from lib.test.evaluation.data import Sequence
from lib.utils.boxes import TableFormatError, parse_box_table
from lib.utils.run_layout import DEFAULT_BACKEND, TIME_SUFFIX, results_run_name, results_subfolder

# Extra per-sequence outputs of trackers that are not box files.
AUXILIARY_SUFFIXES = (TIME_SUFFIX, "_all_boxes", "_all_scores", "_object_presence_scores")


# ----------------------------------------------------------------------------------------------- reading

def parse_result_boxes(text: str, source: str | Path = "<text>") -> np.ndarray:
    """Parse ``x y w h`` lines (tabs, commas or spaces); ``source`` only labels errors."""
    try:
        return parse_box_table(text)
    except TableFormatError as err:
        hint = ("re-run the tracker on this sequence" if "empty" in str(err)
                else "expected one 'x,y,w,h' line per frame, tab- or comma-separated")
        raise InvalidResultError(f"{err}; {hint}", source) from None


def read_bytes(path: Path) -> bytes:
    """The file's bytes; an unreadable file is an invalid result, not a crash."""
    try:
        return path.read_bytes()
    except OSError as err:
        raise InvalidResultError(f"cannot be read ({err.strerror}); check the file and its permissions",
                                 path) from None


def load_result_boxes(path: str | Path) -> np.ndarray:
    """A tracker's raw result file as an (N, 4) float64 array; errors are InvalidResultErrors naming the file."""
    path = Path(path)
    return parse_result_boxes(decode(read_bytes(path), path), path)


def decode(data: bytes, source: Path) -> str:
    """UTF-8 text of a result file; binary content is an invalid result."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidResultError("not a text file; expected 'x,y,w,h' lines", source) from None


def parse_times(text: str, source: str | Path) -> np.ndarray:
    """Per-frame seconds from a ``<seq>_time.txt`` file (one value per line; extra columns are repetitions)."""
    try:
        return np.array(text.replace(",", " ").replace("\t", " ").split(), dtype=np.float64)
    except ValueError:
        raise InvalidResultError("time file holds non-numbers; expected one float (seconds) per line",
                                 source) from None


# ------------------------------------------------------------------------------------------------ locating

@dataclass(frozen=True)
class TrackerSpec:
    """One row of the report: one or several runs whose per-sequence curves are averaged."""

    display_name: str
    run_dirs: tuple[Path, ...]

    @classmethod
    def from_run(cls, results_root: str | Path, name: str, param: str, run_ids: SequenceType[int] | None = None,
                 display_name: str | None = None, backend: str = DEFAULT_BACKEND) -> TrackerSpec:
        """Our own runs: ``<results_root>/<name>/<param>[_<run:03d>][_<backend>]``, one folder per run id."""
        base = Path(results_root) / name
        run_ids = list(run_ids or [None])
        dirs = tuple(base / results_run_name(param, run_id, backend) for run_id in run_ids)
        default_name = f"{name}_{results_run_name(param, run_ids[0] if len(run_ids) == 1 else None, backend)}"
        return cls(display_name or default_name, dirs)

    @classmethod
    def from_folder(cls, folder: str | Path, display_name: str | None = None) -> TrackerSpec:
        """Any folder of raw ``<seq>.txt`` files (e.g. published results of another tracker)."""
        folder = Path(folder)
        return cls(display_name or folder.name, (folder,))


class ResultFolder:
    """The box and time files of one run folder, found exactly or case-insensitively."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._listings: dict[Path, dict[str, list[Path]]] = {}

    def _listing(self, folder: Path) -> dict[str, list[Path]]:
        if folder not in self._listings:
            entries: dict[str, list[Path]] = {}
            if folder.is_dir():
                for file in folder.iterdir():
                    if file.suffix == ".txt":
                        entries.setdefault(file.stem.lower(), []).append(file)
            self._listings[folder] = entries
        return self._listings[folder]

    def _find(self, stem: str, tag: str) -> Path | None:
        folders = list(dict.fromkeys([results_subfolder(self.path, tag), self.path]))
        for folder in folders:
            exact = folder / f"{stem}.txt"
            if exact.is_file():
                return exact
        for folder in folders:
            matches = self._listing(folder).get(stem.lower(), [])
            if len(matches) == 1:
                return matches[0]
        return None

    def box_file(self, seq: Sequence) -> Path | None:
        return self._find(seq.name, seq.dataset)

    def time_file(self, seq: Sequence) -> Path | None:
        return self._find(seq.name + TIME_SUFFIX, seq.dataset)
