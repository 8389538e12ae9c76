"""Submission archives for the GOT-10k and TrackingNet evaluation servers.

OSTrack's ``transform_got10k.py`` / ``transform_trackingnet.py`` zip the results and then delete both the
submission folder and the raw results; on Python >= 3.10.6 the zip lands inside the deleted folder, so
everything is lost. These packers only *read* the result folder and write one new zip, atomically; an
existing zip is replaced only when asked (``force``).

Box values are written as integers truncated toward zero (OSTrack's ``astype(int)`` + ``%d``).
"""
from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lib.test.analysis.metrics import InvalidResultError, check_predictions
from lib.test.analysis.result_files import AUXILIARY_SUFFIXES, decode, load_result_boxes, parse_times, read_bytes
from lib.test.evaluation.results_store import format_boxes
from lib.utils import run_layout
from lib.utils.errors import UserError
from lib.utils.io import atomic_path, check_free_space, ensure_writable_file, reporting_disk_full
from lib.utils.paths import get_paths

GOT10K_TEST_SEQUENCES = 180
TRACKINGNET_TEST_SEQUENCES = 511


class PackingError(UserError):
    """The results cannot be packed as they are (missing folder, bad file, existing archive)."""


@dataclass
class PackSummary:
    """What was packed where, and what the server may object to."""

    zip_path: Path
    sequences: list[str]
    warnings: list[str] = field(default_factory=list)


def box_files_by_sequence(folder: Path) -> dict[str, Path]:
    """``<seq>.txt`` box files of a result folder (time, all-boxes and score files excluded), by sequence."""
    if not folder.is_dir():
        raise PackingError(f"result folder {folder} does not exist; run the tracker first or pass --result_dir")
    files = {}
    for path in sorted(folder.glob("*.txt")):
        if not path.stem.endswith(AUXILIARY_SUFFIXES):
            files[path.stem] = path
    if not files:
        raise PackingError(f"{folder} holds no '<sequence>.txt' result files; is this the right folder?")
    return files


def integer_box_text(path: Path) -> str:
    """The boxes of ``path`` as comma-separated integers (truncated toward zero), one line per frame."""
    try:
        boxes = load_result_boxes(path)
        check_predictions(boxes)
    except InvalidResultError as err:
        raise PackingError(str(err.at(path))) from None
    return format_boxes(boxes).replace("\t", ",")


def checked_time_bytes(path: Path) -> bytes:
    data = read_bytes(path)
    parse_times(decode(data, path), path)
    return data


