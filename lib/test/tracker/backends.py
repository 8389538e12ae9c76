"""Network back-ends for the tracker: the same OSTrack network run by eager fp32, bf16 or ONNX Runtime.

A back-end is a callable ``backend(template, search, ce_template_mask) -> {'score_map', 'size_map',
'offset_map', 'pred_boxes', ...}`` (the tracker's ``network_fn``); build one by name::

    backend = build_backend("onnx-int8", model, threads=2)

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
onnx and onnxruntime versions: a model is exported once and re-used by every later tracker. Files are
written atomically, carry a SHA-256 in a side file, and a damaged or half-written entry is rebuilt.
Candidate elimination (CE) exports correctly (TopK / GatherElements / ScatterElements with a fixed number
of kept tokens); its template mask becomes a graph input.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from lib.models.head import decode_boxes
from lib.utils.errors import UserError
from lib.utils.io import atomic_path, atomic_write_text, remove_stale_temp_files
from lib.utils.provenance import file_sha256

log = logging.getLogger(__name__)

BACKENDS = ("eager", "bf16", "bf16-autocast", "bf16-compile", "onnx", "onnx-int8")
MAP_NAMES = ("score_map", "size_map", "offset_map")
# Bump when the exported graph changes for reasons the hashed inputs do not capture.
EXPORT_FORMAT_VERSION = 1
_MODEL_SOURCES = ("lib/models/vit.py", "lib/models/head.py", "lib/models/ostrack.py")
_REPO_ROOT = Path(__file__).resolve().parents[3]


class BackendError(UserError):
    """A back-end cannot be used here (unknown name, unsupported CPU, bad option)."""


# ----------------------------------------------------------------------------------------------- helpers

def cpu_flags() -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def native_bf16_supported() -> bool:
    """True if the CPU computes bf16 natively (AVX-512 BF16 or AMX), i.e. bf16 can be faster than fp32."""
    flags = cpu_flags()
    if flags:
        return bool({"avx512_bf16", "amx_bf16"} & flags)
    try:  # no /proc/cpuinfo: ask torch's own CPU detection
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


def _int8_dot_product_supported() -> bool:
    """VNNI makes u8 x s8 products exact; without it MLAS may saturate unless the range is reduced."""
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags())


def _model_sizes(model: nn.Module) -> tuple[int, int]:
    bb = model.backbone
    return bb.template_grid[0] * bb.patch_size, bb.search_grid[0] * bb.patch_size


def _uses_ce_mask(model: nn.Module) -> bool:
    """Whether the network takes a CE template mask (CE on and not averaging over all template rows)."""
    return bool(model.backbone.ce_loc) and getattr(model, "ce_template_range", "ALL") != "ALL"


def _with_boxes(maps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    maps["pred_boxes"] = decode_boxes(maps["score_map"], maps["size_map"], maps["offset_map"]).unsqueeze(1)
    return maps


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
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


class _MapsOnly(nn.Module):
    """The network with plain tensor outputs (score, size, offset maps), for export and compilation."""

    def __init__(self, model: nn.Module, with_mask: bool) -> None:
        super().__init__()
        self.model = model
        self.with_mask = with_mask

    def forward(self, template: torch.Tensor, search: torch.Tensor,
                ce_template_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        out = self.model(template, search, ce_template_mask=ce_template_mask if self.with_mask else None)
        return tuple(out[name] for name in MAP_NAMES)


class _MatMulHead(nn.Module):
    """The CENTER head with the three first 3x3 convolutions (C -> ch each, the bulk of the head's work) as
    ONE matrix product on the 9 shifted copies of the token grid, batch norm folded in.

    Same function as the convolutions (fp32 deviation ~1e-6), but a MatMul with constant weights is what
    ONNX Runtime's dynamic int8 quantisation speeds up; its int8 Conv path is slower than fp32 here.
    """

    BRANCHES = ("ctr", "offset", "size")

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head
        weights, biases = [], []
        for branch in self.BRANCHES:
            conv, bn = getattr(head, f"conv1_{branch}")[:2]
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            weights.append(conv.weight * scale[:, None, None, None])
            biases.append((conv.bias - bn.running_mean) * scale + bn.bias)
        weight = torch.cat(weights).detach()  # (3 ch, C, 3, 3)
        self.channels = weight.shape[0] // 3
        # row (dy * 3 + dx) * C + c of the matrix multiplies the token at offset (dy - 1, dx - 1), channel c
        self.register_buffer("weight", weight.permute(2, 3, 1, 0).reshape(-1, weight.shape[0]).contiguous())
        self.register_buffer("bias", torch.cat(biases).detach())

    @staticmethod
    def supports(head: nn.Module) -> bool:
        for branch in _MatMulHead.BRANCHES:
            block = getattr(head, f"conv1_{branch}", None)
            if not (isinstance(block, nn.Sequential) and len(block) == 3 and isinstance(block[0], nn.Conv2d)
                    and isinstance(block[1], nn.BatchNorm2d) and isinstance(block[2], nn.ReLU)):
                return False
            conv = block[0]
            if (conv.kernel_size, conv.padding, conv.stride, conv.dilation, conv.groups) != (
                    (3, 3), (1, 1), (1, 1), (1, 1), 1) or conv.bias is None:
                return False
        return True

    def forward(self, tokens: torch.Tensor, size: int) -> tuple[torch.Tensor, ...]:
        """``tokens`` (B, F*F, C) in raster order -> score, size, offset maps."""
        from lib.models.head import _clamped_sigmoid

        batch, num, dim = tokens.shape
        grid = nn.functional.pad(tokens.reshape(batch, size, size, dim), (0, 0, 1, 1, 1, 1))
        cols = torch.cat([grid[:, dy:dy + size, dx:dx + size, :] for dy in range(3) for dx in range(3)], dim=-1)
        hidden = torch.relu(cols.reshape(batch, num, 9 * dim) @ self.weight + self.bias)
        hidden = hidden.reshape(batch, size, size, 3, self.channels).permute(3, 0, 4, 1, 2)
        outs = {}
        for i, branch in enumerate(self.BRANCHES):
            x = hidden[i]
            for j in range(2, 6):
                x = getattr(self.head, f"conv{j}_{branch}")(x)
            outs[branch] = x
        return _clamped_sigmoid(outs["ctr"]), _clamped_sigmoid(outs["size"]), outs["offset"]


class _MapsOnlyMatMulHead(nn.Module):
    """Like :class:`_MapsOnly`, with the head's first convolutions as one MatMul (:class:`_MatMulHead`)."""

    def __init__(self, model: nn.Module, with_mask: bool) -> None:
        super().__init__()
        self.model = model
        self.with_mask = with_mask
        self.head = _MatMulHead(model.box_head)

    def forward(self, template: torch.Tensor, search: torch.Tensor,
                ce_template_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        feats = self.model.backbone(template, search, ce_template_mask=ce_template_mask if self.with_mask else None)
        return self.head(feats.tokens[:, -self.model.backbone.num_search_tokens:], self.model.search_feat_size)


# ----------------------------------------------------------------------------------------------- back-ends

class NetworkBackend:
    """Base class: ``backend(template, search, ce_template_mask)`` -> maps (+ ``pred_boxes``), fp32 CPU."""

    name = "base"

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()
        self.template_size, self.search_size = _model_sizes(model)
        self.uses_ce_mask = _uses_ce_mask(model)
        self.build_seconds = 0.0
        self.threads = torch.get_num_threads()  # the network's CPU threads (subclasses update it)

    def __call__(self, template: torch.Tensor, search: torch.Tensor,
                 ce_template_mask: torch.Tensor | None = None) -> Mapping[str, torch.Tensor]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What was built, for logs and benchmark tables."""
        return {"backend": self.name, "build_seconds": round(self.build_seconds, 2), "threads": self.threads}


class EagerBackend(NetworkBackend):
    name = "eager"

    def __init__(self, model: nn.Module, threads: int | None = None) -> None:
        super().__init__(model)
        if threads:
            torch.set_num_threads(threads)
            self.threads = threads

    @torch.no_grad()
    def __call__(self, template, search, ce_template_mask=None):
        return self.model(template, search, ce_template_mask=ce_template_mask)


def _require_bf16(name: str, allow_emulated: bool) -> None:
    if allow_emulated or native_bf16_supported():
        return
    raise BackendError(f"back-end '{name}' needs a CPU with native bfloat16 (AVX-512 BF16 or AMX; this CPU has "
                       "neither, so bf16 would be slower than fp32). Use 'onnx-int8' or 'onnx' for speed, "
                       "'eager' for the reference, or pass allow_emulated=True to force it")


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
        _require_bf16(self.name, allow_emulated)
        if threads:
            torch.set_num_threads(threads)
            self.threads = threads
        start = time.perf_counter()
        self.net = _MapsOnly(copy.deepcopy(model).to(torch.bfloat16), self.uses_ce_mask).eval()
        self.compiled = compile
        if compile:
            self._compile()
        self.build_seconds = time.perf_counter() - start

    def _compile(self) -> None:
        import torch._inductor.config as inductor_config

        net = torch.compile(self.net, dynamic=False)
        template = torch.zeros(1, 3, self.template_size, self.template_size, dtype=torch.bfloat16)
        search = torch.zeros(1, 3, self.search_size, self.search_size, dtype=torch.bfloat16)
        mask = self.model.ce_template_mask(1, "cpu") if self.uses_ce_mask else None
        # Freezing has to be on when the graph is compiled, i.e. at the first call.
        with inductor_config.patch(freezing=True), torch.no_grad(), _quiet():
            net(template, search, mask)
        self.net = net

    @torch.no_grad()
    def __call__(self, template, search, ce_template_mask=None):
        maps = self.net(template.to(torch.bfloat16), search.to(torch.bfloat16), ce_template_mask)
        return _with_boxes({name: m.float() for name, m in zip(MAP_NAMES, maps)})


class AutocastBF16Backend(NetworkBackend):
    """The fp32 model under CPU autocast: matmuls/convs in bf16, normalisations and softmax in fp32."""

    name = "bf16-autocast"

    def __init__(self, model: nn.Module, threads: int | None = None, allow_emulated: bool = False) -> None:
        super().__init__(model)
        _require_bf16(self.name, allow_emulated)
        if threads:
            torch.set_num_threads(threads)
            self.threads = threads

    @torch.no_grad()
    def __call__(self, template, search, ce_template_mask=None):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.model(template, search, ce_template_mask=ce_template_mask)
        return _with_boxes({name: out[name].float() for name in MAP_NAMES})


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
    ``int8``: dynamic quantisation of the MatMuls (also cached); ``matmul_head`` (int8 only, default True):
    export the head's three first 3x3 convolutions as one MatMul so that they are quantised too;
    ``cache_dir``: where the files go (default ``<save_dir>/cache/onnx``); ``cache_max_entries``: how many
    exports to keep there (least recently built ones are deleted first);
    ``torch_threads``: torch's intra-op threads for this process (default 1; None leaves them alone). With the
    network in ORT, torch only does the tracker's tiny per-frame tensor work, and its idle OpenMP threads
    spinning after those ops delay the next ORT run (seen: ~5 ms per frame on 2 cores).
    """

    name = "onnx"

    def __init__(self, model: nn.Module, threads: int | None = None, int8: bool = False,
                 cache_dir: str | Path | None = None, optimization: str = "all", spinning: str = "never",
                 exporter: str = "legacy", opset: int | None = None, per_channel: bool = True,
                 validate: bool = True, cache_max_entries: int = 8, torch_threads: int | None = 1,
                 matmul_head: bool = True) -> None:
        super().__init__(model)
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise BackendError(f"back-end 'onnx' needs onnxruntime and onnx ({err}); install them, or use "
                               "'eager' / 'bf16'") from None
        if exporter not in ("legacy", "dynamo"):
            raise BackendError(f"unknown ONNX exporter '{exporter}'; use 'legacy' or 'dynamo'")
        levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        if spinning not in ("run", "always", "never"):
            raise BackendError(f"unknown ORT spinning mode '{spinning}'; use 'run', 'always' or 'never'")
        if optimization not in levels:
            raise BackendError(f"unknown ORT optimisation level '{optimization}'; use one of {list(levels)}")
        self.name = "onnx-int8" if int8 else "onnx"
        self.int8 = int8
        self.threads = threads or torch.get_num_threads()  # read before torch_threads changes it
        self.opset = opset or (18 if exporter == "dynamo" else 17)  # dynamo implements opset >= 18 only
        self.exporter, self.per_channel, self.validate = exporter, per_channel, validate
        self.reduce_range = not _int8_dot_product_supported()
        self.cache = OnnxCache(Path(cache_dir) if cache_dir is not None else _default_cache_dir(),
                               max_entries=cache_max_entries)
        start = time.perf_counter()
        # int8: the head's first convolutions become a MatMul so that they are quantised too (-3 ms of ~30)
        self.matmul_head = int8 and matmul_head and _MatMulHead.supports(model.box_head)
        if int8:
            self.path, self.cache_hit = self.cache.get_or_build(self._int8_key(), self._export_int8)
        else:
            self.path, self.cache_hit = self.cache.get_or_build(self._fp32_key(), self._export)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = levels[optimization]
        options.add_session_config_entry("session.intra_op.allow_spinning", "0" if spinning == "never" else "1")
        if spinning == "run":
            options.add_session_config_entry("session.force_spinning_stop", "1")
        options.log_severity_level = 3
        self.optimization, self.spinning = optimization, spinning
        self.session = self.cache.open_session(self.path, options)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.torch_threads = torch_threads
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.build_seconds = time.perf_counter() - start

    # -- cache keys and builders
    def _fp32_key(self) -> dict[str, Any]:
        import onnx

        bb = self.model.backbone
        return {"kind": "fp32", "format": EXPORT_FORMAT_VERSION, "structure": repr(self.model),
                "head": "matmul" if self.matmul_head else "conv",
                "sizes": [self.template_size, self.search_size], "ce_loc": list(bb.ce_loc),
                "ce_keep": [blk.keep_ratio for blk in bb.blocks], "ce_mask_input": self.uses_ce_mask,
                "ce_range": getattr(self.model, "ce_template_range", "ALL"), "weights": weights_digest(self.model),
                "sources": sources_digest(), "exporter": self.exporter, "opset": self.opset,
                "torch": torch.__version__, "onnx": onnx.__version__}

    def _int8_key(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"kind": "int8-dynamic", "format": EXPORT_FORMAT_VERSION, "fp32": self._fp32_key(),
                "ops": ["MatMul"], "per_channel": self.per_channel, "reduce_range": self.reduce_range,
                "weight_type": "QInt8", "onnxruntime": ort.__version__}

    def _example_inputs(self, seed: int = 0) -> tuple[torch.Tensor, ...]:
        gen = torch.Generator().manual_seed(seed)
        template = torch.randn(1, 3, self.template_size, self.template_size, generator=gen)
        search = torch.randn(1, 3, self.search_size, self.search_size, generator=gen)
        if self.uses_ce_mask:
            return template, search, self.model.ce_template_mask(1, "cpu")
        return template, search

    def _wrapper(self) -> nn.Module:
        wrapper = _MapsOnlyMatMulHead if self.matmul_head else _MapsOnly
        return wrapper(self.model, self.uses_ce_mask).eval()

    def _export(self, target: Path) -> None:
        wrapper = self._wrapper()
        was_training = self.model.training
        inputs = self._example_inputs()
        names = ["template", "search"] + (["ce_template_mask"] if self.uses_ce_mask else [])
        log.info("exporting the network to ONNX (%s exporter) -> %s", self.exporter, target)
        try:
            with torch.no_grad(), _quiet():
                torch.onnx.export(wrapper, inputs, str(target), input_names=names, output_names=list(MAP_NAMES),
                                  opset_version=self.opset, dynamo=self.exporter == "dynamo",
                                  do_constant_folding=True, verbose=False)
        except ImportError as err:
            raise BackendError(f"ONNX export with the {self.exporter} exporter failed: {err} (the dynamo "
                               "exporter needs onnxscript; exporter='legacy' needs only onnx)") from None
        finally:
            self.model.train(was_training)  # the exporter restores the wrapper's mode on the whole tree
        if self.validate:
            self._check_against_eager(target)

    def _check_against_eager(self, path: Path) -> None:
        """A fresh fp32 export must reproduce the eager maps; anything else is an exporter bug."""
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inputs = self._example_inputs(seed=1)
        with torch.no_grad():
            ref = _MapsOnly(self.model, self.uses_ce_mask).eval()(*inputs)  # the original network
        feed = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)}
        for name, got, want in zip(MAP_NAMES, session.run(None, feed), ref):
            err = float(np.abs(got - want.numpy()).max())
            if not err <= 1e-3 * max(1.0, float(want.abs().max())):
                raise BackendError(f"the ONNX export of the network does not reproduce the eager {name} "
                                   f"(max abs deviation {err:.3g}); use the 'eager' or 'bf16' back-end")

    def _export_int8(self, target: Path) -> None:
        """Export fp32 to a temporary file (checked against eager), then quantise it into ``target``."""
        import tempfile

        from onnxruntime.quantization import QuantType, quantize_dynamic

        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".int8-") as folder:
            fp32 = Path(folder) / "fp32.onnx"
            self._export(fp32)
            log.info("quantising the export to int8 -> %s", target)
            with _quiet():
                quantize_dynamic(fp32, target, op_types_to_quantize=["MatMul"], per_channel=self.per_channel,
                                 reduce_range=self.reduce_range, weight_type=QuantType.QInt8)

    # -- inference
    def __call__(self, template, search, ce_template_mask=None):
        feed = {"template": template.detach().cpu().float().contiguous().numpy(),
                "search": search.detach().cpu().float().contiguous().numpy()}
        if self.uses_ce_mask:
            if ce_template_mask is None:
                raise ValueError("this CE network needs its template mask (model.ce_template_mask(...))")
            feed["ce_template_mask"] = ce_template_mask.detach().cpu().to(torch.bool).numpy()
        outputs = self.session.run(None, feed)
        return _with_boxes({name: torch.from_numpy(out) for name, out in zip(MAP_NAMES, outputs)})

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(file=str(self.path), cache_hit=self.cache_hit,
                    optimization=self.optimization, spinning=self.spinning, exporter=self.exporter,
                    torch_threads=self.torch_threads)
        if self.int8:
            info.update(per_channel=self.per_channel, reduce_range=self.reduce_range, matmul_head=self.matmul_head)
        return info


