"""The PyTorch back-ends: eager fp32 (the reference), a bf16 copy (optionally compiled) and bf16 autocast."""
from __future__ import annotations

import copy
import time

import torch
from torch import nn

from lib.test.tracker.backends.base import MAP_NAMES, MapsOnly, NetworkBackend, quiet, with_boxes
from lib.test.tracker.backends.cpu_features import require_native_bf16


class EagerBackend(NetworkBackend):
    """The PyTorch model as it is, in fp32: the reference every other back-end is measured against."""

    name = "eager"

    def __init__(self, model: nn.Module, threads: int | None = None) -> None:
        super().__init__(model)
        self.use_torch_threads(threads)

    @torch.no_grad()
    def __call__(self, template, search, ce_template_mask=None):
        return self.model(template, search, ce_template_mask=ce_template_mask)


class BF16Backend(NetworkBackend):
    """A bfloat16 copy of the network (the fp32 model is left untouched); outputs come back as fp32.

    ``compile=True`` runs that copy through ``torch.compile`` with inductor's weight freezing, which
    pre-packs the bf16 weights for oneDNN (measured 1.3x over the plain bf16 copy on ViT-B 128/64).
    """

    name = "bf16"

    def __init__(self, model: nn.Module, threads: int | None = None, compile: bool = False,
                 allow_emulated: bool = False) -> None:
        super().__init__(model)
        self.name = "bf16-compile" if compile else "bf16"
        require_native_bf16(self.name, allow_emulated)
        self.use_torch_threads(threads)
        start = time.perf_counter()
        self.net = MapsOnly(copy.deepcopy(model).to(torch.bfloat16), self.uses_ce_mask).eval()
        self.compiled = compile
        if compile:
            self._compile()
        self.build_seconds = time.perf_counter() - start

    def _compile(self) -> None:
        import torch._inductor.config as inductor_config

        net = torch.compile(self.net, dynamic=False)
        inputs = self.model.example_inputs(device="cpu", dtype=torch.bfloat16)
        # Freezing has to be on when the graph is compiled, i.e. at the first call.
        with inductor_config.patch(freezing=True), torch.no_grad(), quiet():
            net(*inputs)
        self.net = net

    @torch.no_grad()
    def __call__(self, template, search, ce_template_mask=None):
        maps = self.net(template.to(torch.bfloat16), search.to(torch.bfloat16), ce_template_mask)
        return with_boxes({name: m.float() for name, m in zip(MAP_NAMES, maps, strict=True)})


class AutocastBF16Backend(NetworkBackend):
    """The fp32 model under CPU autocast: matmuls/convs in bf16, normalisations and softmax in fp32."""

    name = "bf16-autocast"

    def __init__(self, model: nn.Module, threads: int | None = None, allow_emulated: bool = False) -> None:
        super().__init__(model)
        require_native_bf16(self.name, allow_emulated)
        self.use_torch_threads(threads)

    @torch.no_grad()
    def __call__(self, template, search, ce_template_mask=None):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.model(template, search, ce_template_mask=ce_template_mask)
        return with_boxes({name: out[name].float() for name in MAP_NAMES})
