"""A bounded in-memory cache of decoded training frames.

Small datasets (the embedded demo benchmark: ~2,400 frames of 320x240) are drawn from thousands of times per
epoch, and with few CPU cores decoding the same JPEGs again is a tenth of a tiny model's training step. Large
datasets simply see a low hit rate; the cache never holds more than its byte budget. Each DataLoader worker
process has its own copy, so the budget applies per process.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np


class FrameCache:
    """Least-recently-used decoded frames up to ``max_bytes``; callers get copies, so in-place augmentation
    never alters a cached frame."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("a FrameCache needs a positive byte budget")
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._frames: OrderedDict[Hashable, np.ndarray] = OrderedDict()

    def get(self, key: Hashable, load: Callable[[], np.ndarray]) -> np.ndarray:
        frame = self._frames.get(key)
        if frame is not None:
            self._frames.move_to_end(key)
            self.hits += 1
            return frame.copy()
        self.misses += 1
        frame = load()
        if frame.nbytes <= self.max_bytes:
            self._frames[key] = frame.copy()
            self.bytes += frame.nbytes
            while self.bytes > self.max_bytes:
                _, evicted = self._frames.popitem(last=False)
                self.bytes -= evicted.nbytes
        return frame

    def __len__(self) -> int:
        return len(self._frames)