# ----------------------------------------------------------------------------------------------- cache

def _default_cache_dir() -> Path:
    from lib.utils.paths import get_paths
    from lib.utils.run_layout import onnx_cache_dir

    return onnx_cache_dir(get_paths())


def weights_digest(model: nn.Module) -> str:
    """SHA-256 over every state-dict entry (name, dtype, shape, bytes)."""
    hasher = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        hasher.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return hasher.hexdigest()


def sources_digest() -> str:
    """Hash of the model's source files: a change in the network code invalidates the exports."""
    hasher = hashlib.sha256()
    for rel in _MODEL_SOURCES:
        path = _REPO_ROOT / rel
        hasher.update(rel.encode())
        hasher.update(path.read_bytes() if path.is_file() else b"missing")
    return hasher.hexdigest()


class OnnxCache:
    """``<dir>/<digest>.onnx`` + ``<digest>.json`` (the key, the file's size and SHA-256).

    An entry counts only when the side file exists and the ONNX file's checksum matches it; otherwise it is
    rebuilt. Builds take an exclusive file lock, so parallel workers export a model once.
    """

    def __init__(self, root: Path, max_entries: int = 8) -> None:
        self.root = Path(root)
        self.max_entries = max_entries  # older entries are deleted beyond this (a ViT-B export is ~370 MB)
        self.builds = 0  # how many files this cache object has (re)built: tests and logs read it
        remove_stale_temp_files(self.root)  # exports killed before their rename

    @staticmethod
    def digest(key: Mapping[str, Any]) -> str:
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]

    def path_for(self, key: Mapping[str, Any]) -> Path:
        return self.root / f"{self.digest(key)}.onnx"

    def _valid(self, path: Path) -> bool:
        meta_path = path.with_suffix(".json")
        if not (path.is_file() and meta_path.is_file()):
            return False
        try:
            meta = json.loads(meta_path.read_text())
            return path.stat().st_size == meta["size"] and file_sha256(path) == meta["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def get_or_build(self, key: Mapping[str, Any], build: Callable[[Path], None]) -> tuple[Path, bool]:
        """The cached file for ``key`` (built with ``build(tmp_path)`` if missing or damaged), and whether
        it was a cache hit."""
        path = self.path_for(key)
        if self._valid(path):
            return path, True
        self.root.mkdir(parents=True, exist_ok=True)
        with _file_lock(path.with_suffix(".lock")):
            if self._valid(path):  # another process built it while we waited
                return path, True
            if path.exists():
                log.warning("ONNX cache entry %s is damaged or incomplete; rebuilding it", path)
            path.with_suffix(".json").unlink(missing_ok=True)
            with atomic_path(path, suffix=".tmp.onnx") as tmp:
                build(tmp)
                size, sha = tmp.stat().st_size, file_sha256(tmp)
            meta = {"key": dict(key), "size": size, "sha256": sha, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
            atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=1, default=str))
            self.builds += 1
        self.prune(keep={path})
        return path, False

    def prune(self, keep: set[Path] = frozenset()) -> None:
        """Delete the least recently built entries beyond ``max_entries`` (never those in ``keep``)."""
        entries = sorted(self.root.glob("*.onnx"), key=lambda f: f.stat().st_mtime, reverse=True)
        for old in entries[self.max_entries:]:
            if old in keep:
                continue
            for suffix in (".onnx", ".json", ".lock"):
                with contextlib.suppress(OSError):
                    old.with_suffix(suffix).unlink()
            log.info("pruned old ONNX cache entry %s", old)

    def open_session(self, path: Path, options: Any) -> Any:
        import onnxruntime as ort

        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for unreadable models
            raise BackendError(f"ONNX Runtime cannot load {path} ({err}); delete the file to rebuild it") from None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock, the atomic rename still keeps files whole
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------------------------- factory

