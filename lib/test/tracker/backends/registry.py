"""The one list of back-end names: each name, what builds it and which options concern it; ``auto`` resolves
to one of them per machine (:mod:`.auto`)."""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from lib.test.tracker.backends.auto import AUTO, build_auto
from lib.test.tracker.backends.base import BackendError, NetworkBackend
from lib.test.tracker.backends.onnx_backend import OnnxBackend
from lib.test.tracker.backends.openvino_backend import OpenvinoBackend
from lib.test.tracker.backends.timing import TimedBackend
from lib.test.tracker.backends.torch_backends import AutocastBF16Backend, BF16Backend, EagerBackend

# Options that only one family understands: the others drop them, so one option set serves every back-end.
# The ONNX and OpenVINO back-ends share the export and its cache (EXPORT_OPTIONS).
EXPORT_OPTIONS = ("cache_dir", "exporter", "opset", "validate", "cache_max_entries", "torch_threads")
ORT_ONLY_OPTIONS = ("optimization", "spinning", "per_channel", "matmul_head")
ONNX_ONLY_OPTIONS = EXPORT_OPTIONS + ORT_ONLY_OPTIONS
OPENVINO_ONLY_OPTIONS = ("performance_hint", "calibration", "calibration_root", "calibration_crops",
                         "held_out_crops")
BF16_ONLY_OPTIONS = ("allow_emulated",)
AUTO_ONLY_OPTIONS = ("choice_dir", "candidates")


@dataclass(frozen=True)
class BackendSpec:
    """How to build one named back-end, and the options it silently ignores."""

    build: Callable[..., NetworkBackend]
    ignored_options: tuple[str, ...]

    def accepted_options(self) -> set[str]:
        """The constructor's keyword arguments after the model, less those the name itself fixes."""
        parameters = list(inspect.signature(self.build).parameters.values())[1:]
        fixed = set(getattr(self.build, "keywords", {}))  # e.g. int8=True for 'onnx-int8'
        return {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - fixed


TORCH_IGNORED = ONNX_ONLY_OPTIONS + OPENVINO_ONLY_OPTIONS + AUTO_ONLY_OPTIONS
ONNX_IGNORED = OPENVINO_ONLY_OPTIONS + BF16_ONLY_OPTIONS + AUTO_ONLY_OPTIONS
OPENVINO_IGNORED = ORT_ONLY_OPTIONS + BF16_ONLY_OPTIONS + AUTO_ONLY_OPTIONS

REGISTRY: dict[str, BackendSpec] = {
    "eager": BackendSpec(EagerBackend, TORCH_IGNORED + BF16_ONLY_OPTIONS),
    "bf16": BackendSpec(BF16Backend, TORCH_IGNORED),
    "bf16-autocast": BackendSpec(AutocastBF16Backend, TORCH_IGNORED),
    "bf16-compile": BackendSpec(functools.partial(BF16Backend, compile=True), TORCH_IGNORED),
    "onnx": BackendSpec(OnnxBackend, ONNX_IGNORED),
    "onnx-int8": BackendSpec(functools.partial(OnnxBackend, int8=True), ONNX_IGNORED),
    "openvino": BackendSpec(OpenvinoBackend, OPENVINO_IGNORED),
    "openvino-int8": BackendSpec(functools.partial(OpenvinoBackend, int8=True), OPENVINO_IGNORED),
}
# Every name a user may give: the concrete back-ends and 'auto' (the fastest of them that passes the accuracy
# gate here, see lib/test/tracker/backends/auto.py).
BACKENDS = (*REGISTRY, AUTO)


def build_backend(name: str, model: nn.Module, timed: bool = False, **options: Any) -> NetworkBackend | TimedBackend:
    """Back-end ``name`` (one of :data:`BACKENDS`) around ``model``; ``options`` go to its constructor.

    ``name`` 'auto' measures (once per machine and model, then cached) which back-end to build; the result's
    ``name`` is the one it resolved to. Options: ``threads`` (all); ``auto``: ``choice_dir``, ``candidates``;
    ONNX and OpenVINO: ``cache_dir``, ``exporter``, ``opset``, ``validate``, ``cache_max_entries``,
    ``torch_threads``; ONNX only: ``optimization``, ``spinning``, ``per_channel``, ``matmul_head``; OpenVINO
    only: ``performance_hint``, ``calibration``, ``calibration_root``, ``calibration_crops``, ``held_out_crops``;
    bf16: ``allow_emulated``.
    Each family ignores the other's options, so one option set can be passed to every back-end; anything else
    unknown is an error. ``timed=True`` wraps the result in a :class:`TimedBackend`.
    """
    key = str(name).lower().replace("_", "-")
    if key == AUTO:
        backend = build_auto(model, **options)
        return TimedBackend(backend) if timed else backend
    spec = REGISTRY.get(key)
    if spec is None:
        raise BackendError(f"unknown network back-end '{name}'; choose one of {list(BACKENDS)}")
    options = {option: value for option, value in options.items() if option not in spec.ignored_options}
    unknown = sorted(set(options) - spec.accepted_options())
    if unknown:
        raise BackendError(f"back-end '{key}': unexpected keyword argument(s) {unknown}; it accepts "
                           f"{sorted(spec.accepted_options())}")
    backend = spec.build(model, **options)
    return TimedBackend(backend) if timed else backend
