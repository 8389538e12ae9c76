"""Raw tracking results on disk: finding each sequence's files whichever toolkit wrote them, and reading them.

Layouts, all read from one run folder ``F`` (``<tag>/`` is where our runner puts GOT-10k and TrackingNet results,
:mod:`lib.utils.run_layout`):

* ``F/[<tag>/]<seq>.txt`` (+ ``<seq>_time.txt``): OSTrack/pytracking, pysot-toolkit, got10k-toolkit OTB/LaSOT;
* ``F/[<tag>/]<seq>/<seq>_NNN.txt`` (+ ``<seq>_time.txt``): got10k-toolkit GOT-10k and the VOT toolkit. Each
  ``NNN`` is a repetition; repetitions are scored like run ids (their curves averaged).

Files of sequences outside the benchmark are ignored, and ``_time``/``_all_boxes``/... files are never box files.
Delimiters (tab, comma, spaces) and number formats are whatever :func:`lib.utils.boxes.parse_box_table` reads.

**Name normalisation** (:func:`result_name_key`): a file belongs to a sequence when both names give the same key:

1. lower case;
2. ``-`` and ``.`` read as ``_``: pysot's ``Human4-2``, MATLAB-era ``jogging-1`` and got10k-toolkit's
   ``Skating2.1`` are OSTrack's ``Human4_2``, ``Jogging_1`` and ``Skating2_1``;
3. one leading benchmark prefix is dropped (:data:`BENCHMARK_PREFIXES`: ``otb_``, ``lasot_``, ``uav_``, ``nfs_``
   ...): pytracking's ``uav_bike1``/``nfs_Gymnastics`` are pysot's ``bike1``/``Gymnastics``;
4. OTB only: ``Human4`` is ``Human4_2`` (only Human4's second target is annotated; the MATLAB annotation and
   got10k-toolkit name it ``Human4``).

The rule never merges two sequences: a sequence whose key another sequence of the benchmark shares (names that
differ only in case or separators, as TrackingNet's YouTube ids can) is matched by its exact name only. LaSOT's
native hyphens (``airplane-1``) need no exception: no two LaSOT names differ only in separators. Two files (or a
file and a nested folder) for one sequence are an :class:`AmbiguousResultError` naming both, never a guess.

Other code that reads raw result folders uses :func:`find_result_file` or :func:`load_tracker_results`.
Every reading error is an :class:`~lib.test.analysis.metrics.InvalidResultError` naming the file, so an
analysis can report it and go on.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from collections.abc import Sequence as SequenceType
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lib.test.analysis.metrics import InvalidResultError
from lib.test.evaluation.data import Sequence
from lib.utils.boxes import TableFormatError, parse_box_table
from lib.utils.errors import UserError
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


    @classmethod
    def from_root(cls, root: str | Path) -> list[TrackerSpec]:
        """One spec per sub-folder of ``root`` (a folder of trackers), named after it, in name order.

        Hidden folders are skipped. A root that is itself one tracker's folder is a usage error, not N trackers.
        """
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"--result_root {root} is not a folder; pass a folder with one sub-folder per tracker")
        folders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                         key=lambda p: p.name)
        nested = next((p for p in folders if any(NESTED_RUN.fullmatch(f.stem) for f in p.glob(f"{p.name}_*.txt"))),
                      None)
        if not folders or nested is not None:
            what = (f"its sub-folder {nested.name} holds '{nested.name}_NNN.txt' files, the per-sequence layout of one "
                    "tracker" if nested is not None else "it has no sub-folders")
            raise UserError(f"--result_root {root} is not a folder of trackers ({what}); pass one tracker's folder "
                            "with --result_dir instead")
        return [cls.from_folder(folder) for folder in folders]


# ------------------------------------------------------------------------------------------- name matching

SEPARATORS = re.compile(r"[-.]")
BENCHMARK_PREFIXES = ("otb", "lasot", "uav", "nfs", "tnl2k", "tc128", "got10k", "trackingnet", "vot")
NAME_ALIASES: dict[str, dict[str, str]] = {"otb": {"human4": "human4_2"}}  # benchmark tag -> key -> key
NESTED_RUN = re.compile(r"(?P<stem>.+)_(?P<run>\d+)")  # got10k-toolkit / VOT: <seq>/<seq>_001.txt


def result_name_key(name: str, benchmark: str = "") -> str:
    """The normalised name (module docstring, rules 1-4) under which a result file matches a sequence."""
    key = SEPARATORS.sub("_", name.lower())
    for prefix in BENCHMARK_PREFIXES:
        if key.startswith(prefix + "_") and len(key) > len(prefix) + 1:
            key = key[len(prefix) + 1:]
            break
    return NAME_ALIASES.get(benchmark, {}).get(key, key)


def names_needing_exact_match(sequences: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The (name, benchmark) pairs' names whose key another name shares: normalising would merge them."""
    by_key: dict[str, set[str]] = {}
    for name, benchmark in sequences:
        by_key.setdefault(result_name_key(name, benchmark), set()).add(name)
    return frozenset(name for names in by_key.values() if len(names) > 1 for name in names)


