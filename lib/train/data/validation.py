"""The start-up check of the training data: every annotation is parsed when the datasets open, not hours later.

A sequence whose annotation file is missing or unparsable is dropped and named; bad rows (NaN, infinite, absurdly
large, not numbers, negative size) only make their frames unusable and are counted. The summary names every
skipped file; ``strict`` makes any of it an error, and past ``max_skipped_share`` of a dataset the run stops.

Results are cached per sequence under the run layout's cache root, keyed by the annotation files' size and
modification time (by their content digest for an LMDB), so re-opening a large dataset costs one ``stat`` per
file. Large datasets are parsed in worker processes, with a progress bar.
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.train.data.annotations import MAX_COORDINATE
from lib.train.data.datasets.base import TrackingDataset
from lib.train.data.datasets.storage import FolderStorage, Storage
from lib.utils.errors import DatasetError
from lib.utils.io import atomic_write_text

log = logging.getLogger(__name__)

CACHE_FORMAT = f"loretrack-data-check-1/max-coordinate-{MAX_COORDINATE:g}"
#: below this many sequences to parse, worker processes cost more than they save
PARALLEL_MIN_SEQUENCES = 200
PROGRESS_MIN_SEQUENCES = 300
#: skipped names quoted per reason in the log; the full list goes to a file beside the cache
MAX_NAMES_LOGGED = 50
MISSING_FILE = "with a missing annotation file"
UNPARSABLE_FILE = "with an unparsable annotation file"


@dataclass
class DatasetCheck:
    """What the start-up check found in one dataset."""

    name: str
    source: str
    usable: int = 0
    frames: int = 0
    skipped: dict[str, list[str]] = field(default_factory=dict)  # what and why -> names (files, sequences, chunks)
    skipped_sequences: float = 0.0
    problems: Counter = field(default_factory=Counter)  # cause -> bad values
    examples: list[str] = field(default_factory=list)
    list_file: Path | None = None

    @property
    def bad_values(self) -> int:
        return sum(self.problems.values())

    @property
    def skipped_share(self) -> float:
        total = self.usable + self.skipped_sequences
        return self.skipped_sequences / total if total else 0.0

    @property
    def bad_value_share(self) -> float:
        return min(1.0, self.bad_values / self.frames) if self.frames else 0.0

    def skipped_text(self, limit: int = MAX_NAMES_LOGGED) -> str:
        parts = []
        for reason, names in self.skipped.items():
            shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
            parts.append(f"{reason} ({len(names)}): {shown}")
        return "; ".join(parts)

    def problems_text(self) -> str:
        causes = ", ".join(f"{count} {cause}" for cause, count in self.problems.most_common())
        return f"{self.bad_values} bad value(s) ({causes}; first: {self.examples[0]})" if self.problems else ""


def check_training_data(datasets: Sequence[TrackingDataset], cache_dir: Path | None = None, strict: bool = False,
                        max_skipped_share: float = 1.0, progress: bool | None = None, processes: int | None = None
                        ) -> list[DatasetCheck]:
    """Check every dataset (dropping unusable sequences from it), log the summary, and stop the run when the
    data is not good enough: any problem with ``strict``, or more than ``max_skipped_share`` unusable.
    ``progress`` None shows a bar for large datasets when stderr is a terminal."""
    if progress is None:
        progress = sys.stderr.isatty()
    reports = [check_dataset(dataset, cache_dir, progress, processes) for dataset in datasets]
    for report in reports:
        _log_summary(report)
    if strict:
        for report in reports:
            found = "; ".join(t for t in (report.skipped_text(limit=3), report.problems_text()) if t)
            if found:
                raise DatasetError(f"{report.name} in {report.source}: {found}; --strict_data (DATA.STRICT) makes "
                                   "bad training data an error: fix or re-download those files, or train without it")
    for report in reports:
        share = max(report.skipped_share, report.bad_value_share)
        if share > max_skipped_share:
            what = (f"{report.skipped_share:.0%} of its sequences are unusable ({report.skipped_text(limit=3)})"
                    if report.skipped_share >= report.bad_value_share else
                    f"{report.bad_value_share:.0%} of its frames have bad values ({report.problems_text()})")
            raise DatasetError(f"{report.name} in {report.source}: {what}, more than DATA.MAX_SKIPPED_SHARE = "
                               f"{max_skipped_share:g}; complete the download or fix the files, or raise "
                               "DATA.MAX_SKIPPED_SHARE")
    return reports


def check_dataset(dataset: TrackingDataset, cache_dir: Path | None = None, progress: bool = True,
                  processes: int | None = None) -> DatasetCheck:
    """Parse and check every annotation of ``dataset``; its unusable sequences are dropped from it."""
    report = DatasetCheck(dataset.get_name(), dataset.storage.describe())
    check_all = getattr(dataset, "check_all", None)
    if check_all is not None:
        results = [check_all()]
        usable_ids = list(range(dataset.get_num_sequences()))
    else:
        results, usable_ids = _check_sequences(dataset, report, cache_dir, progress, processes)
        if len(usable_ids) < dataset.get_num_sequences():
            dataset.keep_sequences(usable_ids)
    report.usable = len(usable_ids)
    for result in results:
        report.frames += result.get("frames", 0)
        report.problems.update(result.get("problems", {}))
        if result.get("example") and len(report.examples) < 3:
            report.examples.append(result["example"])
    for reason, names in dataset.skipped.items():
        report.skipped.setdefault(f"{dataset.skipped_what.get(reason, 'sequence(s)')} {reason}", []).extend(names)
    report.skipped_sequences = sum(dataset.skipped_sequences.values())
    if cache_dir is not None and any(len(names) > MAX_NAMES_LOGGED for names in report.skipped.values()):
        report.list_file = _cache_file(cache_dir, dataset).with_suffix(".skipped.txt")
        atomic_write_text(report.list_file, "".join(f"{reason}\t{name}\n" for reason, names in report.skipped.items()
                                                    for name in names))
    return report


def _check_sequences(dataset: TrackingDataset, report: DatasetCheck, cache_dir: Path | None, progress: bool,
                     processes: int | None) -> tuple[list[dict[str, Any]], list[int]]:
    count = dataset.get_num_sequences()
    names = [dataset.get_sequence_name(i) for i in range(count)]
    keys = [_fingerprint(dataset.storage, dataset.annotation_files(i)) for i in range(count)]
    cacheable = cache_dir is not None and any(keys)
    cache_file = _cache_file(cache_dir, dataset) if cacheable else None
    cached = _read_cache(cache_file, report.source) if cache_file else {}
    results: list[dict[str, Any] | None] = [None] * count
    todo = []
    for seq_id, (name, key) in enumerate(zip(names, keys, strict=True)):
        entry = cached.get(name)
        if entry is not None and entry.get("key") == key:
            results[seq_id] = entry["result"]
        else:
            todo.append(seq_id)
    for seq_id, result in _run_checks(dataset, todo, progress, processes):
        results[seq_id] = result
    if cache_file is not None and todo:
        entries = {name: {"key": key, "result": result} for name, key, result in zip(names, keys, results, strict=True)}
        atomic_write_text(cache_file, json.dumps({"format": CACHE_FORMAT, "source": report.source,
                                                  "sequences": entries}))
    usable, skipped_files = [], {MISSING_FILE: [], UNPARSABLE_FILE: []}
    for seq_id, result in enumerate(results):
        assert result is not None
        skip = result.get("skip")
        if skip is None:
            usable.append(seq_id)
            continue
        reason = MISSING_FILE if skip["reason"] == "is missing" else UNPARSABLE_FILE
        detail = "" if reason == MISSING_FILE else f" ({skip['reason'].removeprefix('is unparsable: ')})"
        skipped_files[reason].append(f"{skip['file']}{detail}")
    for reason, files in skipped_files.items():
        dataset.report_skipped(reason, files)
    return [r for r in results if r is not None and r.get("skip") is None], usable


def _run_checks(dataset: TrackingDataset, seq_ids: list[int], progress: bool, processes: int | None
                ) -> Iterator[tuple[int, dict[str, Any]]]:
    processes = processes if processes is not None else min(8, os.cpu_count() or 1)
    show = progress and len(seq_ids) > PROGRESS_MIN_SEQUENCES
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=len(seq_ids), desc=f"checking {dataset.get_name()} annotations", unit="seq", leave=False,
                   dynamic_ncols=True)
    try:
        if processes > 1 and len(seq_ids) >= PARALLEL_MIN_SEQUENCES:
            context = multiprocessing.get_context("fork")  # the workers inherit the opened dataset
            with context.Pool(processes, initializer=_adopt_dataset, initargs=(dataset,)) as pool:
                for item in pool.imap(_check_in_worker, seq_ids, chunksize=16):
                    if bar is not None:
                        bar.update(1)
                    yield item
        else:
            for seq_id in seq_ids:
                if bar is not None:
                    bar.update(1)
                yield seq_id, dataset.check_sequence(seq_id)
    finally:
        if bar is not None:
            bar.close()


_worker_dataset: TrackingDataset | None = None


def _adopt_dataset(dataset: TrackingDataset) -> None:
    global _worker_dataset
    _worker_dataset = dataset


def _check_in_worker(seq_id: int) -> tuple[int, dict[str, Any]]:
    assert _worker_dataset is not None
    return seq_id, _worker_dataset.check_sequence(seq_id)


def _fingerprint(storage: Storage, relpaths: list[str]) -> list[Any]:
    """Size and modification time of each file in a folder (a folder's own time changes with its listing);
    the content digest in an LMDB; None for a file that does not exist."""
    key: list[Any] = []
    for relpath in relpaths:
        if isinstance(storage, FolderStorage):
            try:
                stat = os.stat(storage.root / relpath)
                key.append([stat.st_size, stat.st_mtime_ns])
            except OSError:
                key.append(None)
        else:
            try:
                key.append(hashlib.blake2b(storage.read_bytes(relpath), digest_size=16).hexdigest())
            except (FileNotFoundError, IsADirectoryError):
                key.append(None)
            except OSError:
                key.append(None)
    return key


def _cache_file(cache_dir: Path, dataset: TrackingDataset) -> Path:
    source = hashlib.blake2b(dataset.storage.describe().encode(), digest_size=6).hexdigest()
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset.get_name())
    return Path(cache_dir) / f"{safe}-{source}.json"


def _read_cache(path: Path, source: str) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(content, dict) or content.get("format") != CACHE_FORMAT or content.get("source") != source:
        return {}
    sequences = content.get("sequences")
    return sequences if isinstance(sequences, dict) else {}


def _log_summary(report: DatasetCheck) -> None:
    log.info("training data %s in %s: %d usable sequence(s), %d frame(s) checked%s", report.name, report.source,
             report.usable, report.frames, f"; {report.problems_text()} (those frames are not used)"
             if report.problems else "")
    if report.skipped:
        listed = f" (all names in {report.list_file})" if report.list_file else ""
        log.warning("training data %s: skipped %s%s", report.name, report.skipped_text(), listed)
