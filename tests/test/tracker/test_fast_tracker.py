"""Fast CPU back-ends (bf16, ONNX Runtime fp32 / int8): agreement with eager fp32, the ONNX cache, the tracker
and the benchmark script. Tiny networks (the parity fixtures' architecture) keep this quick.

Agreement on tracking: the fixture weights are barely trained (the tracker loses the target within a few
frames; neighbouring score peaks differ by < 10 %), so any lossy arithmetic (bf16, int8) changes the argmax on
some frame and the free-running trajectory parts from eager's for good. Lossless ONNX fp32 must follow eager
frame by frame; whether a lossy back-end may stand in for eager is decided per machine by the accuracy gate
(tests/test/tracker/test_backend_gate.py), never asserted here.
"""
from __future__ import annotations

import importlib
import json
import sys

import numpy as np
import pytest
import torch

from lib.models import build_model, save_checkpoint
from lib.test.evaluation import gemm_peaks
from lib.test.evaluation.speed_report import BenchmarkResult, format_report
from lib.test.tracker import OSTrackTracker
from lib.test.tracker.backends import (
    BACKENDS,
    BackendError,
    EagerBackend,
    OnnxBackend,
    TimedBackend,
    build_backend,
    cpu_features,
    native_bf16_supported,
)
from lib.test.tracker.backends.base import MapsOnly
from lib.test.tracker.backends.onnx_backend import MapsOnlyMatMulHead
from lib.utils.boxes import pytracking_box_iou
from lib.utils.paths import REPO_ROOT
from tests.model_configs import main_config, tiny_config

NEEDS_BF16 = pytest.mark.skipif(not native_bf16_supported(), reason="CPU without native bf16 (AVX-512 BF16 / AMX)")
# Max |deviation| from eager on the maps (values: score/size in (0, 1), offsets ~ +-2 cells). Measured on the
# tiny student: ONNX fp32 < 2e-6; bf16 <= 7e-3; int8 <= 1e-2. ViT-B 128/64 (random weights): bf16 6e-3,
# int8 1.2e-2 (score), 4e-2 (offset).
TOLERANCE = {"eager": (0, 0), "onnx": (1e-5, 1e-5), "bf16": (2e-2, 5e-2), "bf16-autocast": (2e-2, 5e-2),
             "onnx-int8": (3e-2, 6e-2), "bf16-compile": (2e-2, 5e-2)}
LOSSY = [pytest.param("bf16", marks=NEEDS_BF16), pytest.param("bf16-autocast", marks=NEEDS_BF16), "onnx-int8"]


def _inputs(cfg, seed):
    gen = torch.Generator().manual_seed(seed)
    t, s = cfg.TEST.TEMPLATE_SIZE, cfg.TEST.SEARCH_SIZE
    return torch.randn(1, 3, t, t, generator=gen), torch.randn(1, 3, s, s, generator=gen)


def _max_dev(backend, model, cfg, seeds=(0, 1, 2)):
    dev = {"score_map": 0.0, "size_map": 0.0, "offset_map": 0.0}
    mask = model.make_ce_template_mask(1, "cpu")
    for seed in seeds:
        template, search = _inputs(cfg, seed)
        with torch.no_grad():
            ref = model(template, search, ce_template_mask=mask)
        out = backend(template, search, mask)
        for name in dev:
            assert out[name].dtype == torch.float32 and out[name].shape == ref[name].shape
            dev[name] = max(dev[name], float((out[name] - ref[name]).abs().max()))
    return dev


def _track(tracker, frames, init_bbox, states=None):
    """Boxes of a free run, or (``states``) of each frame tracked from the given previous boxes."""
    boxes = [tracker.initialize(frames[0], {"init_bbox": init_bbox})["target_bbox"]]
    for i, frame in enumerate(frames[1:]):
        if states is not None:
            tracker.state = list(states[i])
        boxes.append(tracker.track(frame)["target_bbox"])
    return np.asarray(boxes)


