"""The OpenVINO back-ends: the cached fp32 ONNX export run by OpenVINO's CPU plugin, in fp32 or static int8.

``openvino-int8`` is post-training static quantisation (NNCF) of that model, calibrated on real template/search
crops cut by our own tracker (:mod:`.calibration`): every activation gets a fixed scale, so a frame's result does
not depend on what else is in its batch (unlike dynamic int8, which quantises a whole batch with one scale). The
int8 model is cached next to the ONNX exports under a key holding the fp32 export, the calibration crops' digest,
the quantisation settings and the NNCF / OpenVINO versions; at build time its relative map deviation from eager
fp32 is measured on held-out crops (other sequences than the calibration ones) and a model beyond the gate's
limit is refused with the measured figure.
"""
from __future__ import annotations

import contextlib
import ctypes
import io
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lib.test.tracker.backends.base import MAP_NAMES, BackendError, NetworkBackend, quiet, with_boxes
from lib.test.tracker.backends.calibration import EMBEDDED, CalibrationData, CropSet, calibration_data
from lib.test.tracker.backends.cpu_features import int8_dot_product_supported
from lib.test.tracker.backends.gate import MAP_DEVIATION_LIMIT, exported_deviation
from lib.test.tracker.backends.onnx_cache import OnnxCache, default_cache_dir

log = logging.getLogger(__name__)

# Bump when the int8 model changes for reasons its cache key does not capture.
INT8_FORMAT_VERSION = 1
IR_SUFFIX = ".ovir"  # one file: a JSON header line, the IR's XML, then its weights
# Static int8 settings: NNCF's transformer preset (SmoothQuant, its attention patterns) with the box head left
# in fp32 (quantising its convolutions tripled the score map's deviation). Without VNNI, int8 products are
# summed in saturating 16-bit pairs, so weights are quantised to 7 bits there (NNCF's overflow fix), as the
# ONNX back-end's reduce_range does; that lowered the map deviation 4x on such a CPU.
QUANTIZATION = {"model_type": "transformer", "fast_bias_correction": True, "ignored": "box_head"}


class IrCache(OnnxCache):
    """The ONNX cache's folder, locking, checksums and pruning, for OpenVINO IR files (``<digest>.ovir``)."""

    suffix = IR_SUFFIX


def import_openvino(name: str, with_nncf: bool = False) -> Any:
    try:
        import openvino as ov

        if with_nncf:
            import nncf  # noqa: F401
    except ImportError as err:
        what = "openvino and nncf" if with_nncf else "openvino"
        raise BackendError(f"back-end '{name}' needs {what} ({err}); install them (bash install.sh), or use "
                           "'onnx' / 'onnx-int8'") from None
    return ov


def write_ir(model: Any, target: Path, header: dict[str, Any]) -> None:
    """``model`` (an ``openvino.Model``) as one file: JSON header line, XML, weights."""
    import openvino as ov

    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".ir-") as folder:
        xml = Path(folder) / "model.xml"
        ov.save_model(model, xml, compress_to_fp16=False)
        xml_bytes, weights = xml.read_bytes(), xml.with_suffix(".bin").read_bytes()
    line = json.dumps({**header, "xml_bytes": len(xml_bytes)}).encode() + b"\n"
    with open(target, "wb") as handle:
        handle.write(line)
        handle.write(xml_bytes)
        handle.write(weights)


def read_ir(core: Any, path: Path) -> tuple[Any, dict[str, Any]]:
    """The model and header stored by :func:`write_ir`."""
    import openvino as ov

    data = path.read_bytes()
    end = data.index(b"\n")
    header = json.loads(data[:end])
    xml_end = end + 1 + header["xml_bytes"]
    weights = ov.Tensor(np.frombuffer(data, dtype=np.uint8, offset=xml_end).copy())
    return core.read_model(data[end + 1:xml_end].decode(), weights), header


def cpu_properties(threads: int, performance_hint: str = "LATENCY") -> dict[str, Any]:
    """Latency on few cores: one stream of ``threads`` threads, fp32 wherever int8 is not used."""
    return {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": performance_hint,
            "INFERENCE_PRECISION_HINT": "f32"}


