"""The OpenVINO back-ends: fp32 equals eager, static int8 is calibrated on tracker crops and measured on held-out
crops of other sequences, both are cached, batch-independent and registered with their own options."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from lib.data.embedded import ensure_embedded_benchmark
from lib.models import build_model
from lib.test.evaluation.datasets import get_dataset
from lib.test.tracker.backends import BACKENDS, MAP_NAMES, REGISTRY, BackendError, build_backend
from lib.test.tracker.backends import openvino_backend as ovb
from lib.test.tracker.backends.calibration import CalibrationData, calibration_data, tracker_crops
from lib.utils.errors import UserError
from tests.model_configs import student_config, tiny_config

pytest.importorskip("openvino", reason="the OpenVINO back-ends need openvino (environment.yaml)")
pytest.importorskip("nncf", reason="openvino-int8 needs nncf (environment.yaml)")


def _tiny(ce: bool = False, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(tiny_config(64, 128, ce=ce) if ce else student_config()).eval()


@pytest.fixture(scope="module")
def model():
    return _tiny()


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    """A small embedded benchmark (8 short sequences): calibration and held-out crops come from it."""
    return ensure_embedded_benchmark(tmp_path_factory.mktemp("embedded"), seed=0, num_train=0, num_val=8, num_test=0,
                                     frames=(20, 20), size=(160, 120), progress=False, workers=1)


@pytest.fixture(scope="module")
def data(model, benchmark):
    sequences = list(get_dataset("got10k_val", root=benchmark))
    return CalibrationData("small embedded", tracker_crops(model, sequences[::2], 12),
                           tracker_crops(model, sequences[1::2], 8, seed=1))


@pytest.fixture(scope="module")
def int8(model, data, tmp_path_factory):
    """openvino-int8 of the tiny random model (its gate limit lifted: whether int8 passes depends on the CPU and
    on the weights; the gate's verdict is tested on its own below)."""
    cache = tmp_path_factory.mktemp("ov_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ovb, "MAP_DEVIATION_LIMIT", 1.0)
        backend = build_backend("openvino-int8", model, threads=1, cache_dir=cache, calibration=data)
    return backend, cache


def _inputs(model, batch: int, seed: int):
    return tuple(model.example_inputs(batch=batch, generator=torch.Generator().manual_seed(seed)))


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max()) / max(float(want.abs().max()), 1e-12)


@pytest.mark.parametrize("ce", [False, True], ids=["plain", "ce"])
def test_fp32_matches_eager(ce, tmp_path):
    model = _tiny(ce)
    backend = build_backend("openvino", model, threads=1, cache_dir=tmp_path)
    assert backend.name == "openvino" and backend.supports_batch and backend.uses_ce_mask == ce
    for batch in (1, 3):
        inputs = _inputs(model, batch, seed=batch)
        with torch.no_grad():
            want = model(*inputs)
        got = backend(*inputs)
        for name in (*MAP_NAMES, "pred_boxes"):
            assert got[name].shape == want[name].shape
            assert _rel(got[name], want[name]) <= 1e-5, name
    again = build_backend("openvino", model, threads=1, cache_dir=tmp_path)
    assert again.cache_hit and again.path == backend.path  # the ONNX back-end's export, not a new one


def test_calibration_crops_come_from_the_tracker_and_held_out_sequences_are_disjoint(model, data):
    assert not set(data.calibration.sequences) & set(data.held_out.sequences)
    assert len(data.calibration) == 12 and len(data.held_out) == 8
    assert data.calibration.template.shape[1:] == (3, model.template_size, model.template_size)
    assert data.calibration.search.shape[1:] == (3, model.search_size, model.search_size)
    # ImageNet-normalised image crops (not random draws): values within [(0 - mean) / std, (1 - mean) / std]
    assert -2.2 < float(data.calibration.search.min()) < float(data.calibration.search.max()) < 2.7
    with pytest.raises(ValueError, match="other sequences"):
        CalibrationData("bad", data.calibration, data.calibration)
    assert data.calibration.digest() != data.held_out.digest()


def test_calibration_from_a_named_dataset_refuses_the_gate_sequences(model, benchmark):
    from lib.test.tracker.backends import calibration

    root = benchmark.parent  # 'embedded' generates (or reuses) the val split under this cache folder
    loaded = calibration_data(model, "embedded", root, calibration_crops=5, held_out_crops=5)
    assert len(loaded.calibration.sequences) == len(loaded.held_out.sequences) == 5
    assert not set(loaded.calibration.sequences) & set(loaded.held_out.sequences)
    with pytest.raises(UserError, match="accuracy gate is measured on"):
        calibration.calibration_data(model, "embedded", root, exclude=[loaded.held_out.sequences[0]])


def test_calibration_refuses_the_benchmarks_otb_gate_folder(model, tmp_path, monkeypatch):
    monkeypatch.setenv("LORETRACK_SHARED_DIR", str(tmp_path))
    otb = tmp_path / "data" / "otb_mini_sequences"
    otb.mkdir(parents=True)
    with pytest.raises(UserError, match="accuracy gate is measured on"):
        calibration_data(model, "otb", otb)


@pytest.mark.slow  # the int8 build (NNCF) takes ~15-40 s on 2 shared cores
def test_int8_is_measured_on_held_out_crops_and_cached(model, data, int8):
    backend, cache = int8
    assert backend.name == "openvino-int8" and backend.supports_batch and not backend.cache_hit
    held_out = backend.held_out
    assert held_out["crops"] == len(data.held_out) and held_out["sequences"] == list(data.held_out.sequences)
    # the recorded deviation is the gate's measure of this model on those crops
    maps = [backend(*data.held_out.inputs(i)) for i in range(len(data.held_out))]
    with torch.no_grad():
        ref = [model(*data.held_out.inputs(i)) for i in range(len(data.held_out))]
    measured = max(max(float((m[name] - r[name]).abs().max()) for m, r in zip(maps, ref, strict=True))
                   / max(float(r[name].abs().max()) for r in ref) for name in MAP_NAMES)  # the gate's definition
    assert 0 < held_out["map_deviation"] == pytest.approx(measured, rel=1e-3, abs=1e-7)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ovb, "MAP_DEVIATION_LIMIT", 1.0)
        patch.setattr(ovb.OpenvinoBackend, "_quantise", lambda *a: pytest.fail("a cached model was rebuilt"))
        again = build_backend("openvino-int8", model, threads=1, cache_dir=cache, calibration=data)
    assert again.cache_hit and again.path == backend.path and again.held_out == held_out
    assert sorted(p.suffix for p in cache.iterdir() if p.suffix in (".onnx", ".ovir")) == [".onnx", ".ovir"]
    # other calibration or held-out crops are another model (or another recorded deviation)
    fp32 = backend._fp32_onnx(cache, "legacy", None, True, 8)[0]
    key = backend._int8_key(fp32, data)
    assert ovb.IrCache(cache).path_for(key) == backend.path
    swapped = CalibrationData("swapped", data.held_out, data.calibration)
    assert backend._int8_key(fp32, swapped)["calibration"] != key["calibration"]
    assert backend._int8_key(fp32, swapped)["held_out"] != key["held_out"]


