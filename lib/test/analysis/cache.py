"""Per-sequence metrics cached by the content of the result file and of the ground truth.

OSTrack's cache was keyed on sequence and tracker names only, so re-run results were silently scored with stale
numbers. Here any change of the result bytes, the annotation, the tag or the options gives a new key.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from lib.test.analysis.metrics import SequenceMetrics
from lib.test.evaluation.data import Sequence
from lib.utils.io import atomic_write_text

CACHE_VERSION = 2  # 2: entries hold the number of result rows, so length mismatches survive a cache hit
CACHE_MAX_ENTRIES = 10_000  # about 25 MB of JSON; the least recently used entries go first


def _digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def sequence_fingerprint(seq: Sequence) -> str:
    """Identifies everything about the ground truth that the metric reads."""
    visible = b"" if seq.target_visible is None else np.asarray(seq.target_visible, dtype=bool).tobytes()
    gt = np.ascontiguousarray(seq.ground_truth_rect, dtype=np.float64)
    return _digest(seq.dataset.encode(), gt.tobytes(), visible)


class MetricsCache:
    """Metrics and timings by content key, kept in one JSON file; ``path=None`` keeps them in memory only."""

    def __init__(self, path: str | Path | None = None, load: bool = True) -> None:
        """``load=False`` starts empty (a forced re-evaluation) but still saves to ``path``."""
        self.path = Path(path) if path is not None else None
        self._entries: dict[str, dict] = {}
        self._dirty = False
        self.warning: str | None = None
        if load and self.path is not None and self.path.is_file():
            try:
                content = json.loads(self.path.read_text())
                if content.get("version") == CACHE_VERSION:
                    self._entries = dict(content.get("entries", {}))
            except (OSError, ValueError, AttributeError) as err:
                self.warning = f"ignoring unreadable metrics cache {self.path} ({err}); it will be rebuilt"

    @staticmethod
    def metrics_key(result_bytes: bytes, gt_fingerprint: str, exclude_invalid_frames: bool) -> str:
        return _digest(b"metrics", result_bytes, gt_fingerprint.encode(), str(bool(exclude_invalid_frames)).encode())

    @staticmethod
    def timing_key(time_bytes: bytes) -> str:
        return _digest(b"timing", time_bytes)

    def get(self, key: str) -> dict | None:
        entry = self._entries.pop(key, None)
        if entry is not None:  # re-insert: dict order doubles as recency order (saved with the next change)
            self._entries[key] = entry
        return entry

    def put(self, key: str, value: dict) -> None:
        self._entries.pop(key, None)
        self._entries[key] = value
        self._dirty = True

    def get_metrics(self, key: str) -> tuple[SequenceMetrics, int] | None:
        """The metrics and the number of rows of the result file they were computed from, if cached."""
        entry = self.get(key)
        if entry is None:
            return None
        metrics = SequenceMetrics(success=np.asarray(entry["success"]), precision=np.asarray(entry["precision"]),
                                  norm_precision=np.asarray(entry["norm_precision"]),
                                  avg_overlap=float(entry["avg_overlap"]) if entry["avg_overlap"] is not None
                                  else float("nan"),
                                  num_frames=int(entry["num_frames"]),
                                  num_valid_frames=int(entry["num_valid_frames"]))
        return metrics, int(entry["result_rows"])

    def put_metrics(self, key: str, metrics: SequenceMetrics, result_rows: int) -> None:
        self.put(key, {"success": metrics.success.tolist(), "precision": metrics.precision.tolist(),
                       "norm_precision": metrics.norm_precision.tolist(),
                       "avg_overlap": None if math.isnan(metrics.avg_overlap) else metrics.avg_overlap,
                       "num_frames": metrics.num_frames, "num_valid_frames": metrics.num_valid_frames,
                       "result_rows": result_rows})

    def save(self) -> None:
        """Write the entries (the least recently used beyond the limit dropped) if anything changed."""
        if self.path is None or not self._dirty:
            return
        excess = len(self._entries) - CACHE_MAX_ENTRIES
        if excess > 0:
            for key in list(self._entries)[:excess]:
                del self._entries[key]
        atomic_write_text(self.path, json.dumps({"version": CACHE_VERSION, "entries": self._entries}))
        self._dirty = False
