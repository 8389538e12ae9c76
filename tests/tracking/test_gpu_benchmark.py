"""The GPU check script: on CPU its smoke run goes through every section; failures and the budget skip, never crash."""
from __future__ import annotations

import json
import math

import pytest
import torch

from lib.test.evaluation import gpu_benchmark
from lib.test.evaluation.gpu_benchmark import (
    GRAPH_MODELS,
    MODELS,
    SECTIONS,
    GpuBenchmarkSettings,
    format_gpu_benchmark,
    run_gpu_benchmark,
)


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU smoke run; a CUDA machine runs the full one")
def test_cpu_smoke_run_covers_every_section(tmp_path, tracking_script, capsys):
    """The command line's real run, in this process: a separate one would pay torch's import again (about 10 s of
    a loaded 2-core machine)."""
    report = tmp_path / "gpu.json"
    threads = torch.get_num_threads()
    assert tracking_script("gpu_benchmark").main(["--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "| section | model | setting |" in printed and "Smoke run" in printed
    data = json.loads(report.read_text())
    assert data["environment"]["smoke"] and data["environment"]["torch"] == torch.__version__
    assert torch.get_num_threads() == threads  # the smoke run's single thread was handed back
    assert set(data["sections"]) == set(SECTIONS)
    for rows in data["sections"].values():
        for row in rows:
            assert _finite(row["ms"]) and row["ms"] > 0, row
            for key in ("fps", "ratio"):
                assert row[key] is None or _finite(row[key]), row

    def settings(section: str) -> set[tuple[str, str, int | None]]:
        return {(row["model"], row["setting"], row["batch"]) for row in data["sections"][section]}

    assert settings("forward") == {(spec.name, setting, 1) for spec in MODELS
                                   for setting in ("eager fp32", "eager bf16 autocast")}
    assert all(row["ratio"] is not None for row in data["sections"]["forward"])
    assert {batch for _, _, batch in settings("batched")} == {1, 2, 4}
    train = {row["setting"]: row for row in data["sections"]["train"]}
    assert set(train) == {"train fp32", "train bf16 autocast"}
    for row in train.values():  # the library's actor and distiller ran: both distillation terms are real numbers
        assert _finite(row["details"]["Loss/qkv_kd"]) and row["details"]["Loss/qkv_kd"] > 0
        assert _finite(row["details"]["Loss/disc_kd"]) and row["details"]["Loss/disc_kd"] > 0
        assert 0 < row["details"]["teacher_share"] < 1
    assert [row["setting"] for row in data["sections"]["distributed"]][0] == "init_process_group(gloo)"
    assert {model for model, _, _ in settings("cuda_graph")} == set(GRAPH_MODELS)
    assert data["sections"]["compile"] == []
    compile_skips = [skip for skip in data["skipped"] if skip["section"] == "compile"]
    assert {skip["model"] for skip in compile_skips} == set(GRAPH_MODELS)
    assert all("skipped on CPU" in skip["reason"] for skip in compile_skips)
    assert {skip["section"] for skip in data["skipped"] if skip["setting"] == "fp16 autocast"} == {
        "forward", "batched", "train", "cuda_graph"}


def test_budget_and_failures_skip_steps_with_their_reason(monkeypatch):
    result = run_gpu_benchmark(GpuBenchmarkSettings(device="cpu", budget_s=1e-3))
    assert result.rows == []
    budget_skips = {skip.section for skip in result.skipped if skip.reason.startswith("time budget")}
    assert budget_skips == set(SECTIONS) - {"compile"}  # compile is skipped on CPU before the budget is asked
    assert "raise --budget_s" in format_gpu_benchmark(result)

    def broken_init(*args, **kwargs):
        raise RuntimeError("no network interface\nsecond line")

    monkeypatch.setattr(gpu_benchmark.torch.distributed, "init_process_group", broken_init)
    result = run_gpu_benchmark(GpuBenchmarkSettings(device="cpu", sections=["distributed"]))
    assert result.rows == []
    [skip] = result.skipped
    assert skip.reason.startswith("failed: RuntimeError: no network interface (lib/test/evaluation/gpu_benchmark.py:")
    assert "second line" not in skip.reason


@pytest.mark.parametrize(("field", "value", "message"), [
    ("sections", ["forward", "speed"], "unknown ['speed']"),
    ("compile_mode", "fast", "--compile_mode must be one of"),
    ("budget_s", 0, "--budget_s must be positive"),
    ("max_batch", 0, "--max_batch must be at least 1"),
])
def test_bad_settings_name_the_fix(field, value, message):
    with pytest.raises(gpu_benchmark.UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        run_gpu_benchmark(GpuBenchmarkSettings(device="cpu", **{field: value}))