# ------------------------------------------------------------------------------------------ network outputs

@pytest.mark.parametrize("name", ["eager", "onnx", *LOSSY])
def test_backend_maps_match_eager(name, student, cache_dir):
    cfg, model = student
    backend = build_backend(name, model, cache_dir=cache_dir)
    map_tol, offset_tol = TOLERANCE[name]
    dev = _max_dev(backend, model, cfg)
    assert dev["score_map"] <= map_tol and dev["size_map"] <= map_tol, dev
    assert dev["offset_map"] <= offset_tol, dev
    boxes = backend(*_inputs(cfg, 0))["pred_boxes"]
    assert boxes.shape == (1, 1, 4) and torch.isfinite(boxes).all()


def test_ce_network_exports_exactly(parity_dir, cache_dir):
    """Candidate elimination (TopK + gathers, a template-mask input) exports without losing anything."""
    cfg = main_config(ce=True)
    model = build_model(cfg)
    model.load_state_dict(torch.load(parity_dir / "state_dict_main.pt", weights_only=True))
    model.eval()
    backend = build_backend("onnx", model, cache_dir=cache_dir)
    assert "ce_template_mask" in backend.input_names
    assert max(_max_dev(backend, model, cfg, seeds=(0, 1)).values()) < 1e-5
    template, search = _inputs(cfg, 3)
    other_mask = torch.zeros(1, model.backbone.num_template_tokens, dtype=torch.bool)
    other_mask[0, :10] = True  # e.g. a GT_BOX mask: the mask is an input, not baked into the graph
    with torch.no_grad():
        ref = model(template, search, ce_template_mask=other_mask)
    got = backend(template, search, other_mask)
    assert float((got["score_map"] - ref["score_map"]).abs().max()) < 1e-5
    with pytest.raises(ValueError, match="template mask"):
        backend(template, search, None)
    for name in ("onnx-int8", *(["bf16"] if native_bf16_supported() else [])):  # lossy CE: kept tokens may differ
        out = build_backend(name, model, cache_dir=cache_dir)(template, search, other_mask)
        assert out["score_map"].shape == ref["score_map"].shape and torch.isfinite(out["offset_map"]).all()


@pytest.mark.slow
def test_dynamo_export_has_a_dynamic_batch(tmp_path):
    """The dynamo exporter's graph of a CE network takes any batch: batch 1 and 3 match eager (traced at 2)."""
    from lib.test.tracker.backends.onnx_backend import deviation_from_eager, export_network

    torch.manual_seed(0)
    model = build_model(tiny_config(64, 128, ce=True), training=False).eval()
    export_network(model, tmp_path / "dynamo.onnx", exporter="dynamo")
    deviation = deviation_from_eager(model, tmp_path / "dynamo.onnx", batches=(1, 3))
    assert max(d["rel"] for d in deviation.values()) < 1e-5, deviation


def test_head_as_matmul_is_the_same_function(student):
    """The int8 export's head rewrite (3x3 convs + batch norm -> one MatMul on shifted tokens) changes nothing."""
    cfg, model = student
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))  # real statistics to fold
    template, search = _inputs(cfg, 5)
    with torch.no_grad():
        ref = MapsOnly(model, False)(template, search)
        got = MapsOnlyMatMulHead(model, False)(template, search)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_int8_quantises_the_backbone_and_leaves_the_head_in_fp32(student, cache_dir):
    """Every backbone MatMul with a weight becomes an integer MatMul; the head's MatMul stays a float MatMul."""
    import onnx

    _, model = student
    graph = onnx.load(str(OnnxBackend(model, int8=True, cache_dir=cache_dir).path)).graph
    weights = {init.name for init in graph.initializer}
    floats = [node.name for node in graph.node if node.op_type == "MatMul" and set(node.input) & weights]
    integers = [node.name for node in graph.node if node.op_type == "MatMulInteger"]
    assert floats == ["/head/MatMul"], floats
    assert len(integers) == 4 * len(model.backbone.blocks) and all("/backbone/" in name for name in integers)


