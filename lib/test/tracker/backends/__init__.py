"""Network back-ends for the tracker: the same OSTrack network run by eager fp32, bf16 or ONNX Runtime.

A back-end is a callable ``backend(template, search, ce_template_mask) -> {'score_map', 'size_map',
'offset_map', 'pred_boxes', ...}`` (the tracker's ``network_fn``); build one by name::

    backend = build_backend("onnx-int8", model, threads=2)
    timed = build_backend("onnx-int8", model, timed=True)   # the same, recording each call's time

==============  =====================================================================================
``eager``       the PyTorch model in fp32 (reference, default)
``bf16``        a bfloat16 copy of the model (weights cast once, no autocast bookkeeping per op)
``bf16-autocast``  the fp32 model under ``torch.autocast('cpu', bfloat16)``
``bf16-compile``   the bf16 copy through ``torch.compile`` (inductor, frozen + pre-packed weights);
                the first build compiles for about a minute, later processes reuse inductor's cache
``onnx``        the network exported once to ONNX, run by ONNX Runtime (CPU, fp32)
``onnx-int8``   that export with dynamic int8 quantisation of every MatMul with constant weights
                (per-channel weights, activations quantised per call); the head's first 3x3
                convolutions are exported as one MatMul to be quantised too; the rest stays fp32
==============  =====================================================================================

bf16 needs a CPU with native bf16 arithmetic (AVX-512 BF16 or AMX); elsewhere the bf16 back-ends refuse
with an error naming the ONNX alternatives. ONNX files live in ``<save_dir>/cache/onnx/`` under a key
hashing the network structure and sizes, the weights, the model source files and the exporter, torch,
onnx and onnxruntime versions (:mod:`.onnx_cache`).

Modules: :mod:`.registry` (the names, :func:`build_backend`), :mod:`.base` (the contract),
:mod:`.cpu_features`, :mod:`.torch_backends`, :mod:`.onnx_backend`, :mod:`.onnx_cache`, :mod:`.timing`.
"""
from lib.test.tracker.backends.base import MAP_NAMES, BackendError, NetworkBackend
from lib.test.tracker.backends.cpu_features import cpu_flags, native_bf16_supported
from lib.test.tracker.backends.onnx_backend import EXPORT_FORMAT_VERSION, OnnxBackend
from lib.test.tracker.backends.onnx_cache import OnnxCache, sources_digest, weights_digest
from lib.test.tracker.backends.registry import BACKENDS, REGISTRY, build_backend
from lib.test.tracker.backends.timing import TimedBackend
from lib.test.tracker.backends.torch_backends import AutocastBF16Backend, BF16Backend, EagerBackend

__all__ = ["BACKENDS", "EXPORT_FORMAT_VERSION", "MAP_NAMES", "REGISTRY", "AutocastBF16Backend", "BF16Backend",
           "BackendError", "EagerBackend", "NetworkBackend", "OnnxBackend", "OnnxCache", "TimedBackend",
           "build_backend", "cpu_flags", "native_bf16_supported", "sources_digest", "weights_digest"]