@pytest.mark.slow
def test_int8_beyond_the_gate_limit_is_refused_with_the_measured_deviation(model, data, int8):
    _, cache = int8
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ovb, "MAP_DEVIATION_LIMIT", 1e-9)
        with pytest.raises(BackendError, match=r"openvino-int8' fails the accuracy gate on held-out crops: "
                                               r"relative map deviation \d"):
            build_backend("openvino-int8", model, threads=1, cache_dir=cache, calibration=data)


@pytest.mark.parametrize("which", ["openvino", pytest.param("openvino-int8", marks=pytest.mark.slow)])
def test_a_frame_does_not_depend_on_its_batch_mates(which, model, int8, tmp_path):
    backend = int8[0] if which == "openvino-int8" else build_backend(which, model, threads=1, cache_dir=tmp_path)
    template, search, _ = _inputs(model, 4, seed=5)
    search[1:] *= torch.linspace(0.5, 3, 3).view(3, 1, 1, 1)  # very different mates: one per-batch scale would show
    batched = backend(template, search)
    for i in range(4):
        alone = backend(template[i:i + 1], search[i:i + 1])
        for name in MAP_NAMES:
            assert _rel(batched[name][i:i + 1], alone[name]) <= 1e-5, (i, name)


def test_registry_names_and_options(model, tmp_path):
    assert {"openvino", "openvino-int8"} <= set(BACKENDS)
    shared = {"threads", "cache_dir", "exporter", "opset", "validate", "cache_max_entries", "torch_threads"}
    own = {"performance_hint", "calibration", "calibration_root", "calibration_crops", "held_out_crops"}
    assert REGISTRY["openvino"].accepted_options() == shared | own | {"int8"}
    assert REGISTRY["openvino-int8"].accepted_options() == shared | own
    for name in ("eager", "onnx", "bf16"):
        assert not own & REGISTRY[name].accepted_options() and set(own) <= set(REGISTRY[name].ignored_options)
    # one option set serves every family: ORT's options are dropped by OpenVINO and OpenVINO's by the others
    options = {"threads": 1, "cache_dir": tmp_path, "spinning": "never", "calibration_crops": 8, "torch_threads": 1}
    assert build_backend("openvino", model, **options).name == "openvino"
    assert build_backend("eager", model, **options).name == "eager"
    with pytest.raises(BackendError, match="unexpected keyword"):
        build_backend("openvino", model, cache_dir=tmp_path, bogus=1)
    with pytest.raises(BackendError, match="performance hint"):
        build_backend("openvino", model, cache_dir=tmp_path, performance_hint="FAST")


@pytest.mark.parametrize("name", ["openvino", "openvino-int8"])
def test_missing_openvino_is_a_clear_error(name, model, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "openvino", None)  # 'import openvino' now raises ImportError
    with pytest.raises(BackendError, match=rf"back-end '{name}' needs openvino.*install.*'onnx'"):
        build_backend(name, model, cache_dir=tmp_path)


@pytest.mark.slow
def test_ir_file_round_trip(int8):
    import openvino as ov

    backend, _ = int8
    network, header = ovb.read_ir(ov.Core(), backend.path)
    assert header["held_out"] == backend.held_out and len(network.inputs) == 2
    assert np.isfinite(header["held_out"]["map_deviation"])


def _signal_stack() -> tuple[int, int, int]:
    stack = ovb._SignalStack()
    assert ovb.ctypes.CDLL(None).sigaltstack(None, ovb.ctypes.byref(stack)) == 0
    return stack.ss_sp or 0, stack.ss_flags, stack.ss_size


def test_compiling_leaves_the_threads_signal_stack_alone(tmp_path):
    """OpenVINO installs a signal stack of its own when it compiles and may leave it dangling once the model is
    freed (a later SIGCHLD handled on it crashed the test process): the thread's own stack stays in place."""
    before = _signal_stack()
    first = build_backend("openvino", _tiny(False), threads=1, cache_dir=tmp_path)
    second = build_backend("openvino", _tiny(True), threads=1, cache_dir=tmp_path)
    assert _signal_stack() == before
    del first  # freed out of creation order
    assert _signal_stack() == before
    del second
    assert _signal_stack() == before
