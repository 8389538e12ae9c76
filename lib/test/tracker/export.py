"""Deployable network files (``tracking/export_model.py``): ONNX or OpenVINO IR, in fp32 or int8, each verified
against eager fp32 when it is written and carrying, as metadata, everything a tracker needs besides the file itself.

A file has a dynamic batch axis on every input and output (``batch``). Its metadata (ONNX ``metadata_props``, or
the IR's ``rt_info`` under ``loretrack``; every value JSON-encoded, read back by :func:`read_metadata`) names the
crop sizes and factors, the normalisation, the feature-map size, whether a candidate-elimination mask is an input
and how to make it, the post-processing, the model's digests, the library versions and the verification that was
passed; ``tracking/track_exported.py`` tracks with nothing else.

Verification, measured on the written file with ONNX Runtime (CPU) against the eager model, per map (score,
size, offset): ``max |file - eager| / max |eager|`` over all inputs (:func:`lib.test.tracker.backends.gate.
map_deviation`).
- fp32: seeded random crops at batch 1 and batch 3, limit :data:`FP32_MAP_LIMIT` (anything above is an
  exporter bug);
- int8: held-out real crops (other sequences than the calibration crops), batch 1, the accuracy gate's
  limit :data:`~lib.test.tracker.backends.gate.MAP_DEVIATION_LIMIT`. Static int8 (QDQ, activation scales fixed
  from calibration crops: batch mates never interact) is tried first; dynamic int8 (activation scales computed
  per call and per whole batch: feed one frame per call) only where static fails the gate.
OpenVINO IR (``.xml`` + ``.bin``) is measured the same way on OpenVINO's CPU plugin (fp32 inference precision):
fp32 converted from the fp32 ONNX graph; int8 the OpenVINO back-end's static quantisation (NNCF), static only.
"""
from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lib.test.tracker.backends.base import MAP_NAMES, uses_ce_mask
from lib.test.tracker.backends.gate import MAP_DEVIATION_LIMIT, exported_deviation
from lib.test.tracker.backends.onnx_backend import (
    BATCH_AXIS,
    EXPORT_FORMAT_VERSION,
    deviation_from_eager,
    export_network,
    fp32_matmuls,
    graph_input_names,
    onnx_file_deviation,
    quantize_dynamic_int8,
    seeded_input_sets,
)
from lib.test.tracker.ostrack import CLIP_MARGIN
from lib.utils.errors import UserError

log = logging.getLogger(__name__)

FORMATS = ("onnx", "onnx-int8", "openvino", "openvino-int8")
FP32_MAP_LIMIT = 1e-4
FILE_SUFFIXES = {"onnx": ".onnx", "onnx-int8": ".int8.onnx", "openvino": ".xml", "openvino-int8": ".int8.xml"}
IR_METADATA_KEY = "loretrack"  # the IR's rt_info section holding the metadata


class ExportError(UserError):
    """An exported file does not reproduce the eager network within its limit."""


@dataclass(frozen=True)
class ExportSettings:
    """What ``tracking/export_model.py`` asks for."""

    config: str
    checkpoint: str
    output: str
    script: str = "ostrack"
    formats: tuple[str, ...] = ("onnx",)
    opts: tuple[str, ...] = ()
    calibration_dataset: str = "embedded"
    calibration_root: str | None = None
    calibration_crops: int = 64
    held_out_crops: int = 32


@dataclass
class ExportedFile:
    format: str
    path: Path
    precision: str
    verification: dict[str, Any]
    note: str = ""

    def summary(self) -> str:
        check = self.verification
        line = (f"{self.format}: {self.path} ({self.precision}; max relative map deviation from eager "
                f"{check['map_deviation']:.1e}, limit {check['limit']:.0e})")
        return f"{line}; {self.note}" if self.note else line


@dataclass
class ExportResult:
    files: list[ExportedFile] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"files": [{"format": f.format, "path": str(f.path), "precision": f.precision,
                           "verification": f.verification, "note": f.note} for f in self.files]}