class AmbiguousResultError(UserError):
    """Two result files match one sequence; which one was meant cannot be told, so the analysis stops."""


@dataclass(frozen=True)
class ResultFiles:
    """One sequence's files in one run folder: its repetitions (usually one box file) and its time file."""

    box_files: tuple[Path, ...]
    time_file: Path | None = None

    @property
    def box_file(self) -> Path:
        return self.box_files[0]


@dataclass
class _Listing:
    files: dict[str, Path]  # stem -> .txt file
    dirs: dict[str, Path]  # name -> sub-folder
    keys: dict[str, dict[str, list[str]]]  # benchmark -> key -> entry names (stems and folder names)


class ResultFolder:
    """The result files of one run folder, found for each sequence by the name normalisation (module docstring).

    ``exact_names`` (from :func:`names_needing_exact_match` over the benchmark) are matched by exact name only.
    """

    def __init__(self, path: str | Path, exact_names: Iterable[str] = ()) -> None:
        self.path = Path(path)
        self.exact_names = frozenset(exact_names)
        self._listings: dict[Path, _Listing] = {}

    def _listing(self, folder: Path) -> _Listing:
        if folder not in self._listings:
            files, dirs = {}, {}
            if folder.is_dir():
                for entry in sorted(folder.iterdir()):
                    if entry.is_dir():
                        dirs[entry.name] = entry
                    elif entry.suffix == ".txt":
                        files[entry.stem] = entry
            self._listings[folder] = _Listing(files, dirs, {})
        return self._listings[folder]

    def _entry_names(self, listing: _Listing, name: str, benchmark: str) -> list[str]:
        """Names of box files (stems) and sub-folders in ``listing`` that match sequence ``name``."""
        if name in self.exact_names:
            return [name] if name in listing.files or name in listing.dirs else []
        if benchmark not in listing.keys:
            keys: dict[str, list[str]] = {}
            for entry in dict.fromkeys([*listing.files, *listing.dirs]):
                if entry in listing.dirs or not entry.endswith(AUXILIARY_SUFFIXES):
                    keys.setdefault(result_name_key(entry, benchmark), []).append(entry)
            listing.keys[benchmark] = keys
        return listing.keys[benchmark].get(result_name_key(name, benchmark), [])

    def _nested(self, folder: Path, name: str, benchmark: str) -> ResultFiles | None:
        """got10k-toolkit's ``<seq>/<seq>_NNN.txt`` repetitions (and ``<seq>_time.txt``) in ``folder``."""
        def matches(stem: str) -> bool:
            return stem == name if name in self.exact_names else \
                result_name_key(stem, benchmark) == result_name_key(name, benchmark)

        runs, time_file = [], None
        for stem, path in self._listing(folder).files.items():
            if stem.endswith(TIME_SUFFIX) and matches(stem[: -len(TIME_SUFFIX)]):
                time_file = time_file or path
                continue
            run = NESTED_RUN.fullmatch(stem)
            if run is not None and matches(run["stem"]):
                runs.append((int(run["run"]), path))
        return ResultFiles(tuple(path for _, path in sorted(runs)), time_file) if runs else None

    def find(self, name: str, benchmark: str = "") -> ResultFiles | None:
        """The files of sequence ``name`` of benchmark tag ``benchmark``; ``None`` when there are none.

        Raises :class:`AmbiguousResultError` when two files (or folders) match.
        """
        found: list[ResultFiles] = []
        for folder in dict.fromkeys([results_subfolder(self.path, benchmark), self.path]):
            listing = self._listing(folder)
            for entry in self._entry_names(listing, name, benchmark):
                if entry in listing.files and not entry.endswith(AUXILIARY_SUFFIXES):
                    found.append(ResultFiles((listing.files[entry],), listing.files.get(entry + TIME_SUFFIX)))
                if entry in listing.dirs:
                    nested = self._nested(listing.dirs[entry], name, benchmark)
                    if nested is not None:
                        found.append(nested)
        if len(found) > 1:
            raise AmbiguousResultError(
                f"two result files for sequence '{name}': {found[0].box_file} and {found[1].box_file} (names match "
                "ignoring case, '-'/'.'/'_' and benchmark prefixes); remove or move one of them")
        return found[0] if found else None

    def box_file(self, seq: Sequence) -> Path | None:
        """The first (usually only) box file of ``seq``."""
        files = self.find(seq.name, seq.dataset)
        return files.box_file if files is not None else None

    def time_file(self, seq: Sequence) -> Path | None:
        files = self.find(seq.name, seq.dataset)
        return files.time_file if files is not None else None

    def missing_error(self, name: str) -> InvalidResultError:
        """The failure for a sequence without files: where we looked and under which names."""
        return InvalidResultError(
            f"result file not found in {self.path} (looked for '{name}.txt' and '{name}/{name}_001.txt', ignoring "
            "case, '-'/'.'/'_' and benchmark prefixes); run the tracker on this sequence or add the file")


