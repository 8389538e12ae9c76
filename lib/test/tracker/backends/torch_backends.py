"""The PyTorch back-ends: eager fp32 (the reference), a bf16 copy (optionally compiled) and bf16 autocast."""
from __future__ import annotations

import copy
import time

import torch
from torch import nn

from lib.test.tracker.backends.base import MAP_NAMES, MapsOnly, NetworkBackend, quiet, with_boxes
from lib.test.tracker.backends.cpu_features import require_native_bf16


class EagerBackend(NetworkBackend):
    """The PyTorch model as it is, in fp32: the reference every other back-end is measured against.

    A batch gives every sample bit for bit the maps it gets alone (see :func:`batch_invariant_maps`), so that
    a lockstep benchmark run writes the same boxes as one sequence at a time.
    """

    name = "eager"
    supports_batch = True

    def __init__(self, model: nn.Module, threads: int | None = None) -> None:
        super().__init__(model)
        self.use_torch_threads(threads)

    @torch.no_grad()
    def __call__(self, template, search, ce_template_mask=None):
        if template.shape[0] == 1:
            return self.model(template, search, ce_template_mask=ce_template_mask)
        return batch_invariant_maps(self.model, template, search, ce_template_mask)


def batch_invariant_maps(model: nn.Module, template: torch.Tensor, search: torch.Tensor,
                         ce_template_mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The maps (+ ``pred_boxes``) of a batch, each sample's equal to the model's output for it alone.

    The backbone runs batched: its matrix products, attention and normalisations compute each row the same
    way whatever the batch. The box head runs per sample: PyTorch convolves a batch of one with its native
    kernel and a larger batch with oneDNN's (``use_mkldnn`` looks at the batch size), which differ in the last
    bits; and its input is reshaped per sample, since the convolution picks its path from the strides too,
    the size-1 batch dimension's included. That is the price of identical boxes: on LoReTrack-128 (2 loaded
    cores) the head run per sample took 11-19 % of a batch-16 call, against 5-6 % batched.
    """
    feats = model.backbone(template, search, ce_template_mask=ce_template_mask)
    tokens = feats.tokens[:, -model.backbone.num_search_tokens:]
    size = model.search_feat_size
    per_sample = [model.box_head(sample.transpose(1, 2).reshape(1, sample.shape[2], size, size))  # as OSTrack.forward
                  for sample in tokens.split(1)]
    return {name: torch.cat([maps[name] for maps in per_sample]) for name in (*MAP_NAMES, "pred_boxes")}


class BF16Backend(NetworkBackend):
    """A bfloat16 copy of the network (the fp32 model is left untouched); outputs come back as fp32.

    ``compile=True`` runs that copy through ``torch.compile`` with inductor's weight freezing, which
    pre-packs the bf16 weights for oneDNN (measured 1.3x over the plain bf16 copy on ViT-B 128/64).
    """

    name = "bf16"
    supports_batch = True

    def __init__(self, model: nn.Module, threads: int | None = None, compile: bool = False,
                 allow_emulated: bool = False) -> None:
        super().__init__(model)
        self.name = "bf16-compile" if compile else "bf16"
        require_native_bf16(self.name, allow_emulated)
        self.use_torch_threads(threads)
        start = time.perf_counter()
        self.net = MapsOnly(copy.deepcopy(model).to(torch.bfloat16), self.uses_ce_mask).eval()
        self.compiled = compile
        self.supports_batch = not compile  # the compiled graph is specialised to batch 1 (dynamic=False)
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
    supports_batch = True

    def __init__(self, model: nn.Module, threads: int | None = None, allow_emulated: bool = False) -> None:
        super().__init__(model)
        require_native_bf16(self.name, allow_emulated)
        self.use_torch_threads(threads)

    @torch.no_grad()
    def __call__(self, template, search, ce_template_mask=None):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.model(template, search, ce_template_mask=ce_template_mask)
        return with_boxes({name: out[name].float() for name in MAP_NAMES})