_ONNX_ONLY_OPTIONS = ("cache_dir", "optimization", "spinning", "exporter", "opset", "per_channel", "validate",
                      "cache_max_entries", "torch_threads", "matmul_head")
_TORCH_ONLY_OPTIONS = ("allow_emulated",)


def build_backend(name: str, model: nn.Module, **options: Any) -> NetworkBackend:
    """Back-end ``name`` (one of :data:`BACKENDS`) around ``model``; ``options`` go to its constructor.

    Options: ``threads`` (all); ONNX: ``cache_dir``, ``optimization``, ``spinning``, ``exporter``, ``opset``,
    ``per_channel``, ``validate``; bf16: ``allow_emulated``. Each family ignores the other's options, so
    one option set can be passed to every back-end; anything else unknown is an error.
    """
    key = str(name).lower().replace("_", "-")
    builders: dict[str, Callable[..., NetworkBackend]] = {
        "eager": EagerBackend,
        "bf16": BF16Backend,
        "bf16-compile": lambda m, **kw: BF16Backend(m, compile=True, **kw),
        "bf16-autocast": AutocastBF16Backend,
        "onnx": OnnxBackend,
        "onnx-int8": lambda m, **kw: OnnxBackend(m, int8=True, **kw),
    }
    if key not in builders:
        raise BackendError(f"unknown network back-end '{name}'; choose one of {list(BACKENDS)}")
    # One option set serves every back-end: each ignores the options that only concern the other family.
    ignored = {"eager": _ONNX_ONLY_OPTIONS + _TORCH_ONLY_OPTIONS}.get(
        key, _TORCH_ONLY_OPTIONS if key.startswith("onnx") else _ONNX_ONLY_OPTIONS)
    for option in ignored:
        options.pop(option, None)
    try:
        return builders[key](model, **options)
    except TypeError as err:
        if "unexpected keyword" in str(err):
            raise BackendError(f"back-end '{key}': {err}") from None
        raise