@pytest.mark.slow
@pytest.mark.timeout(900)  # a cold inductor compile on a loaded machine
@NEEDS_BF16
def test_bf16_compile_matches_eager(student):
    cfg, model = student
    backend = build_backend("bf16-compile", model)
    dev = _max_dev(backend, model, cfg)
    assert dev["score_map"] <= TOLERANCE["bf16-compile"][0] and dev["offset_map"] <= TOLERANCE["bf16-compile"][1]


# ------------------------------------------------------------------------------------------ errors

def test_unknown_backend_is_a_clear_error(student):
    cfg, model = student
    with pytest.raises(BackendError, match=r"unknown network back-end 'tensorrt'.*onnx-int8"):
        build_backend("tensorrt", model)
    with pytest.raises(BackendError, match="unknown network back-end 'fp8'"):
        OSTrackTracker.from_config(cfg, model=model, backend="fp8")
    with pytest.raises(BackendError, match="spinning"):
        build_backend("onnx", model, spinning="sometimes")
    with pytest.raises(BackendError, match="unexpected keyword"):
        build_backend("onnx", model, thread=2)
    assert set(BACKENDS) >= {"eager", "bf16", "onnx", "onnx-int8"}


def test_bf16_without_native_support_is_refused(student, monkeypatch):
    monkeypatch.setattr(cpu_features, "native_bf16_supported", lambda: False)
    with pytest.raises(BackendError, match="native bfloat16.*onnx-int8"):
        build_backend("bf16", student[1])


# ------------------------------------------------------------------------------------------ ONNX cache

def test_onnx_cache_is_reused_and_damaged_entries_rebuilt(student, tmp_path):
    cfg, model = student
    first = OnnxBackend(model, cache_dir=tmp_path)
    assert not first.cache_hit and first.cache.builds == 1
    mtime = first.path.stat().st_mtime_ns
    second = OnnxBackend(model, cache_dir=tmp_path)
    assert second.cache_hit and second.cache.builds == 0 and second.path == first.path
    assert first.path.stat().st_mtime_ns == mtime  # not exported again
    assert not list(tmp_path.glob(".*tmp*")), "no temporary file may be left behind"

    first.path.write_bytes(first.path.read_bytes()[:1000])  # a half-written / damaged file
    third = OnnxBackend(model, cache_dir=tmp_path)
    assert not third.cache_hit and third.cache.builds == 1
    assert _max_dev(third, model, cfg, seeds=(0,))["score_map"] < 1e-5

    first.path.with_suffix(".json").unlink()  # the side file is missing: the entry does not count
    assert not OnnxBackend(model, cache_dir=tmp_path).cache_hit

    int8 = OnnxBackend(model, int8=True, cache_dir=tmp_path)
    again = OnnxBackend(model, int8=True, cache_dir=tmp_path)
    assert not int8.cache_hit and again.cache_hit and again.path != first.path

    other = build_model(cfg).eval()  # other weights -> another entry
    assert OnnxBackend(other, cache_dir=tmp_path).path != first.path


# ------------------------------------------------------------------------------------------ tracker

def test_tracker_with_onnx_follows_eager_on_couple(student, couple, cache_dir, tmp_path):
    """Free-running, frame by frame, on all 140 frames of the real OTB sequence Couple."""
    from lib.test.tracker.factory import TrackerFactory

    cfg, model = student
    frames, init_bbox, _ = couple
    eager = _track(OSTrackTracker.from_config(cfg, model=model), frames, init_bbox)
    (tmp_path / "student.yaml").write_text(cfg.to_yaml())
    checkpoint = save_checkpoint(tmp_path / "student.pth.tar", model, epoch=1)
    factory = TrackerFactory(str(tmp_path / "student.yaml"), "ostrack", str(checkpoint), tracker_options={
        "backend": "onnx", "backend_options": {"cache_dir": str(cache_dir), "threads": 1}})
    tracker = factory()
    assert tracker.backend.name == "onnx" and tracker.network_fn is tracker.backend
    fast = _track(tracker, frames, init_bbox)
    iou = pytracking_box_iou(fast, eager)
    assert iou.min() >= 0.9, iou
    np.testing.assert_allclose(fast, eager, atol=1e-2)


