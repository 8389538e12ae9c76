"""Network back-ends for the tracker: the same OSTrack network run by eager fp32, bf16, ONNX Runtime or OpenVINO.

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
``onnx-int8``   that export with dynamic int8 quantisation of the backbone's MatMuls (per-channel
                weights, activations quantised per call); the head (its first 3x3 convolutions exported
                as one MatMul) and everything else stay fp32
``openvino``    the same fp32 ONNX export run by OpenVINO's CPU plugin (fp32 kept on bf16 CPUs too)
``openvino-int8``  static int8 of it (NNCF post-training quantisation): fixed activation scales calibrated
                on real template/search crops cut by our tracker (the embedded benchmark by default,
                :mod:`.calibration`), checked at build time against eager on held-out crops of other
                sequences (refused beyond the gate's 1e-2); cached next to the ONNX exports
``auto``        the fastest of the above that passes the accuracy gate on this machine and is at least
                1.1x eager fp32 (else eager): measured on first use, cached per CPU model, threads,
                model and library versions (:mod:`.auto`)
==============  =====================================================================================

Accuracy gate (:mod:`.gate`): a lossy back-end may stand in for eager fp32 on a machine only if its maps
deviate by at most 1e-2 (relative) and every box tracked from eager's state has IoU >= 0.95 with eager's;
``auto`` measures it here and says in one warning line which back-end failed, by how much.

bf16 needs a CPU with native bf16 arithmetic (AVX-512 BF16 or AMX); elsewhere the bf16 back-ends refuse
with an error naming the ONNX alternatives. ONNX files live in ``<save_dir>/cache/onnx/`` under a key
hashing the network structure and sizes, the weights, the model source files and the exporter, torch,
onnx and onnxruntime versions (:mod:`.onnx_cache`).

Modules: :mod:`.registry` (the names, :func:`build_backend`), :mod:`.base` (the contract), :mod:`.gate`,
:mod:`.auto`,
:mod:`.cpu_features`, :mod:`.torch_backends`, :mod:`.onnx_backend`, :mod:`.onnx_cache`, :mod:`.openvino_backend`,
:mod:`.calibration`, :mod:`.timing`.
"""
from lib.test.tracker.backends.auto import AUTO, AutoChoice, ChoiceCache, choice_key, choose_backend
from lib.test.tracker.backends.base import MAP_NAMES, BackendError, NetworkBackend
from lib.test.tracker.backends.cpu_features import cpu_flags, native_bf16_supported
from lib.test.tracker.backends.gate import (
    MAP_DEVIATION_LIMIT,
    SAME_STATE_IOU_LIMIT,
    GateResult,
    GateSequence,
    evaluate_gate,
    reference_run,
)
from lib.test.tracker.backends.onnx_backend import EXPORT_FORMAT_VERSION, OnnxBackend
from lib.test.tracker.backends.onnx_cache import OnnxCache, sources_digest, weights_digest
from lib.test.tracker.backends.openvino_backend import OpenvinoBackend
from lib.test.tracker.backends.registry import BACKENDS, REGISTRY, build_backend
from lib.test.tracker.backends.timing import TimedBackend
from lib.test.tracker.backends.torch_backends import AutocastBF16Backend, BF16Backend, EagerBackend

__all__ = ["AUTO", "BACKENDS", "EXPORT_FORMAT_VERSION", "MAP_DEVIATION_LIMIT", "MAP_NAMES", "REGISTRY",
           "SAME_STATE_IOU_LIMIT", "AutoChoice", "AutocastBF16Backend", "BF16Backend", "BackendError", "ChoiceCache",
           "EagerBackend", "GateResult", "GateSequence", "NetworkBackend", "OnnxBackend", "OnnxCache",
           "OpenvinoBackend", "TimedBackend", "build_backend", "choice_key", "choose_backend", "cpu_flags",
           "evaluate_gate", "native_bf16_supported", "reference_run", "sources_digest", "weights_digest"]
