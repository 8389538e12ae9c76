"""The sequence record every benchmark reader returns and every evaluation step consumes."""
from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Sequence as SequenceType
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Sequence:
    """One annotated video of a benchmark.

    ``ground_truth_rect`` is an (N, 4) float64 array of ``[x, y, w, h]`` boxes, one row per frame (NaN rows
    for absent targets where the benchmark marks them so). Test splits that only publish the first box
    (GOT-10k test, TrackingNet test) have a single row. ``dataset`` is the evaluation tag
    (``'lasot'``, ``'otb'``, ``'uav'``, ...) that selects the per-benchmark metric rules. A sequence whose files
    cannot be read (a corrupt ground truth) has no frames and says why in ``load_error``, so that it fails alone
    when tracked instead of stopping the whole benchmark.
    """

    name: str
    frames: list[str]
    dataset: str
    ground_truth_rect: np.ndarray
    target_visible: np.ndarray | None = None
    object_class: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    load_error: str | None = None

    def __post_init__(self) -> None:
        gt = np.asarray(self.ground_truth_rect, dtype=np.float64)
        self.ground_truth_rect = gt.reshape(-1, 4)
        if self.target_visible is not None:
            self.target_visible = np.asarray(self.target_visible, dtype=bool)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def init_bbox(self) -> list[float]:
        """The first-frame box ``[x, y, w, h]`` the tracker is initialised with."""
        return [float(v) for v in self.ground_truth_rect[0]]

    def init_info(self) -> dict[str, Any]:
        return {"init_bbox": self.init_bbox}


class SequenceList(list):
    """A list of :class:`Sequence` that can also be indexed by sequence name."""

    def __getitem__(self, item):  # type: ignore[override]
        if isinstance(item, str):
            for seq in self:
                if seq.name == item:
                    return seq
            raise KeyError(f"no sequence named '{item}'")
        result = super().__getitem__(item)
        return SequenceList(result) if isinstance(item, slice) else result

    def names(self) -> list[str]:
        return [seq.name for seq in self]

    def __iter__(self) -> Iterator[Sequence]:
        return super().__iter__()


def as_sequence_list(items: SequenceType[Sequence]) -> SequenceList:
    return SequenceList(items)