def check_settings(settings: ExportSettings) -> None:
    unknown = [name for name in settings.formats if name not in FORMATS]
    if unknown or not settings.formats:
        raise UserError(f"unknown export format(s) {unknown}; use one or more of {list(FORMATS)}")
    if not Path(settings.checkpoint).is_file():
        raise UserError(f"checkpoint not found: {settings.checkpoint}; pass the trained weights with --checkpoint")
    for name in settings.formats:
        if name.startswith("openvino"):  # a missing package is refused before any work
            from lib.test.tracker.backends.openvino_backend import import_openvino

            import_openvino(name, with_nncf=name.endswith("-int8"))
    if settings.calibration_crops < 1 or settings.held_out_crops < 1:
        raise UserError("--calibration_crops and --held_out_crops must be at least 1")


def export_model(settings: ExportSettings) -> ExportResult:
    """Build the config's network with the checkpoint's weights and write every asked-for format to
    ``settings.output`` (``<config name><suffix>``), atomically, each verified before it is renamed into place."""
    from lib.config import load_config
    from lib.models import build_model, load_weights
    from lib.utils.io import ensure_writable

    check_settings(settings)
    output = ensure_writable(settings.output, "--output")
    cfg = load_config(settings.config, overrides=list(settings.opts), script=settings.script)
    model = build_model(cfg, training=False)
    load_weights(model, settings.checkpoint, strict=True)
    model.eval()
    metadata = tracker_metadata(cfg, model, settings)
    stem = Path(settings.config).stem
    needs_crops = any(name.endswith("-int8") for name in settings.formats)
    crops = calibration_crops(model, settings) if needs_crops else None
    result = ExportResult()
    exporters = {"onnx": export_onnx_fp32, "onnx-int8": export_onnx_int8, "openvino": export_openvino_fp32,
                 "openvino-int8": export_openvino_int8}
    for name in settings.formats:
        result.files.append(exporters[name](model, output / f"{stem}{FILE_SUFFIXES[name]}", metadata, crops))
    return result


def calibration_crops(model: nn.Module, settings: ExportSettings) -> Any:
    from lib.test.tracker.backends.calibration import calibration_data

    return calibration_data(model, settings.calibration_dataset, settings.calibration_root,
                            calibration_crops=settings.calibration_crops, held_out_crops=settings.held_out_crops)


# -- metadata
def ce_mask_recipe(model: nn.Module) -> dict[str, Any] | None:
    """How to make the ``ce_template_mask`` input (None: the graph has none). A fixed mask lists its True token
    indices (raster order over the template's token grid); a GT_BOX mask depends on the first box."""
    if not uses_ce_mask(model):
        return None
    grid = model.backbone.template_grid[0]
    recipe: dict[str, Any] = {"range": model.ce_template_range, "shape": ["batch", grid * grid], "dtype": "bool",
                              "true_indices": None}
    if model.ce_template_range == "GT_BOX":
        recipe["rule"] = ("tokens covered by the initial box in the template crop: lib.models.vit."
                          "build_ce_template_mask")
    else:
        mask = model.make_ce_template_mask(1, "cpu")
        recipe["true_indices"] = [int(i) for i in torch.nonzero(mask[0]).flatten()]
    return recipe


def tracker_metadata(cfg: Any, model: nn.Module, settings: ExportSettings) -> dict[str, Any]:
    """What a tracker needs besides the network, and where the file came from."""
    import onnx
    import onnxruntime

    from lib.test.tracker.backends.onnx_cache import sources_digest, weights_digest
    from lib.utils.provenance import code_version, file_sha256

    with_mask = uses_ce_mask(model)
    return {
        "loretrack_export_format": EXPORT_FORMAT_VERSION,
        "inputs": graph_input_names(with_mask), "outputs": list(MAP_NAMES), "batch_axis": BATCH_AXIS,
        "template_size": model.template_size, "search_size": model.search_size,
        "feature_size": model.search_feat_size,
        "template_factor": float(cfg.TEST.TEMPLATE_FACTOR), "search_factor": float(cfg.TEST.SEARCH_FACTOR),
        "mean": [float(v) for v in cfg.DATA.MEAN], "std": [float(v) for v in cfg.DATA.STD],
        "input_encoding": "float32 NCHW RGB, (pixel / 255 - mean) / std; crops as OSTrack's sample_target",
        "ce_template_mask": ce_mask_recipe(model),
        "postprocess": {"hann_window": True, "clip_margin": CLIP_MARGIN,
                        "decode": "first max of hann * score_map at (row, col); cx = (col + offset[0]) / F, "
                                  "cy = (row + offset[1]) / F, (w, h) = size_map there; all x search_size"},
        "model": {"script": settings.script, "config": settings.config, "opts": list(settings.opts),
                  "checkpoint": Path(settings.checkpoint).name,
                  "checkpoint_sha256": file_sha256(settings.checkpoint),
                  "weights_sha256": weights_digest(model), "sources_sha256": sources_digest()},
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                     "code": code_version()},
    }


