"""CPU feature flags: which fast arithmetic this machine has, so that back-ends refuse paths slower than fp32."""
from __future__ import annotations

from pathlib import Path

import torch

from lib.test.tracker.backends.base import BackendError


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


def int8_dot_product_supported() -> bool:
    """VNNI makes u8 x s8 products exact; without it MLAS may saturate unless the range is reduced."""
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags())


def require_native_bf16(backend_name: str, allow_emulated: bool) -> None:
    """Refuse a bf16 back-end on a CPU that would only emulate bf16 (slower than fp32), unless forced."""
    if allow_emulated or native_bf16_supported():
        return
    raise BackendError(f"back-end '{backend_name}' needs a CPU with native bfloat16 (AVX-512 BF16 or AMX; this CPU "
                       "has neither, so bf16 would be slower than fp32). Use 'onnx-int8' or 'onnx' for speed, "
                       "'eager' for the reference, or pass allow_emulated=True to force it")