class OpenvinoBackend(NetworkBackend):
    """The network's cached fp32 ONNX export (made by :class:`~.onnx_backend.OnnxBackend`) on OpenVINO's CPU
    plugin; ``int8=True``: NNCF static int8 of it, calibrated on tracker crops.

    ``threads``: inference threads (default: torch's thread count); ``performance_hint``: 'LATENCY' (default,
    one stream) or 'THROUGHPUT'; ``cache_dir``, ``exporter``, ``opset``, ``validate``, ``cache_max_entries``:
    as for the ONNX back-ends (the same export is shared); ``torch_threads``: torch's threads afterwards (default
    1: the network runs in OpenVINO, torch only does the tracker's small tensor work);
    ``calibration``: the dataset to cut calibration and held-out crops from (a benchmark name of
    :func:`~lib.test.evaluation.datasets.get_dataset`, default the embedded benchmark), or a ready
    :class:`~.calibration.CalibrationData`; ``calibration_root``: that dataset's folder;
    ``calibration_crops`` / ``held_out_crops``: how many crops of each.
    Non-quantised operations stay in fp32 on every CPU (``INFERENCE_PRECISION_HINT`` f32: no silent bf16).
    """

    name = "openvino"
    supports_batch = True  # dynamic batch axis; static int8 scales make frames independent of their batch mates

    def __init__(self, model: nn.Module, threads: int | None = None, int8: bool = False,
                 cache_dir: str | Path | None = None, exporter: str = "legacy", opset: int | None = None,
                 validate: bool = True, cache_max_entries: int = 8, torch_threads: int | None = 1,
                 performance_hint: str = "LATENCY", calibration: str | CalibrationData = EMBEDDED,
                 calibration_root: str | Path | None = None, calibration_crops: int = 64,
                 held_out_crops: int = 32) -> None:
        super().__init__(model)
        self.name = "openvino-int8" if int8 else "openvino"
        ov = import_openvino(self.name, with_nncf=int8)
        if performance_hint not in ("LATENCY", "THROUGHPUT"):
            raise BackendError(f"unknown OpenVINO performance hint '{performance_hint}'; use 'LATENCY' or "
                               "'THROUGHPUT'")
        self.int8 = int8
        self.threads = threads or torch.get_num_threads()  # read before torch_threads changes it
        self.performance_hint = performance_hint
        self.seven_bit = not int8_dot_product_supported()  # see QUANTIZATION
        start = time.perf_counter()
        onnx_path, self.onnx_cache_hit = self._fp32_onnx(cache_dir, exporter, opset, validate, cache_max_entries)
        self.core = ov.Core()
        self.held_out: dict[str, Any] | None = None
        if int8:
            data = calibration if isinstance(calibration, CalibrationData) else calibration_data(
                model, calibration, calibration_root, calibration_crops, held_out_crops)
            self.calibration_source = data.source
            cache = IrCache(onnx_path.parent, max_entries=cache_max_entries)
            key = self._int8_key(onnx_path, data)
            self.path, self.cache_hit = cache.get_or_build(key, lambda target: self._quantise(onnx_path, data,
                                                                                               target))
            network, header = read_ir(self.core, self.path)
            self.held_out = header["held_out"]
            if self.held_out["map_deviation"] > MAP_DEVIATION_LIMIT:
                raise BackendError(f"back-end 'openvino-int8' fails the accuracy gate on held-out crops: relative "
                                   f"map deviation {self.held_out['map_deviation']:.1e} (limit "
                                   f"{MAP_DEVIATION_LIMIT:.0e}) over {self.held_out['crops']} crops of "
                                   f"{data.source}; use 'openvino' or 'onnx-int8'")
        else:
            self.path, self.cache_hit = onnx_path, self.onnx_cache_hit
            network = self.core.read_model(str(onnx_path))
        self.supports_batch = network.inputs[0].get_partial_shape()[0].is_dynamic
        with kept_signal_stack():
            self.compiled = self.core.compile_model(network, "CPU", self.compile_properties())
        self.request = self.compiled.create_infer_request()
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]
        self.torch_threads = torch_threads
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.build_seconds = time.perf_counter() - start

    def compile_properties(self) -> dict[str, Any]:
        return cpu_properties(self.threads, self.performance_hint)

    def _fp32_onnx(self, cache_dir, exporter, opset, validate, cache_max_entries) -> tuple[Path, bool]:
        """The ONNX back-end's cached fp32 export (exported and checked against eager on first use)."""
        from lib.test.tracker.backends.onnx_backend import OnnxBackend

        onnx = OnnxBackend(self.model, threads=1, cache_dir=cache_dir if cache_dir is not None else
                           default_cache_dir(), optimization="disable", exporter=exporter, opset=opset,
                           validate=validate, cache_max_entries=cache_max_entries, torch_threads=None)
        return onnx.path, onnx.cache_hit

    # -- static int8
    def _int8_key(self, onnx_path: Path, data: CalibrationData) -> dict[str, Any]:
        """The fp32 export (its cache digest), the crops (the held-out ones too: the file records their
        deviation), the quantisation settings and the library versions."""
        import nncf
        import openvino as ov

        return {"kind": "openvino-int8-static", "format": INT8_FORMAT_VERSION, "fp32_onnx": onnx_path.stem,
                "calibration": data.calibration.digest(), "held_out": data.held_out.digest(),
                "quantization": QUANTIZATION, "seven_bit_weights": self.seven_bit, "nncf": nncf.__version__,
                "openvino": ov.__version__}

    def _quantise(self, onnx_path: Path, data: CalibrationData, target: Path) -> None:
        log.info("quantising the network to static int8 on %d crops of %s -> %s", len(data.calibration),
                 data.source, target)
        int8 = quantize_static_ir(self.core, onnx_path, data.calibration, self.seven_bit)
        with kept_signal_stack():
            compiled = self.core.compile_model(int8, "CPU", self.compile_properties())
        held_out = held_out_deviation(self.model, compiled, data.held_out)
        log.info("static int8: relative map deviation %.2e on %d held-out crops", held_out["map_deviation"],
                 held_out["crops"])
        write_ir(int8, target, {"held_out": held_out, "calibration": data.source})

    # -- inference
    def __call__(self, template, search, ce_template_mask=None):
        inputs = [template, search]
        if self.uses_ce_mask:
            if ce_template_mask is None:
                raise ValueError("this CE network needs its template mask (model.make_ce_template_mask(...))")
            inputs.append(ce_template_mask.to(torch.bool))
        feed = {name: t.detach().cpu().contiguous().numpy() if t.dtype == torch.bool else
                t.detach().cpu().float().contiguous().numpy() for name, t in zip(self.input_names, inputs,
                                                                                 strict=True)}
        outputs = self.request.infer(feed)
        return with_boxes({name: torch.from_numpy(np.array(outputs[port])) for name, port in
                           zip(MAP_NAMES, self.compiled.outputs, strict=True)})

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(file=str(self.path), cache_hit=self.cache_hit, performance_hint=self.performance_hint,
                    torch_threads=self.torch_threads)
        if self.int8:
            info.update(calibration=self.calibration_source, held_out=self.held_out, quantization=QUANTIZATION,
                        seven_bit_weights=self.seven_bit)
        return info


