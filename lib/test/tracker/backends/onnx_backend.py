"""The ONNX back-ends: the network exported once (cached), run by ONNX Runtime in fp32 or dynamic int8.

Candidate elimination (CE) exports correctly (TopK / GatherElements / ScatterElements with a fixed number
of kept tokens); its template mask becomes a graph input. Every input and output has a dynamic batch axis
(traced at batch 2, so that no size-1 batch dimension is baked into the graph).
"""
from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lib.models.head import MatMulCenterHead
from lib.test.tracker.backends.base import (
    MAP_NAMES,
    BackendError,
    MapsOnly,
    NetworkBackend,
    quiet,
    uses_ce_mask,
    with_boxes,
)
from lib.test.tracker.backends.cpu_features import int8_dot_product_supported
from lib.test.tracker.backends.gate import exported_deviation
from lib.test.tracker.backends.onnx_cache import OnnxCache, default_cache_dir, sources_digest, weights_digest

log = logging.getLogger(__name__)

# Bump when the exported graph changes for reasons the hashed inputs do not capture (2: dynamic batch axis).
EXPORT_FORMAT_VERSION = 2
SPINNING_MODES = ("run", "always", "never")
EXPORTERS = ("legacy", "dynamo")
BATCH_AXIS = "batch"
TRACE_BATCH = 2  # a batch of 1 would let the tracer treat the batch dimension as a constant 1
INT8_SCOPE = "/backbone/"  # int8 quantises the MatMuls under this node-name scope; the head's stay fp32