def write_onnx_metadata(path: Path, metadata: Mapping[str, Any]) -> None:
    """Store ``metadata`` in the file's ``metadata_props``, one JSON-encoded value per key."""
    import onnx

    graph = onnx.load(str(path))
    del graph.metadata_props[:]
    for key, value in metadata.items():
        graph.metadata_props.add(key=key, value=json.dumps(value))
    onnx.save(graph, str(path))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of an exported ONNX or OpenVINO IR (``.xml``) file, decoded (what :func:`write_onnx_metadata`
    or :func:`_set_ir_metadata` stored)."""
    import onnx

    if Path(path).suffix == ".xml":
        import openvino as ov

        info = ov.Core().read_model(str(path)).get_rt_info()
        if IR_METADATA_KEY not in info:
            return {}
        return {key: json.loads(value.astype(str)) for key, value in info[IR_METADATA_KEY].items()}
    graph = onnx.load(str(path), load_external_data=False)
    return {prop.key: json.loads(prop.value) for prop in graph.metadata_props}


# -- formats
def export_onnx_fp32(model: nn.Module, target: Path, metadata: Mapping[str, Any], crops: Any = None
                     ) -> ExportedFile:
    from lib.utils.io import atomic_path

    with atomic_path(target, suffix=".tmp.onnx") as tmp:
        export_network(model, tmp)
        deviation = deviation_from_eager(model, tmp, batches=(1, 3))
        verification = _verdict(deviation, FP32_MAP_LIMIT, "seeded random crops at batch 1 and 3")
        if not verification["passed"]:
            raise ExportError(f"the fp32 ONNX export deviates from eager by {verification['map_deviation']:.1e} "
                              f"of a map's max (limit {FP32_MAP_LIMIT:.0e}); export with --debug and report it")
        write_onnx_metadata(tmp, {**metadata, "precision": "fp32", "batch_independent": True,
                                  "verification": verification})
    return ExportedFile("onnx", target, "fp32", verification)


def export_onnx_int8(model: nn.Module, target: Path, metadata: Mapping[str, Any], crops: Any) -> ExportedFile:
    """Static int8 (QDQ) if it passes the gate on the held-out crops, else dynamic int8 if that does."""
    attempts = {}
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as folder:
        fp32 = Path(folder) / "fp32.onnx"
        export_network(model, fp32, matmul_head=True)  # the head as one GEMM (it stays fp32)
        for precision, quantize in (("int8-static", _quantize_static(crops)), ("int8-dynamic", _quantize_dynamic)):
            try:
                return _write_int8(model, fp32, target, precision, quantize, metadata, crops)
            except _Rejected as rejected:
                attempts[precision] = rejected.deviation
    tried = ", ".join(f"{name} {dev:.1e}" for name, dev in attempts.items())
    raise ExportError(f"int8 ONNX fails the accuracy gate on this machine (relative map deviation {tried}; limit "
                      f"{MAP_DEVIATION_LIMIT:.0e}); export --format onnx (fp32) instead")


class _Rejected(Exception):
    """A quantised file failed the gate: its atomic write is abandoned."""

    def __init__(self, deviation: float) -> None:
        super().__init__(deviation)
        self.deviation = deviation


def _write_int8(model: nn.Module, fp32: Path, target: Path, precision: str, quantize: Callable[[Path, Path], None],
                metadata: Mapping[str, Any], crops: Any) -> ExportedFile:
    from lib.utils.io import atomic_path

    with atomic_path(target, suffix=".tmp.onnx") as tmp:
        quantize(fp32, tmp)
        verification = _verdict(onnx_file_deviation(model, tmp, crops.held_out.each()), MAP_DEVIATION_LIMIT,
                                f"{len(crops.held_out)} held-out crops of {crops.source}, batch 1")
        if not verification["passed"]:
            log.info("%s fails the accuracy gate (map deviation %.1e)", precision, verification["map_deviation"])
            raise _Rejected(verification["map_deviation"])
        static = precision == "int8-static"
        note = "" if static else ("dynamic int8: activation scales per call and per whole batch, so feed one frame "
                                  "per call (static int8 failed the accuracy gate)")
        write_onnx_metadata(tmp, {**metadata, "precision": precision, "batch_independent": static,
                                  "fp32_nodes": fp32_matmuls(fp32), "verification": verification, "note": note})
    return ExportedFile("onnx-int8", target, precision, verification, note)


def _quantize_static(crops: Any) -> Callable[[Path, Path], None]:
    def quantize(fp32: Path, target: Path) -> None:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        from lib.test.tracker.backends.base import quiet

        calibration = crops.calibration
        names = graph_input_names(calibration.ce_template_mask is not None)

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.feeds = ({n: t.numpy() for n, t in zip(names, inputs, strict=True)}
                              for inputs in calibration.each())

            def get_next(self) -> dict[str, Any] | None:
                return next(self.feeds, None)

        log.info("quantising to static int8 (QDQ) on %d calibration crops -> %s", len(calibration), target)
        with quiet():
            quantize_static(fp32, target, Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
                            per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=fp32_matmuls(fp32))
    return quantize


def _quantize_dynamic(fp32: Path, target: Path) -> None:
    from lib.test.tracker.backends.cpu_features import int8_dot_product_supported

    quantize_dynamic_int8(fp32, target, per_channel=True, reduce_range=not int8_dot_product_supported())


def _verdict(deviation: Mapping[str, Mapping[str, float]], limit: float, inputs: str) -> dict[str, Any]:
    worst = max(dev["rel"] for dev in deviation.values())
    return {"measure": "max |file - eager| / max |eager| per map, over all inputs", "inputs": inputs,
            "per_map": {name: dev["rel"] for name, dev in deviation.items()}, "map_deviation": worst,
            "limit": limit, "passed": worst <= limit}


def export_openvino_fp32(model: nn.Module, target: Path, metadata: Mapping[str, Any], crops: Any = None
                         ) -> ExportedFile:
    """The fp32 ONNX graph converted to IR (its dynamic batch kept), verified like the fp32 ONNX file."""
    import openvino as ov

    from lib.test.tracker.backends.openvino_backend import import_openvino

    import_openvino("openvino")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as folder:
        fp32 = Path(folder) / "fp32.onnx"
        export_network(model, fp32)
        network = ov.Core().read_model(str(fp32))

        def verify(checked: Path) -> dict[str, Any]:
            return _verdict(ir_deviation_from_eager(model, checked, batches=(1, 3)), FP32_MAP_LIMIT,
                            "seeded random crops at batch 1 and 3")

        def refusal(verification: Mapping[str, Any]) -> str:
            return (f"the fp32 OpenVINO export deviates from eager by {verification['map_deviation']:.1e} of a "
                    f"map's max (limit {FP32_MAP_LIMIT:.0e}); export with --debug and report it")

        return _write_verified_ir(network, Path(folder), target, verify, refusal, metadata, "openvino", "fp32")


def export_openvino_int8(model: nn.Module, target: Path, metadata: Mapping[str, Any], crops: Any
                         ) -> ExportedFile:
    """The OpenVINO back-end's static int8 (NNCF, calibrated on ``crops.calibration``), kept only if it passes
    the gate on the held-out crops."""
    import openvino as ov

    from lib.test.tracker.backends import openvino_backend as ovb
    from lib.test.tracker.backends.cpu_features import int8_dot_product_supported

    ovb.import_openvino("openvino-int8", with_nncf=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as folder:
        fp32 = Path(folder) / "fp32.onnx"
        export_network(model, fp32)
        core = ov.Core()
        log.info("quantising to static int8 (NNCF) on %d calibration crops -> %s", len(crops.calibration), target)
        int8 = ovb.quantize_static_ir(core, fp32, crops.calibration, seven_bit=not int8_dot_product_supported())

        def verify(checked: Path) -> dict[str, Any]:
            measured = ovb.held_out_deviation(model, _compile_ir(core, checked), crops.held_out)
            return _verdict(measured["deviation"], MAP_DEVIATION_LIMIT,
                            f"{len(crops.held_out)} held-out crops of {crops.source}, batch 1")

        def refusal(verification: Mapping[str, Any]) -> str:
            return (f"int8 OpenVINO fails the accuracy gate on this machine (relative map deviation "
                    f"{verification['map_deviation']:.1e}; limit {MAP_DEVIATION_LIMIT:.0e}); export --format "
                    "openvino (fp32) instead")

        return _write_verified_ir(int8, Path(folder), target, verify, refusal, metadata, "openvino-int8",
                                  "int8-static")


def _write_verified_ir(network: Any, folder: Path, target: Path, verify: Callable[[Path], dict[str, Any]],
                       refusal: Callable[[Mapping[str, Any]], str], metadata: Mapping[str, Any], name: str,
                       precision: str) -> ExportedFile:
    """Verify ``network`` from a copy in ``folder`` (:func:`_checked_ir`), then write it with its verdict and
    rename it to ``target``; a failing check raises :class:`ExportError` with ``refusal(verdict)``, no file left."""
    verification = verify(_checked_ir(network, folder, target.name))
    if not verification["passed"]:
        raise ExportError(refusal(verification))
    tmp = folder / target.name
    _save_ir(network, tmp, {**metadata, "precision": precision, "batch_independent": True,
                            "verification": verification})
    _rename_ir(tmp, target)
    return ExportedFile(name, target, precision, verification)


def _compile_ir(core: Any, path: Path) -> Any:
    """The written IR file on the CPU plugin, fp32 inference precision, torch's thread count."""
    from lib.test.tracker.backends.openvino_backend import cpu_properties, kept_signal_stack

    with kept_signal_stack():
        return core.compile_model(core.read_model(str(path)), "CPU", cpu_properties(torch.get_num_threads()))


