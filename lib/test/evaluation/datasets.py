"""Benchmark registry: ``get_dataset('lasot')`` returns the sequences of any supported benchmark.

Dataset roots come from :func:`lib.utils.paths.get_paths` (flag > ``LORETRACK_<NAME>_DIR`` > settings file >
``<data_dir>/<name>``), so a missing benchmark fails with a message naming the variable to set. The layouts
each reader expects are described in its module under :mod:`lib.test.evaluation.benchmarks`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from lib.test.evaluation.benchmarks.folder import read_folder
from lib.test.evaluation.benchmarks.got10k import read_got10k
from lib.test.evaluation.benchmarks.lasot import read_lasot
from lib.test.evaluation.benchmarks.nfs import read_nfs
from lib.test.evaluation.benchmarks.otb import read_otb
from lib.test.evaluation.benchmarks.tnl2k import read_tnl2k
from lib.test.evaluation.benchmarks.trackingnet import read_trackingnet
from lib.test.evaluation.benchmarks.uav import read_uav
from lib.test.evaluation.data import Sequence, SequenceList
from lib.utils.errors import DatasetError, SettingsError, UserError
from lib.utils.paths import Paths, get_paths

Reader = Callable[[Path, Iterable[str] | None], list[Sequence]]


@dataclass(frozen=True)
class Benchmark:
    reader: Reader
    root_setting: str | None  # dataset key of lib.utils.paths; None: the root must be passed explicitly
    description: str


BENCHMARKS: dict[str, Benchmark] = {
    "lasot": Benchmark(partial(read_lasot, tag="lasot"), "lasot", "LaSOT test set (280, protocol II)"),
    "lasot_extension_subset": Benchmark(partial(read_lasot, tag="lasot_extension_subset"), "lasot_extension_subset",
                                        "LaSOT extension subset (150, 15 new classes)"),
    "got10k_test": Benchmark(partial(read_got10k, split="test"), "got10k", "GOT-10k test (180, first box only)"),
    "got10k_val": Benchmark(partial(read_got10k, split="val"), "got10k", "GOT-10k val (180)"),
    "got10k_ltrval": Benchmark(partial(read_got10k, split="ltrval"), "got10k",
                               "GOT-10k train-split validation part (split list got10k_val, lib/data/splits.py)"),
    "trackingnet": Benchmark(read_trackingnet, "trackingnet", "TrackingNet test (511, first box only)"),
    "uav": Benchmark(read_uav, "uav", "UAV123 (123)"),
    "otb": Benchmark(read_otb, "otb", "OTB-100 (100)"),
    "nfs": Benchmark(read_nfs, "nfs", "NFS 30 fps (100)"),
    "tnl2k": Benchmark(read_tnl2k, "tnl2k", "TNL2K test (every sub-folder of the root)"),
    "folder": Benchmark(read_folder, None, "your own videos: <root>/<seq>/{groundtruth.txt, frames}"),
}


def dataset_names() -> list[str]:
    return list(BENCHMARKS)


def get_dataset(name: str, paths: Paths | None = None, root: str | Path | None = None,
                sequences: Iterable[str] | None = None, skip_unreadable: bool = False) -> SequenceList:
    """The sequences of benchmark ``name``.

    ``root`` overrides the configured dataset folder (required for ``'folder'``); ``sequences`` restricts the
    list to those names (in benchmark order), e.g. to use part of a benchmark or a partial download. A sequence
    with an unreadable ground truth is an error, unless ``skip_unreadable`` keeps it as a placeholder that
    fails alone when tracked (``Sequence.load_error``), so it never stops the others.
    """
    key = name.lower()
    if key not in BENCHMARKS:
        raise UserError(f"unknown dataset '{name}'; choose one of {dataset_names()}")
    benchmark = BENCHMARKS[key]
    if root is not None:
        root = Path(root)
        if not root.is_dir():
            raise SettingsError(f"dataset root {root} for '{key}' is not a folder; pass the benchmark's top folder")
    elif benchmark.root_setting is None:
        raise UserError(f"dataset '{key}' has no configured location; pass its folder as root")
    else:
        root = (paths or get_paths()).dataset_dir(benchmark.root_setting)
    if isinstance(sequences, str):
        sequences = [sequences]
    found = SequenceList(benchmark.reader(root, sequences))
    unreadable = [seq.load_error for seq in found if seq.load_error]
    if unreadable and not skip_unreadable:
        more = f" (and {len(unreadable) - 1} more sequences)" if len(unreadable) > 1 else ""
        raise DatasetError(unreadable[0] + more)
    return found