# ------------------------------------------------------------------------------------------ for other code

def find_result_file(folder: str | Path, sequence_name: str, benchmark: str = "",
                     sequence_names: Iterable[str] = ()) -> Path:
    """The box file of one sequence in a raw result folder, whichever toolkit wrote it (first repetition).

    ``benchmark`` is the dataset tag (``Sequence.dataset``: 'otb', 'lasot', ...); ``sequence_names``, the
    benchmark's names, keeps names apart that differ only in case or separators. Raises
    :class:`InvalidResultError` when there is no file and :class:`AmbiguousResultError` when two match.
    """
    exact = names_needing_exact_match((n, benchmark) for n in (*sequence_names, sequence_name))
    result_folder = ResultFolder(folder, exact)
    files = result_folder.find(sequence_name, benchmark)
    if files is None:
        raise result_folder.missing_error(sequence_name)
    return files.box_file


def load_tracker_results(folder: str | Path, sequences: SequenceType[Sequence]) -> dict[str, np.ndarray]:
    """Boxes (N, 4) of each sequence from one raw result folder (first repetition), by sequence name.

    Raises :class:`InvalidResultError` (naming the file) for a missing or unreadable file.
    """
    result_folder = ResultFolder(folder, names_needing_exact_match((s.name, s.dataset) for s in sequences))
    boxes = {}
    for seq in sequences:
        files = result_folder.find(seq.name, seq.dataset)
        if files is None:
            raise result_folder.missing_error(seq.name)
        boxes[seq.name] = load_result_boxes(files.box_file)
    return boxes
