"""What this CPU's matrix units deliver: the rates that bound any back-end, measured in the benchmark's own run.

The network's floor at a precision is its operation count over the machine's GEMM rate at that precision:
``2 x published MACs`` (the published convention counts linear, conv and norm layers) divided by the median rate
of a large square matmul on the same thread count. A back-end's "x floor" is its time over that floor.

int8 is measured two ways, because the fast int8 path differs per CPU and library: ``torch._int_mm`` (oneDNN;
fast with AVX-512 VNNI or AMX, a slow generic loop elsewhere) and ONNX Runtime's ``MatMulInteger`` (MLAS, uint8
activations x int8 weights, the kernel its int8 back-ends run). The int8 floor uses the faster of the two.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

GEMM_SIZE = 2048
PROBE_SIZE = 512  # a first, small timing decides whether the full size fits the time allowed
MAX_SECONDS_PER_RATE = 10.0


@dataclass(frozen=True)
class GemmRate:
    """Median operations per second of an ``n x n x n`` matmul (2 n^3 operations per call)."""

    kind: str  # "fp32", "bf16", "int8 torch._int_mm", "int8 onnxruntime MatMulInteger"
    size: int
    ops_per_s: float
    calls: int

    @property
    def giga(self) -> float:
        return self.ops_per_s / 1e9


def _median_rate(kind: str, call: Callable[[int], Callable[[], object]], repeats: int = 5) -> GemmRate:
    """Time ``call(n)()`` at :data:`PROBE_SIZE`, then at :data:`GEMM_SIZE` when its projected time fits."""
    size = PROBE_SIZE
    run = call(size)
    run()  # warm-up: first-call allocations and kernel selection
    start = time.perf_counter()
    run()
    probe = time.perf_counter() - start
    if probe * (GEMM_SIZE / PROBE_SIZE) ** 3 * (repeats + 1) <= MAX_SECONDS_PER_RATE:
        size, run = GEMM_SIZE, call(GEMM_SIZE)
        run()
    else:
        repeats = max(1, min(repeats, int(MAX_SECONDS_PER_RATE / max(probe, 1e-9))))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return GemmRate(kind, size, 2 * size ** 3 / statistics.median(samples), len(samples))


def _torch_matmul(dtype: torch.dtype) -> Callable[[int], Callable[[], object]]:
    def make(n: int) -> Callable[[], object]:
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=generator).to(dtype)
        b = torch.randn(n, n, generator=generator).to(dtype)
        return lambda: torch.mm(a, b)
    return make


def _torch_int_mm(n: int) -> Callable[[], object]:
    generator = torch.Generator().manual_seed(0)
    a = torch.randint(-128, 128, (n, n), dtype=torch.int8, generator=generator)
    b = torch.randint(-128, 128, (n, n), dtype=torch.int8, generator=generator)
    return lambda: torch._int_mm(a, b)


def _ort_matmul_integer(threads: int) -> Callable[[int], Callable[[], object]]:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    def make(n: int) -> Callable[[], object]:
        rng = np.random.default_rng(0)
        weight = numpy_helper.from_array(rng.integers(-128, 128, (n, n), dtype=np.int8), "weight")
        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["activations", "weight"], ["product"])], "gemm",
            [helper.make_tensor_value_info("activations", TensorProto.UINT8, [n, n])],
            [helper.make_tensor_value_info("product", TensorProto.INT32, [n, n])], initializer=[weight])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        onnx.checker.check_model(model)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        activations = rng.integers(0, 256, (n, n), dtype=np.uint8)
        return lambda: session.run(None, {"activations": activations})
    return make


@dataclass
class GemmPeaks:
    """The rates measured on ``threads`` threads; ``None`` where a kind could not run here."""

    threads: int
    fp32: GemmRate | None
    bf16: GemmRate | None
    int8_torch: GemmRate | None
    int8_onnxruntime: GemmRate | None
    seconds: float

    @property
    def int8(self) -> GemmRate | None:
        """The faster int8 path: what an int8 back-end could at best get from this CPU."""
        rates = [r for r in (self.int8_torch, self.int8_onnxruntime) if r is not None]
        return max(rates, key=lambda r: r.ops_per_s, default=None)

    def floor_ms(self, operations: float, kind: str = "int8") -> float | None:
        """Milliseconds for ``operations`` at the ``kind`` rate ('fp32', 'bf16' or 'int8')."""
        rate = self.int8 if kind == "int8" else getattr(self, kind)
        return 1000 * operations / rate.ops_per_s if rate is not None else None

    def to_dict(self) -> dict[str, Any]:
        rates = {name: (asdict(rate) | {"giga_ops_per_s": rate.giga}) if rate else None
                 for name, rate in (("fp32", self.fp32), ("bf16", self.bf16), ("int8_torch", self.int8_torch),
                                    ("int8_onnxruntime", self.int8_onnxruntime))}
        return {"threads": self.threads, **rates, "int8_best": self.int8.kind if self.int8 else None,
                "seconds": self.seconds}

    def describe(self) -> str:
        parts = []
        for name, rate in (("fp32", self.fp32), ("bf16", self.bf16), ("int8 torch._int_mm", self.int8_torch),
                           ("int8 ORT MatMulInteger", self.int8_onnxruntime)):
            parts.append(f"{name} {rate.giga:.0f} G/s (n={rate.size})" if rate else f"{name} n/a")
        return f"GEMM rates on {self.threads} threads: " + ", ".join(parts)


def measure_gemm_peaks(threads: int) -> GemmPeaks:
    """fp32, bf16 and both int8 matmul rates on ``threads`` threads (torch's thread count is restored)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        fp32 = _median_rate("fp32", _torch_matmul(torch.float32))
        bf16 = _median_rate("bf16", _torch_matmul(torch.bfloat16))
        try:
            int8_torch = _median_rate("int8 torch._int_mm", _torch_int_mm)
        except RuntimeError:  # no int8 matmul kernel for this CPU in this torch build
            int8_torch = None
        try:
            int8_ort = _median_rate("int8 onnxruntime MatMulInteger", _ort_matmul_integer(threads))
        except ImportError:
            int8_ort = None
    finally:
        torch.set_num_threads(before)
    return GemmPeaks(threads, fp32, bf16, int8_torch, int8_ort, time.perf_counter() - start)