def write_zip(zip_path: Path, entries: dict[str, bytes | str], force: bool) -> None:
    """Write all entries into a new zip; never leaves a partial archive, never replaces one unless ``force``."""
    if zip_path.exists() and not force:
        raise PackingError(f"{zip_path} already exists; pass --force to replace it or choose another --output")
    if zip_path.suffix != ".zip":
        raise PackingError(f"output {zip_path} must end in .zip")
    needed = sum(len(content) for content in entries.values()) + 200 * len(entries)  # at most, uncompressed
    what, hint = "the submission zip", "run the same command again (the results are untouched)"
    check_free_space(zip_path.parent, needed, what, hint)
    with reporting_disk_full(what, zip_path, needed, hint), atomic_path(zip_path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, content in entries.items():
                archive.writestr(name, content)


def _count_warning(found: int, expected: int, benchmark: str) -> list[str]:
    if found == expected:
        return []
    return [f"{found} sequences packed, the {benchmark} test set has {expected}; the server may reject "
            "an incomplete submission"]


def pack_got10k(results_folder: str | Path, zip_path: str | Path, force: bool = False) -> PackSummary:
    """GOT-10k layout: ``<seq>/<seq>_001.txt`` (one repetition) + ``<seq>/<seq>_time.txt`` per sequence."""
    folder, zip_path = Path(results_folder), Path(zip_path)
    files = box_files_by_sequence(folder)
    entries: dict[str, bytes | str] = {}
    warnings = []
    for seq, path in files.items():
        entries[f"{seq}/{seq}_001.txt"] = integer_box_text(path)
        _, time_path = run_layout.result_files(folder / seq)
        if time_path.is_file():
            try:
                entries[f"{seq}/{seq}_time.txt"] = checked_time_bytes(time_path)
            except InvalidResultError as err:
                raise PackingError(str(err)) from None
        else:
            warnings.append(f"no time file for '{seq}' ({time_path}); the server reports no speed for it")
    write_zip(zip_path, entries, force)
    return PackSummary(zip_path, list(files), _count_warning(len(files), GOT10K_TEST_SEQUENCES, "GOT-10k") + warnings)


def pack_trackingnet(results_folder: str | Path, zip_path: str | Path, force: bool = False) -> PackSummary:
    """TrackingNet layout: flat ``<seq>.txt`` files (the server matches them by name)."""
    folder, zip_path = Path(results_folder), Path(zip_path)
    files = box_files_by_sequence(folder)
    entries: dict[str, bytes | str] = {f"{seq}.txt": integer_box_text(path) for seq, path in files.items()}
    write_zip(zip_path, entries, force)
    return PackSummary(zip_path, list(files), _count_warning(len(files), TRACKINGNET_TEST_SEQUENCES, "TrackingNet"))


def run_results_folder(results_root: str | Path, tracker: str, param: str, run_id: int | None, tag: str,
                       backend: str = run_layout.DEFAULT_BACKEND) -> Path:
    """Where our runner writes ``tag`` results: ``<results_root>/<tracker>/<param>[_<run:03d>][_<backend>]/<tag>``."""
    run_folder = Path(results_root) / tracker / run_layout.results_run_name(param, run_id, backend)
    return run_layout.results_subfolder(run_folder, tag)


def default_zip_path(folder: Path) -> Path:
    """``<folder>_submit.zip`` beside the result folder (``.../got10k`` -> ``.../got10k_submit.zip``)."""
    return folder.parent / f"{folder.name}_submit.zip"


def results_folder_to_pack(tag: str, result_dir: str | Path | None = None, tracker: str | None = None,
                          param: str | None = None, run_id: int | None = None,
                          backend: str = run_layout.DEFAULT_BACKEND, save_dir: str | Path | None = None) -> Path:
    """The folder to pack: ``result_dir`` (or its ``<tag>/`` sub-folder when only that holds results), or where
    our runner wrote the ``tag`` results of ``tracker``/``param``; the messages name the packers' flags."""
    if result_dir:
        if tracker or param or backend != run_layout.DEFAULT_BACKEND:
            raise PackingError("give either --result_dir or --tracker/--param[/--backend], not both")
        folder = Path(result_dir)
        if run_layout.results_subfolder(folder, tag).is_dir() and not any(folder.glob("*.txt")):
            folder = run_layout.results_subfolder(folder, tag)
        return folder
    if tracker and param:
        return run_results_folder(run_layout.results_root(get_paths(save_dir=save_dir)), tracker, param, run_id, tag,
                                  backend)
    raise PackingError("nothing to pack: give --tracker NAME --param CONFIG [--run_id N] [--backend B], or "
                       "--result_dir PATH")


PACKERS: dict[str, Callable[[Path, Path, bool], PackSummary]] = {"got10k": pack_got10k,
                                                                 "trackingnet": pack_trackingnet}


def pack_results(tag: str, folder: str | Path, output: str | Path | None = None, force: bool = False) -> PackSummary:
    """Pack ``folder`` for the ``tag`` server into ``output`` (default: ``<folder>_submit.zip`` beside it)."""
    folder = Path(folder)
    zip_path = Path(output) if output else default_zip_path(folder)
    ensure_writable_file(zip_path, "the submission zip")
    return PACKERS[tag](folder, zip_path, force)