# ------------------------------------------------------------------------------------------ timing wrapper

def test_timed_backend_times_every_network_call_without_changing_the_tracker(student):
    """The profilers' timing: one sample per tracked frame, from the tracker's own back-end, same boxes."""
    from lib.utils.synthetic import moving_square_clip

    cfg, model = student
    frames, boxes = moving_square_clip(6, size=(160, 200))
    plain = OSTrackTracker.from_config(cfg, model=model)
    tracker = OSTrackTracker.from_config(cfg, model=model, backend_options={"timed": True})
    timed = tracker.backend
    assert isinstance(timed, TimedBackend) and tracker.network_fn is timed
    assert isinstance(timed.backend, EagerBackend) and timed.name == "eager" and timed.describe()["backend"] == "eager"
    expected = _track(plain, frames, boxes[0].tolist())
    got = _track(tracker, frames, boxes[0].tolist())
    np.testing.assert_array_equal(got, expected)
    assert len(timed.samples_ms) == len(frames) - 1 and all(ms > 0 for ms in timed.samples_ms)
    assert timed.timing().iterations == len(frames) - 1
    timed.reset()
    assert timed.samples_ms == []


def test_timed_backend_wraps_any_backend_or_callable(student):
    cfg, model = student
    timed = build_backend("eager", model, timed=True)
    assert isinstance(timed, TimedBackend)
    template, search = _inputs(cfg, 0)
    out = timed(template, search, None)
    assert out["score_map"].shape[-1] == model.search_feat_size and len(timed.samples_ms) == 1
    calls = []
    wrapped = TimedBackend(lambda *inputs: calls.append(inputs) or {"score_map": None})
    wrapped(template, search)
    assert len(calls) == 1 and len(wrapped.samples_ms) == 1
    with pytest.raises(AttributeError):
        wrapped.describe()  # a plain callable has none


# ------------------------------------------------------------------------------------------ benchmark script

