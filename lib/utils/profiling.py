"""Parameter counts, MACs and latency of tracking networks.

MACs come in two conventions: the published one (linear and conv layers only, what thop reports and what
OSTrack/LoReTrack papers print) and the exact one (plus the attention products q k^T and attn v, with
fused attention counted too).
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode


def _register_cpu_sdpa_formula() -> None:
    """torch's counter has no formula for the CPU flash-attention kernel; give it the standard one."""
    try:
        from torch.utils.flop_counter import register_flop_formula, sdpa_flop_count

        @register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu, get_raw=True)
        def _cpu_sdpa_flop(query, key, value, *args, out_val=None, **kwargs):  # noqa: ANN001
            return sdpa_flop_count(query.shape, key.shape, value.shape)
    except (AttributeError, ImportError, RuntimeError):  # older torch, or already registered
        pass


_register_cpu_sdpa_formula()


def count_macs_published(model: torch.nn.Module, *inputs: torch.Tensor) -> float:
    """MACs as thop counts them, the convention of the OSTrack/LoReTrack papers.

    Module hooks only: Linear (in_features per output element), Conv (kernel volume x in/groups, +1 with a
    bias), LayerNorm/BatchNorm (4 per element when affine); attention products and activations count 0.
    """
    total = 0

    def linear(module: torch.nn.Linear, args: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += module.in_features * out.numel()

    def conv(module: torch.nn.Conv2d, args: tuple, out: torch.Tensor) -> None:
        nonlocal total
        kernel = module.weight[0, 0].numel()
        total += out.numel() * (module.in_channels // module.groups * kernel + (module.bias is not None))

    def norm(module: torch.nn.Module, args: tuple, out: torch.Tensor) -> None:
        nonlocal total
        affine = getattr(module, "affine", False) or getattr(module, "elementwise_affine", False)
        total += 2 * args[0].numel() * (2 if affine else 1)

    handles = []
    for module in model.modules():
        hook = {torch.nn.Linear: linear, torch.nn.Conv2d: conv, torch.nn.LayerNorm: norm,
                torch.nn.BatchNorm2d: norm}.get(type(module))
        if hook is not None:
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return float(total)


def count_macs_exact(model: torch.nn.Module, *inputs: torch.Tensor) -> float:
    """Every matrix product and convolution, attention included (torch's FlopCounterMode / 2)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops() / 2


@dataclass
class Timing:
    """Per-call wall times in milliseconds and their summary (median first: robust to a loaded machine)."""

    median_ms: float
    mean_ms: float
    p90_ms: float
    iterations: int
    samples: list[float]  # per-call milliseconds, in call order

    @classmethod
    def from_samples(cls, samples: Sequence[float]) -> Timing:
        samples = list(samples)
        ordered = sorted(samples)
        return cls(statistics.median(samples), statistics.fmean(samples), ordered[int(0.9 * (len(samples) - 1))],
                   len(samples), samples)

    @property
    def fps(self) -> float:
        return 1000.0 / self.median_ms


def wall_clock(synchronize: bool) -> Callable[[], float]:
    """Seconds, as ``time.perf_counter``; with ``synchronize`` it first waits for the GPU's queued work, so that
    a sample covers the computation, not just its launch (what torch.utils.benchmark's timer does; importing
    that module costs a warning line on machines without a CUDA toolkit)."""
    return _synchronized_clock if synchronize else time.perf_counter


def _synchronized_clock() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def time_callable(fn: Callable[[], object], warmup: int, iterations: int, synchronize: bool = False) -> Timing:
    """Wall time of every call of ``fn`` after ``warmup`` untimed calls (accelerator synchronised if asked).

    One sample per call rather than ``torch.utils.benchmark.Timer``'s block averages: callers pair samples with
    per-call work (each call tracks the next frame), and Timer would add calls of its own and set torch's
    thread count, which the back-ends manage themselves.
    """
    for _ in range(warmup):
        fn()
    clock = wall_clock(synchronize)
    samples = []
    for _ in range(iterations):
        start = clock()
        fn()
        samples.append((clock() - start) * 1000)
    return Timing.from_samples(samples)