class MapsOnlyMatMulHead(nn.Module):
    """Like :class:`MapsOnly`, with the head's first convolutions as one MatMul (:class:`MatMulCenterHead`)."""

    def __init__(self, model: nn.Module, with_mask: bool) -> None:
        super().__init__()
        self.model = model
        self.with_mask = with_mask
        self.head = MatMulCenterHead(model.box_head)

    def forward(self, template: torch.Tensor, search: torch.Tensor,
                ce_template_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        feats = self.model.backbone(template, search, ce_template_mask=ce_template_mask if self.with_mask else None)
        return self.head(feats.tokens[:, -self.model.backbone.num_search_tokens:], self.model.search_feat_size)


def _optimization_levels() -> dict[str, Any]:
    import onnxruntime as ort

    return {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


class OnnxBackend(NetworkBackend):
    """The network exported to ONNX (cached) and run by ONNX Runtime on the CPU.

    ``threads``: intra-op threads (default: torch's thread count, i.e. what the runner allotted);
    ``optimization``: ORT graph optimisation level ('disable', 'basic', 'extended', 'all');
    ``spinning``: whether idle ORT threads busy-wait: 'never' (default), 'run' (within a run only, sleep
    between runs) or 'always' (ORT's own default). Measured in the tracker loop on 2 cores: equal speed on a
    quiet machine (the tracker's crop between two runs ends any spinning benefit), but 'always' let spinning
    threads fight the tracker's torch/OpenCV work (+5 to +33 ms per frame) and under load from other
    processes both spinning modes were 2x slower than 'never' (ViT-B int8: 110 vs 57 ms);
    ``exporter``: 'legacy' (TorchScript tracing, ~5 s for ViT-B) or 'dynamo' (needs onnxscript, slower);
    ``int8``: dynamic quantisation of the backbone's MatMuls (also cached; the head stays fp32, see
    :func:`fp32_matmuls`); ``matmul_head`` (int8 only, default True): export the head's three first 3x3
    convolutions as one MatMul;
    ``cache_dir``: where the files go (default ``<save_dir>/cache/onnx``); ``cache_max_entries``: how many
    exports to keep there (least recently built ones are deleted first);
    ``torch_threads``: torch's intra-op threads for this process (default 1; None leaves them alone). With the
    network in ORT, torch only does the tracker's tiny per-frame tensor work, and its idle OpenMP threads
    spinning after those ops delay the next ORT run (seen: ~5 ms per frame on 2 cores).

    The graph has a dynamic batch axis. Batch-1 calls run a session with that axis fixed to 1 (as fast as, and
    bit-identical to, a batch-1 export); the first batched call opens a second session that takes any batch.
    """

    name = "onnx"

    def __init__(self, model: nn.Module, threads: int | None = None, int8: bool = False,
                 cache_dir: str | Path | None = None, optimization: str = "all", spinning: str = "never",
                 exporter: str = "legacy", opset: int | None = None, per_channel: bool = True,
                 validate: bool = True, cache_max_entries: int = 8, torch_threads: int | None = 1,
                 matmul_head: bool = True) -> None:
        super().__init__(model)
        try:
            import onnxruntime  # noqa: F401  (only checks that it is installed)
        except ImportError as err:
            raise BackendError(f"back-end 'onnx' needs onnxruntime and onnx ({err}); install them, or use "
                               "'eager' / 'bf16'") from None
        if exporter not in EXPORTERS:
            raise BackendError(f"unknown ONNX exporter '{exporter}'; use 'legacy' or 'dynamo'")
        levels = _optimization_levels()
        if spinning not in SPINNING_MODES:
            raise BackendError(f"unknown ORT spinning mode '{spinning}'; use 'run', 'always' or 'never'")
        if optimization not in levels:
            raise BackendError(f"unknown ORT optimisation level '{optimization}'; use one of {list(levels)}")
        self.name = "onnx-int8" if int8 else "onnx"
        self.int8 = int8
        # dynamic int8 quantises activations with one scale per tensor, i.e. per whole batch: batch mates interact
        self.supports_batch = not int8
        self.threads = threads or torch.get_num_threads()  # read before torch_threads changes it
        self.opset = opset or default_opset(exporter)
        self.exporter, self.per_channel, self.validate = exporter, per_channel, validate
        self.reduce_range = not int8_dot_product_supported()
        self.cache = OnnxCache(Path(cache_dir) if cache_dir is not None else default_cache_dir(),
                               max_entries=cache_max_entries)
        start = time.perf_counter()
        # int8: the head's first convolutions as one MatMul (a single GEMM instead of three convolutions)
        self.matmul_head = int8 and matmul_head and MatMulCenterHead.supports(model.box_head)
        if int8:
            self.path, self.cache_hit = self.cache.get_or_build(self._int8_key(), self._export_int8)
        else:
            self.path, self.cache_hit = self.cache.get_or_build(self._fp32_key(), self._export)
        self.optimization, self.spinning = optimization, spinning
        self.session = self.cache.open_session(self.path, self._session_options(batch=1))
        self._batch_session: Any = None  # any batch size, opened on the first batched call
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.torch_threads = torch_threads
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.build_seconds = time.perf_counter() - start

    def _session_options(self, batch: int | None) -> Any:
        """ORT settings; ``batch`` fixes the graph's batch axis at load time (None: any batch). With every shape
        known ORT fuses more (MatMul + Add into Gemm), so batch-1 maps are bit-identical to a batch-1 export."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = _optimization_levels()[self.optimization]
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "0" if self.spinning == "never" else "1")
        if self.spinning == "run":
            options.add_session_config_entry("session.force_spinning_stop", "1")
        options.log_severity_level = 3
        if batch is not None:
            options.add_free_dimension_override_by_name(BATCH_AXIS, batch)
        return options

    def _session_for(self, batch: int) -> Any:
        if batch == 1:
            return self.session
        if self._batch_session is None:
            self._batch_session = self.cache.open_session(self.path, self._session_options(batch=None))
        return self._batch_session

    # -- cache keys and builders
    def _fp32_key(self) -> dict[str, Any]:
        import onnx

        backbone = self.model.backbone
        return {"kind": "fp32", "format": EXPORT_FORMAT_VERSION, "structure": repr(self.model),
                "head": "matmul" if self.matmul_head else "conv",
                "sizes": [self.model.template_size, self.model.search_size], "ce_loc": list(backbone.ce_loc),
                "ce_keep": [blk.keep_ratio for blk in backbone.blocks], "ce_mask_input": self.uses_ce_mask,
                "ce_range": getattr(self.model, "ce_template_range", "ALL"), "weights": weights_digest(self.model),
                "sources": sources_digest(), "exporter": self.exporter, "opset": self.opset,
                "torch": torch.__version__, "onnx": onnx.__version__}

    def _int8_key(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"kind": "int8-dynamic", "format": EXPORT_FORMAT_VERSION, "fp32": self._fp32_key(),
                "ops": ["MatMul"], "scope": INT8_SCOPE, "per_channel": self.per_channel,
                "reduce_range": self.reduce_range, "weight_type": "QInt8", "onnxruntime": ort.__version__}

    def _export(self, target: Path) -> None:
        export_network(self.model, target, matmul_head=self.matmul_head, exporter=self.exporter, opset=self.opset)
        if self.validate:
            deviation = deviation_from_eager(self.model, target)
            for name, dev in deviation.items():
                if not dev["abs"] <= 1e-3 * max(1.0, dev["scale"]):
                    raise BackendError(f"the ONNX export of the network does not reproduce the eager {name} "
                                       f"(max abs deviation {dev['abs']:.3g}); use the 'eager' or 'bf16' back-end")

    def _export_int8(self, target: Path) -> None:
        """Export fp32 to a temporary file (checked against eager), then quantise it into ``target``."""
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".int8-") as folder:
            fp32 = Path(folder) / "fp32.onnx"
            self._export(fp32)
            quantize_dynamic_int8(fp32, target, per_channel=self.per_channel, reduce_range=self.reduce_range)

    # -- inference
    def __call__(self, template, search, ce_template_mask=None):
        feed = {"template": template.detach().cpu().float().contiguous().numpy(),
                "search": search.detach().cpu().float().contiguous().numpy()}
        if self.uses_ce_mask:
            if ce_template_mask is None:
                raise ValueError("this CE network needs its template mask (model.make_ce_template_mask(...))")
            feed["ce_template_mask"] = ce_template_mask.detach().cpu().to(torch.bool).numpy()
        outputs = self._session_for(feed["search"].shape[0]).run(None, feed)
        return with_boxes({name: torch.from_numpy(out) for name, out in zip(MAP_NAMES, outputs, strict=True)})

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(file=str(self.path), cache_hit=self.cache_hit,
                    optimization=self.optimization, spinning=self.spinning, exporter=self.exporter,
                    torch_threads=self.torch_threads)
        if self.int8:
            info.update(per_channel=self.per_channel, reduce_range=self.reduce_range, matmul_head=self.matmul_head)
        return info


def default_opset(exporter: str) -> int:
    return 18 if exporter == "dynamo" else 17  # dynamo implements opset >= 18 only


def graph_input_names(with_mask: bool) -> list[str]:
    """The exported graph's inputs, in the order ``forward`` takes them."""
    return ["template", "search"] + (["ce_template_mask"] if with_mask else [])


def network_inputs(model: nn.Module, seed: int, batch: int = 1) -> tuple[torch.Tensor, ...]:
    """Seeded random crops (and the CE mask where the graph takes it as an input) in graph input order."""
    inputs = model.example_inputs(batch=batch, device="cpu", generator=torch.Generator().manual_seed(seed))
    return tuple(inputs) if uses_ce_mask(model) else (inputs.template, inputs.search)


def export_network(model: nn.Module, target: Path, matmul_head: bool = False, exporter: str = "legacy",
                   opset: int | None = None) -> None:
    """Write the network's maps-only graph to ``target`` as ONNX, with a dynamic batch axis on every input and
    output. ``matmul_head``: the head's first convolutions as one MatMul (:class:`MatMulCenterHead`)."""
    with_mask = uses_ce_mask(model)
    wrapper = (MapsOnlyMatMulHead if matmul_head else MapsOnly)(model, with_mask).eval()
    was_training = model.training
    inputs = network_inputs(model, seed=0, batch=TRACE_BATCH)
    names = graph_input_names(with_mask)
    opset = opset or default_opset(exporter)
    if exporter == "dynamo":
        batch = torch.export.Dim(BATCH_AXIS)
        axes: dict[str, Any] = {"dynamic_shapes": {name: {0: batch} for name in names}}
    else:
        axes = {"dynamic_axes": {name: {0: BATCH_AXIS} for name in (*names, *MAP_NAMES)}}
    log.info("exporting the network to ONNX (%s exporter) -> %s", exporter, target)
    try:
        with torch.no_grad(), quiet():
            torch.onnx.export(wrapper, inputs, str(target), input_names=names, output_names=list(MAP_NAMES),
                              opset_version=opset, dynamo=exporter == "dynamo", do_constant_folding=True,
                              verbose=False, **axes)
    except ImportError as err:
        raise BackendError(f"ONNX export with the {exporter} exporter failed: {err} (the dynamo "
                           "exporter needs onnxscript; exporter='legacy' needs only onnx)") from None
    finally:
        model.train(was_training)  # the exporter restores the wrapper's mode on the whole tree


def checking_session(path: Path) -> Any:
    """An ORT CPU session for verifying a file: torch's thread count, no spinning (fair on a shared machine)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def deviation_from_eager(model: nn.Module, path: Path, batches: tuple[int, ...] = (1, TRACE_BATCH + 1),
                         seed: int = 1) -> dict[str, dict[str, float]]:
    """The gate's map deviation (``abs``, ``scale``, ``rel`` per map) of the ONNX file at ``path`` from eager,
    over seeded random inputs at each batch size in ``batches`` (the traced size excluded, so that the dynamic
    axis is exercised), fp32 on ONNX Runtime's CPU provider."""
    return onnx_file_deviation(model, path, seeded_input_sets(model, batches, seed))


def seeded_input_sets(model: nn.Module, batches: Iterable[int], seed: int) -> Iterator[tuple[torch.Tensor, ...]]:
    """One :func:`network_inputs` set per batch size in ``batches``, seeded ``seed``, ``seed + 1``, ..."""
    return (network_inputs(model, seed=seed + i, batch=batch) for i, batch in enumerate(batches))


def onnx_file_deviation(model: nn.Module, path: Path, inputs: Iterable[Sequence[torch.Tensor]]
                        ) -> dict[str, dict[str, float]]:
    """The gate's map deviation of the ONNX file at ``path`` from eager over ``inputs`` (each a set in graph
    input order), run in fp32 by ONNX Runtime's CPU provider."""
    return exported_deviation(model, session_runner(checking_session(path), uses_ce_mask(model)), inputs)


def session_runner(session: Any, with_mask: bool) -> Callable[[Sequence[torch.Tensor]], list[np.ndarray]]:
    """``session`` as a function of one input set in graph order (for :func:`~.gate.exported_deviation`)."""
    names = graph_input_names(with_mask)
    return lambda inputs: session.run(None, {name: t.numpy() for name, t in zip(names, inputs, strict=True)})


def fp32_matmuls(path: Path) -> list[str]:
    """The MatMul nodes of the ONNX file at ``path`` that int8 quantisation leaves in fp32: all outside
    :data:`INT8_SCOPE`, i.e. the head's. On a trained tracker most of the int8 map error came from the head's
    MatMul (demo teacher, dynamic int8, 120 crops of the OTB sequences: relative map deviation 1.6e-2 with it
    quantised, 8.8e-3 with it in fp32; no single backbone MatMul in fp32 did better than 1.3e-2), for about 5 %
    of the network's operations (LoReTrack-128)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type == "MatMul" and INT8_SCOPE not in node.name]


def quantize_dynamic_int8(fp32: Path, target: Path, per_channel: bool = True, reduce_range: bool = False) -> None:
    """ONNX Runtime's dynamic int8 quantisation of the backbone's MatMuls (int8 weights, activations quantised
    per call with one scale per tensor, i.e. per whole batch); the head stays fp32 (:func:`fp32_matmuls`)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    log.info("quantising the export to int8 (dynamic) -> %s", target)
    with quiet():
        quantize_dynamic(fp32, target, op_types_to_quantize=["MatMul"], per_channel=per_channel,
                         reduce_range=reduce_range, weight_type=QuantType.QInt8,
                         nodes_to_exclude=fp32_matmuls(fp32))