def test_benchmark_script_reports_ratios(student, tmp_path, cache_dir, shared_data, monkeypatch, capsys):
    cfg, model = student
    (tmp_path / "student.yaml").write_text(cfg.to_yaml())
    checkpoint = save_checkpoint(tmp_path / "student.pth.tar", model, epoch=1)
    monkeypatch.syspath_prepend(str(REPO_ROOT / "tracking"))
    monkeypatch.setattr(gemm_peaks, "GEMM_SIZE", 128)  # the floors' arithmetic, not this machine's peak
    monkeypatch.setattr(gemm_peaks, "PROBE_SIZE", 64)
    sys.modules.pop("benchmark_fast_tracker", None)
    script = importlib.import_module("benchmark_fast_tracker")
    out = tmp_path / "bench.json"
    code = script.main(["--config", str(tmp_path / "student.yaml"), "--checkpoint", str(checkpoint),
                        "--backends", "eager", "onnx", "--threads", "1", "--warmup", "1", "--iterations", "3",
                        "--otb_root", str(shared_data / "otb_mini_sequences"), "--sequences", "Couple", "Crossing",
                        "--max_frames", "12", "--cache_dir", str(cache_dir), "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["eager_network_ms"] > 0 and report["sequences"] == {"Couple": 12, "Crossing": 12}
    onnx = report["backends"]["onnx"]
    assert onnx["network_ratio"] > 0 and onnx["e2e_ratio"] > 0 and onnx["tracker"]["frames"] == 22
    assert onnx["agreement"]["iou_min"] >= 0.9 and onnx["agreement_same_state"]["iou_min"] >= 0.9
    assert onnx["deviation"]["score_map"]["abs"] < 1e-5
    assert onnx["gate"]["passed"] and onnx["gate"]["frames"] == 22 and report["backends"]["eager"]["gate"]["passed"]
    # ONNX fp32 follows eager's trajectory, so it scores the same against the ground truth
    assert set(onnx["vs_ground_truth"]) == {"Couple", "Crossing"}
    for name, value in report["backends"]["eager"]["vs_ground_truth"].items():
        assert 0.0 <= value <= 1.0 and abs(onnx["vs_ground_truth"][name] - value) < 1e-3
    # the control row: eager plus noise of the stated size, tracked like a back-end but never the "best"
    control = report["backends"]["fp32+noise"]
    assert control["info"]["noise_relative_sigma"] == 2.5e-4 and control["tracker"]["frames"] == 22
    assert 0 < max(d["rel"] for d in control["deviation"].values()) < 2e-3
    assert report["best"][0] == "onnx"
    floors = report["floors"]  # the network's operations at this CPU's GEMM rates, measured in the same run
    for kind in ("fp32", "int8"):
        assert floors[f"{kind}_floor_ms"] > 0
    rate = max(r["ops_per_s"] for r in (floors["gemm"]["int8_torch"], floors["gemm"]["int8_onnxruntime"]) if r)
    assert abs(floors["int8_floor_ms"] - 1000 * floors["operations"] / rate) < 1e-9 * floors["int8_floor_ms"]
    assert abs(onnx["tracker_x_int8_floor"] - onnx["tracker"]["mean_ms"] / floors["int8_floor_ms"]) < 1e-9
    text = capsys.readouterr().out
    assert "e2e x" in text and "target 3.0x end to end" in text and "fp32+noise" in text and "| pass" in text
    assert "floor x" in text and "within 2x of the int8 floor" in text


def test_benchmark_report_is_formatted_without_being_changed():
    """The printed table only reads the result; the JSON's 'best' comes from the result itself."""
    import copy

    deviation = {name: {"abs": 1e-3, "rel": 1e-3} for name in ("score_map", "size_map", "offset_map")}
    agreement = {"iou_min": 0.95, "iou_mean": 0.99, "frames_below_0.9": 0, "frames": 4,
                 "per_sequence": {"Couple": {"min": 0.95, "mean": 0.99, "frames_below_0.9": 0}}}

    def entry(ratio):
        return {"load_start": 1.0, "build_s": 0.1, "info": {}, "network_ms": 10.0, "network_ratio": ratio,
                "eager_network_ms_paired": 10.0, "network_ratio_paired": ratio,
                "tracker": {"frames": 4, "fps": 50.0, "mean_ms": 20.0, "median_ms": 20.0,
                            "network_in_frame_ms": 10.0, "outside_network_ms": 10.0},
                "tracker_fps": 50.0, "e2e_ratio": ratio, "e2e_ratio_paired": ratio,
                "vs_ground_truth": {"Couple": 0.8}, "agreement": agreement, "agreement_same_state": agreement,
                "deviation": deviation, "load_end": 1.0}

    result = BenchmarkResult(eager_network_ms=20.0, eager_network_fps=50.0, eager_load=1.0, template_embed_ms=0.1,
                             template_tokens=16, backends={"eager": entry(1.0), "onnx-int8": entry(3.5),
                                                           "fp32+noise": entry(9.0), "bf16": {"skipped": "no bf16"}},
                             eager_network_ms_end=21.0, eager_load_end=1.0)
    before = copy.deepcopy(result)
    text = format_report(result)
    assert result == before
    assert "skipped: no bf16" in text and "target 3.0x end to end: reached (best: onnx-int8 at 3.50x" in text
    report = result.to_dict()
    assert report["best"] == ("onnx-int8", 3.5, 0.95, 3.5) and list(report)[-1] == "best"