def quantize_static_ir(core: Any, onnx_path: Path, crops: CropSet, seven_bit: bool) -> Any:
    """NNCF static int8 (:data:`QUANTIZATION`) of the fp32 ONNX file at ``onnx_path``, calibrated on ``crops``;
    ``seven_bit``: 7-bit weights for CPUs without VNNI. Returns the ``openvino.Model`` (not yet verified)."""
    import nncf
    from nncf.quantization.advanced_parameters import OverflowFix

    fp32 = core.read_model(str(onnx_path))
    names = [port.get_any_name() for port in fp32.inputs]
    dataset = nncf.Dataset(list(crops.each()), lambda inputs: dict(zip(names, (t.numpy() for t in inputs),
                                                                        strict=True)))
    overflow_fix = OverflowFix.ENABLE if seven_bit else OverflowFix.DISABLE
    with quiet(), _nncf_silenced(), kept_signal_stack():
        return nncf.quantize(fp32, dataset, subset_size=len(crops), model_type=nncf.ModelType.TRANSFORMER,
                             fast_bias_correction=QUANTIZATION["fast_bias_correction"],
                             ignored_scope=head_scope(fp32),
                             advanced_parameters=nncf.AdvancedQuantizationParameters(overflow_fix=overflow_fix))


class _SignalStack(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@contextlib.contextmanager
def kept_signal_stack() -> Iterator[None]:
    """Keep this thread's alternate signal stack across OpenVINO compilations.

    Compiling a model installs a signal stack of OpenVINO's own on the calling thread, and freeing the model
    puts back what was there before; models freed out of creation order leave a freed stack installed, and the
    next signal handled on it (the SIGCHLD of a DataLoader's handler, say) kills the process with SIGSEGV.
    Putting the thread's stack back at once keeps it valid for the whole process (Linux; a no-op elsewhere).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        sigaltstack = libc.sigaltstack
    except (OSError, AttributeError):
        yield
        return
    saved = _SignalStack()
    if sigaltstack(None, ctypes.byref(saved)) != 0:
        yield
        return
    try:
        yield
    finally:
        sigaltstack(ctypes.byref(saved), None)


@contextlib.contextmanager
def _nncf_silenced() -> Iterator[None]:
    """NNCF logs every quantiser decision at INFO through its own handler and draws progress bars on stdout."""
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        nncf_log.setLevel(level)


def head_scope(model: Any) -> Any:
    """NNCF's ignored scope for the box head (every operation after the backbone's last block)."""
    import nncf

    names = [op.get_friendly_name() for op in model.get_ordered_ops()
             if QUANTIZATION["ignored"] in op.get_friendly_name()]
    return nncf.IgnoredScope(names=names, validate=False) if names else None


def held_out_deviation(model: nn.Module, compiled: Any, crops: CropSet) -> dict[str, Any]:
    """The gate's relative map deviation of ``compiled`` from eager fp32 ``model`` over the held-out crops."""
    deviation = exported_deviation(model, compiled_runner(compiled), crops.each())
    return {"map_deviation": max(d["rel"] for d in deviation.values()), "deviation": deviation,
            "crops": len(crops), "sequences": list(crops.sequences)}


def compiled_runner(compiled: Any) -> Callable[[Sequence[torch.Tensor]], list[np.ndarray]]:
    """A compiled OpenVINO model as a function of one input set in graph order (for
    :func:`~.gate.exported_deviation`)."""
    def run(inputs: Sequence[torch.Tensor]) -> list[np.ndarray]:
        result = compiled([t.numpy() for t in inputs])
        return [np.array(result[port]) for port in compiled.outputs]

    return run
