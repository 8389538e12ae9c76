"""Per-epoch accounting of the pair draws the sampler had to redraw, and the stop when too many failed.

The sampler redraws a pair that fails (unreadable frame, bad annotation, bad value) and counts it by cause in
each sample; the trainer sums those counts (``trainer.skipped``). This hook turns them into one log line per
epoch and stops the run when more than ``max_failed_share`` of an epoch's draws failed: a dataset that fails
that often is broken, and training on the rest would silently change what the model learns.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping

import torch
import torch.distributed as dist

from lib.train.data.sampler import FAILED
from lib.train.trainer import HookBase
from lib.utils.errors import DatasetError

log = logging.getLogger("lib.train")

#: mid-epoch, the share is judged once at least this many draws were made (too noisy before)
MIN_DRAWS_TO_JUDGE = 1000
CHECK_EVERY_STEPS = 50


class DataFailureError(DatasetError):
    """Too many training pairs failed to load or process in one epoch."""


class DataHealthHook(HookBase):
    """Logs the redrawn pairs of each epoch by cause; stops past ``max_failed_share`` of failed draws."""

    def __init__(self, max_failed_share: float, batch_size: int, is_main: bool = True) -> None:
        self.max_failed_share = max_failed_share
        self.batch_size = batch_size
        self.is_main = is_main
        self.history: list[dict[str, int]] = []
        self._start: Counter = Counter()
        self._first_iteration = 0

    def before_epoch(self) -> None:
        self._start = Counter(self.trainer.skipped)
        self._first_iteration = self.trainer.iteration

    def after_step(self, status: Mapping[str, float]) -> None:
        steps = self.trainer.iteration - self._first_iteration
        if steps % CHECK_EVERY_STEPS == 0:
            self._judge(final=False)

    def after_epoch(self) -> None:
        counts, drawn = self._judge(final=True)
        self.history.append({"epoch": self.trainer.epoch, "pairs": drawn, **counts})
        if self.is_main and counts:
            failed = sum(v for k, v in counts.items() if k.startswith(FAILED))
            causes = ", ".join(f"{cause} {count}" for cause, count in Counter(counts).most_common())
            log.info("epoch %d data: %d pair(s) used, %d draw(s) redrawn (%d failed): %s", self.trainer.epoch,
                     drawn, sum(counts.values()), failed, causes)

    def _judge(self, final: bool) -> tuple[dict[str, int], int]:
        """This epoch's redraws by cause (summed over ranks) and pairs used; raises past the threshold."""
        counts = Counter(self.trainer.skipped)
        counts.subtract(self._start)
        causes = sorted(cause for cause, count in counts.items() if count > 0)
        drawn = (self.trainer.iteration - self._first_iteration) * self.batch_size
        values = [drawn] + [counts[c] for c in causes]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            causes, values = self._sum_over_ranks(values, causes)
        drawn, per_cause = values[0], dict(zip(causes, values[1:], strict=True))
        failures = {cause: count for cause, count in per_cause.items() if cause.startswith(FAILED) and count}
        attempts = drawn + sum(per_cause.values())
        if (final or attempts >= MIN_DRAWS_TO_JUDGE) and attempts:
            share = sum(failures.values()) / attempts
            if share > self.max_failed_share:
                top, top_count = Counter(failures).most_common(1)[0]
                raise DataFailureError(
                    f"training stopped in epoch {self.trainer.current_epoch}: {sum(failures.values())} of "
                    f"{attempts} pair draws ({share:.0%}) failed, more than DATA.MAX_FAILED_DRAW_SHARE = "
                    f"{self.max_failed_share:g}; top cause: {top.removeprefix(FAILED)} ({top_count} draws, the "
                    "log names the files); fix the data or raise DATA.MAX_FAILED_DRAW_SHARE")
        return per_cause, drawn

    def _sum_over_ranks(self, values: list[int], causes: list[str]) -> tuple[list[str], list[int]]:
        """Every rank must take the same decision: gather the cause names, then sum the counts."""
        gathered: list[list[str]] = [[] for _ in range(dist.get_world_size())]
        dist.all_gather_object(gathered, causes)
        all_causes = sorted({c for rank_causes in gathered for c in rank_causes})
        local = dict(zip(causes, values[1:], strict=True))
        tensor = torch.tensor([values[0]] + [local.get(c, 0) for c in all_causes], dtype=torch.float64,
                              device=self.trainer.device)
        dist.all_reduce(tensor)
        return all_causes, [int(v) for v in tensor.tolist()]
