"""What every back-end shares: the call contract, its error type and the maps-only view of the network."""
from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from lib.models.head import decode_boxes
from lib.utils.errors import UserError

MAP_NAMES = ("score_map", "size_map", "offset_map")


class BackendError(UserError):
    """A back-end cannot be used here (unknown name, unsupported CPU, bad option)."""


def uses_ce_mask(model: nn.Module) -> bool:
    """Whether the network takes a CE template mask (CE on and not averaging over all template rows)."""
    return bool(model.backbone.ce_loc) and getattr(model, "ce_template_range", "ALL") != "ALL"


def with_boxes(maps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add ``pred_boxes`` decoded from the maps, as the eager model returns them."""
    maps["pred_boxes"] = decode_boxes(maps["score_map"], maps["size_map"], maps["offset_map"]).unsqueeze(1)
    return maps


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the exporters' and quantiser's warnings (they are about the tracing, not the user's code)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


class MapsOnly(nn.Module):
    """The network with plain tensor outputs (score, size, offset maps), for export and compilation."""

    def __init__(self, model: nn.Module, with_mask: bool) -> None:
        super().__init__()
        self.model = model
        self.with_mask = with_mask

    def forward(self, template: torch.Tensor, search: torch.Tensor,
                ce_template_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        out = self.model(template, search, ce_template_mask=ce_template_mask if self.with_mask else None)
        return tuple(out[name] for name in MAP_NAMES)


class NetworkBackend:
    """Base class: ``backend(template, search, ce_template_mask)`` -> maps (+ ``pred_boxes``), fp32 CPU.

    ``supports_batch``: whether one call may carry the frames of several sequences (batch axis > 1, for
    lockstep benchmark runs) with every sample's maps what that sample alone would give, up to the
    back-end's accuracy gate. A back-end whose result for one sample depends on its batch mates (dynamic
    int8: one activation scale for the whole batch) or that cannot take a batch (a fixed-batch export, a
    graph compiled for batch 1) leaves it False, and batched callers then run the samples one by one.
    """

    name = "base"
    supports_batch = False

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()
        self.uses_ce_mask = uses_ce_mask(model)
        self.build_seconds = 0.0
        self.threads = torch.get_num_threads()  # the network's CPU threads (subclasses update it)

    def use_torch_threads(self, threads: int | None) -> None:
        """Give torch ``threads`` intra-op threads (None or 0: leave torch's setting alone)."""
        if threads:
            torch.set_num_threads(threads)
            self.threads = threads

    def __call__(self, template: torch.Tensor, search: torch.Tensor,
                 ce_template_mask: torch.Tensor | None = None) -> Mapping[str, torch.Tensor]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What was built, for logs and benchmark tables."""
        info = {"backend": self.name, "build_seconds": round(self.build_seconds, 2), "threads": self.threads,
                "supports_batch": self.supports_batch}
        choice = getattr(self, "auto_choice", None)  # set when 'auto' resolved to this back-end
        if choice is not None:
            info["auto"] = {"speedup": round(choice.speedup, 3), "cached": choice.cached, "measured": choice.measured}
        return info
