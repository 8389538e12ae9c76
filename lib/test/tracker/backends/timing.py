"""A timing wrapper around any back-end: profilers read the network's share of each tracked frame from it,
so nobody replaces the tracker's ``network_fn`` from outside."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from lib.utils.profiling import Timing, wall_clock

NetworkCallable = Callable[..., Mapping[str, torch.Tensor]]


class TimedBackend:
    """``backend(template, search, ce_template_mask)`` as the wrapped one, recording each call's wall time.

    ``samples_ms`` holds one entry per call, in call order; calls on accelerator tensors wait for the
    accelerator before reading the clock, so a sample is the computation and not its launch. Any other
    attribute (``name``, ``threads``, ``describe()``, ...) is the wrapped back-end's.
    """

    def __init__(self, backend: NetworkCallable) -> None:
        self.backend = backend
        self.samples_ms: list[float] = []

    def __call__(self, template: torch.Tensor, search: torch.Tensor,
                 ce_template_mask: torch.Tensor | None = None) -> Mapping[str, torch.Tensor]:
        clock = wall_clock(synchronize=template.device.type != "cpu")
        start = clock()
        out = self.backend(template, search, ce_template_mask)
        self.samples_ms.append((clock() - start) * 1000)
        return out

    def __getattr__(self, name: str) -> Any:
        # "backend" itself is missing only while copying or unpickling; dunders stay this class's own
        if name == "backend" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.backend, name)

    def reset(self) -> None:
        """Forget the samples so far (e.g. those of warm-up calls)."""
        self.samples_ms.clear()

    def timing(self) -> Timing:
        """Median, mean and p90 of the samples recorded since the last :meth:`reset`."""
        return Timing.from_samples(self.samples_ms)