def ir_deviation_from_eager(model: nn.Module, path: Path, batches: tuple[int, ...], seed: int = 1
                            ) -> dict[str, dict[str, float]]:
    """:func:`~lib.test.tracker.backends.onnx_backend.deviation_from_eager` for an IR file on OpenVINO."""
    import openvino as ov

    from lib.test.tracker.backends.openvino_backend import compiled_runner

    return exported_deviation(model, compiled_runner(_compile_ir(ov.Core(), path)),
                              seeded_input_sets(model, batches, seed))


def _checked_ir(network: Any, folder: Path, name: str) -> Path:
    """The file that is verified: the final one is written anew with the verdict, in another place (rewriting
    weights that a compiled model may still map would crash it)."""
    import openvino as ov

    path = folder / "checked" / name
    ov.save_model(network, path, compress_to_fp16=False)
    return path


def _save_ir(network: Any, path: Path, metadata: Mapping[str, Any]) -> None:
    """(Re)write ``path`` (.xml + .bin) with ``metadata`` in its rt_info, one JSON-encoded value per key, and the
    library versions that made it."""
    import openvino as ov

    versions = {**metadata.get("versions", {}), "openvino": ov.__version__}
    if metadata.get("precision", "").startswith("int8"):
        import nncf

        versions["nncf"] = nncf.__version__
    for key, value in {**metadata, "versions": versions}.items():
        network.set_rt_info(json.dumps(value), [IR_METADATA_KEY, key])
    ov.save_model(network, path, compress_to_fp16=False)


def _rename_ir(tmp: Path, target: Path) -> None:
    """Weights first, then the .xml that names them: a complete .xml never points at missing weights."""
    from lib.utils.io import durable_rename, fsync_path

    for suffix in (".bin", ".xml"):
        fsync_path(tmp.with_suffix(suffix))
        durable_rename(tmp.with_suffix(suffix), target.with_suffix(suffix))


def format_result(result: ExportResult) -> str:
    return "\n".join(f.summary() for f in result.files)


