"""tracking/export_model.py and tracking/track_exported.py: deployable ONNX and OpenVINO IR files with a dynamic
batch and tracker metadata, verified against eager, and tracking with such a file where neither torch nor this
project imports."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lib.models import build_model
from lib.test.tracker.backends.base import MAP_NAMES, MapsOnly
from lib.test.tracker.backends.calibration import CalibrationData, CropSet
from lib.test.tracker.backends.onnx_backend import network_inputs
from lib.test.tracker.export import (
    FP32_MAP_LIMIT,
    ExportError,
    export_onnx_int8,
    export_openvino_int8,
    read_metadata,
)
from lib.test.tracker.ostrack import OSTrackTracker
from lib.utils.cli import run_main
from lib.utils.synthetic import moving_square_clip
from tests.model_configs import main_config

REPO_ROOT = Path(__file__).resolve().parents[2]
# Boxes of track_exported.py against eager OSTrackTracker, per coordinate, every frame. Measured: <= 4e-5 px
# (ONNX Runtime fp32 maps differ from eager by ~1e-6 of their max); a crop geometry, normalisation or decoding
# mistake moves boxes by a tenth of a pixel or more.
BOX_TOLERANCE_PX = 1e-2


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny CE model (random weights, seed 0) and its fp32 export, written by the command-line script."""
    folder = tmp_path_factory.mktemp("export")
    cfg = main_config(ce=True)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    torch.save(model.state_dict(), folder / "tiny.pth")
    (folder / "tiny.yaml").write_text(cfg.to_yaml())
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(REPO_ROOT / "tracking"))
        sys.modules.pop("export_model", None)
        script = importlib.import_module("export_model")
        code = run_main(script.main, ["ostrack", str(folder / "tiny.yaml"), "--checkpoint", str(folder / "tiny.pth"),
                                      "--output", str(folder / "out")])
    assert code == 0
    return cfg, model, folder, folder / "out" / "tiny.onnx"


def test_metadata_names_what_a_tracker_needs(exported):
    from lib.test.tracker.backends.onnx_cache import weights_digest
    from lib.utils.provenance import file_sha256

    cfg, model, folder, path = exported
    meta = read_metadata(path)
    assert (meta["template_size"], meta["search_size"], meta["feature_size"]) == (128, 256, 16)
    assert (meta["template_factor"], meta["search_factor"]) == (cfg.TEST.TEMPLATE_FACTOR, cfg.TEST.SEARCH_FACTOR)
    assert (meta["mean"], meta["std"]) == (list(cfg.DATA.MEAN), list(cfg.DATA.STD))
    assert meta["inputs"] == ["template", "search", "ce_template_mask"] and meta["outputs"] == list(MAP_NAMES)
    mask = model.make_ce_template_mask(1, "cpu")[0]
    assert meta["ce_template_mask"]["range"] == "CTR_POINT"
    assert meta["ce_template_mask"]["true_indices"] == torch.nonzero(mask).flatten().tolist()
    assert meta["model"]["weights_sha256"] == weights_digest(model)
    assert meta["model"]["checkpoint_sha256"] == file_sha256(folder / "tiny.pth")
    assert meta["precision"] == "fp32" and meta["batch_independent"] is True
    assert meta["verification"]["passed"] and meta["verification"]["map_deviation"] <= FP32_MAP_LIMIT
    assert {"torch", "onnx", "onnxruntime"} <= set(meta["versions"])
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary file left


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_batch_axis_is_dynamic_and_batch_mates_do_not_interact(exported):
    _, model, _, path = exported
    session = _session(path)
    assert all(i.shape[0] == "batch" for i in session.get_inputs())
    assert all(o.shape[0] == "batch" for o in session.get_outputs())
    names = [i.name for i in session.get_inputs()]
    inputs = [t.numpy() for t in network_inputs(model, seed=5, batch=3)]
    batched = session.run(None, dict(zip(names, inputs, strict=True)))
    for sample in range(3):
        single = session.run(None, {n: t[sample:sample + 1] for n, t in zip(names, inputs, strict=True)})
        for got, want in zip(batched, single, strict=True):
            assert np.abs(got[sample] - want[0]).max() <= 1e-5 * np.abs(want).max()  # measured ~4e-7


def test_onnx_backend_takes_a_batch_and_keeps_batch_1_on_a_fixed_shape_session(exported, tmp_path):
    from lib.test.tracker.backends import build_backend

    _, model, _, _ = exported
    backend = build_backend("onnx", model, cache_dir=tmp_path)
    assert backend.supports_batch
    inputs = network_inputs(model, seed=4, batch=3)
    batched = backend(*inputs)
    assert backend._batch_session is not None and backend._batch_session is not backend.session
    for sample in range(3):
        single = backend(*(t[sample:sample + 1] for t in inputs))
        for name in (*MAP_NAMES, "pred_boxes"):
            want = single[name][0]
            assert (batched[name][sample] - want).abs().max() <= 1e-5 * want.abs().max()


def test_fp32_file_is_within_its_limit_of_eager(exported):
    _, model, _, path = exported
    session = _session(path)
    names = [i.name for i in session.get_inputs()]
    inputs = network_inputs(model, seed=9, batch=2)
    with torch.no_grad():
        want = MapsOnly(model, True)(*inputs)
    got = session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})
    for out, ref in zip(got, want, strict=True):
        assert np.abs(out - ref.numpy()).max() <= FP32_MAP_LIMIT * float(ref.abs().max())


def _blocked_imports(folder: Path) -> dict[str, str]:
    """An environment where ``import torch`` and ``import lib`` raise ImportError (PYTHONPATH shadows them)."""
    (folder / "lib").mkdir(parents=True)
    for module in (folder / "torch.py", folder / "lib" / "__init__.py"):
        module.write_text("raise ImportError('blocked: the exported-file example must not import this')\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env["PYTHONPATH"] = str(folder)
    return env


def _video(path: Path, frames: int = 30) -> tuple[list[np.ndarray], list[float]]:
    """Write a generated clip as an MJPG video; return the frames as OpenCV decodes them and the first box."""
    clip, boxes = moving_square_clip(frames, size=(240, 320), target=40, seed=3)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 240))
    for frame in clip:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    capture, decoded = cv2.VideoCapture(str(path)), []
    ok, frame = capture.read()
    while ok:
        decoded.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        ok, frame = capture.read()
    assert len(decoded) == frames
    return decoded, boxes[0].tolist()


@pytest.mark.e2e
def test_exported_file_tracks_without_torch_or_lib_like_eager(exported, tmp_path):
    cfg, model, _, path = exported
    env = _blocked_imports(tmp_path / "blocked")
    # -P: the script's folder is not put on sys.path; cwd outside the checkout, so only PYTHONPATH and the
    # installed packages can be imported
    python = [sys.executable, "-P", "-s"]
    probe = subprocess.run([*python, "-c", "import torch"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert probe.returncode != 0 and "blocked" in probe.stderr
    probe = subprocess.run([*python, "-c", "import lib"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert probe.returncode != 0 and "blocked" in probe.stderr

    frames, init_box = _video(tmp_path / "clip.avi")
    run = subprocess.run([*python, str(REPO_ROOT / "tracking" / "track_exported.py"), str(path),
                          str(tmp_path / "clip.avi"), "--init_bbox", ",".join(map(str, init_box)),
                          "--output", str(tmp_path / "boxes.txt"), "--threads", "1"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    got = np.loadtxt(tmp_path / "boxes.txt", delimiter=",")

    tracker = OSTrackTracker.from_config(cfg, model=model)
    want = [tracker.initialize(frames[0], {"init_bbox": init_box})["target_bbox"]]
    want += [tracker.track(frame)["target_bbox"] for frame in frames[1:]]
    assert got.shape == (len(frames), 4)
    np.testing.assert_allclose(got, np.asarray(want), rtol=0, atol=BOX_TOLERANCE_PX)


def _crops(model, seed: int, count: int, name: str) -> CropSet:
    template, search, mask = network_inputs(model, seed=seed, batch=count)
    return CropSet((name,), template, search, mask)


@pytest.mark.slow
def test_int8_export_keeps_static_when_it_passes_and_refuses_a_file_that_fails(exported, tmp_path, monkeypatch):
    """Whether int8 passes the gate depends on the CPU and the weights; what must hold everywhere: a kept file
    is static (batch mates independent) when static passes, carries its verdict, and a failing one is not kept."""
    import lib.test.tracker.export as export

    _, model, _, _ = exported
    crops = CalibrationData("random crops", _crops(model, 1, 8, "calibration"), _crops(model, 2, 4, "held-out"))
    target = tmp_path / "tiny.int8.onnx"

    monkeypatch.setattr(export, "MAP_DEVIATION_LIMIT", 1.0)  # everything passes: static is the one kept
    kept = export_onnx_int8(model, target, {"search_size": 256}, crops)
    meta = read_metadata(target)
    assert kept.precision == meta["precision"] == "int8-static" and meta["batch_independent"] is True
    assert meta["verification"]["map_deviation"] == kept.verification["map_deviation"] <= 1.0
    session = _session(target)
    names = [i.name for i in session.get_inputs()]
    inputs = [t.numpy() for t in network_inputs(model, seed=3, batch=3)]
    batched = session.run(None, dict(zip(names, inputs, strict=True)))
    single = session.run(None, {n: t[1:2] for n, t in zip(names, inputs, strict=True)})
    for got, want in zip(batched, single, strict=True):  # static scales: a frame does not depend on its mates
        assert np.abs(got[1] - want[0]).max() <= 1e-5 * np.abs(want).max()

    target.unlink()
    monkeypatch.setattr(export, "MAP_DEVIATION_LIMIT", 0.0)  # nothing passes: no file, one clear error
    with pytest.raises(ExportError, match="fails the accuracy gate"):
        export_onnx_int8(model, target, {}, crops)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--format", "tflite"], "argument --format: invalid choice"),
    (["--checkpoint", "missing.pth"], "checkpoint not found"),
])
def test_bad_input_is_one_line_and_exit_code_2(exported, tracking_script, capsys, args, message):
    _, _, folder, _ = exported
    argv = ["ostrack", str(folder / "tiny.yaml"), "--checkpoint", str(folder / "tiny.pth"), "--output",
            str(folder / "bad"), *args]
    assert run_main(tracking_script("export_model").main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_missing_openvino_is_refused_before_any_work(exported, tracking_script, capsys, monkeypatch):
    _, _, folder, _ = exported
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    argv = ["ostrack", str(folder / "tiny.yaml"), "--checkpoint", str(folder / "tiny.pth"), "--output",
            str(folder / "no_openvino"), "--format", "onnx", "openvino"]
    assert run_main(tracking_script("export_model").main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs openvino" in err
    assert not (folder / "no_openvino" / "tiny.onnx").exists()


# -- OpenVINO IR
@pytest.fixture(scope="module")
def exported_ir(exported):
    """The tiny model's OpenVINO IR, written by the command-line script."""
    pytest.importorskip("openvino", reason="the OpenVINO IR export needs openvino (environment.yaml)")
    cfg, model, folder, onnx_path = exported
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(REPO_ROOT / "tracking"))
        sys.modules.pop("export_model", None)
        script = importlib.import_module("export_model")
        code = run_main(script.main, ["ostrack", str(folder / "tiny.yaml"), "--checkpoint", str(folder / "tiny.pth"),
                                      "--output", str(folder / "ir"), "--format", "openvino"])
    assert code == 0
    return model, onnx_path, folder / "ir" / "tiny.xml"


def _compiled_ir(path: Path):
    import openvino as ov

    return ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})


def _ir_maps(compiled, inputs) -> list[np.ndarray]:
    out = compiled([t.numpy() if isinstance(t, torch.Tensor) else t for t in inputs])
    return [np.array(out[port]) for port in compiled.outputs]


def test_openvino_ir_carries_the_onnx_metadata_and_its_own_verdict(exported_ir):
    _, onnx_path, path = exported_ir
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.bin", "tiny.xml"]  # no temporary file left
    meta, onnx_meta = read_metadata(path), read_metadata(onnx_path)
    assert set(meta) == set(onnx_meta)
    for key in set(meta) - {"versions", "verification"}:
        assert meta[key] == onnx_meta[key], key
    assert meta["precision"] == "fp32" and meta["batch_independent"] is True
    assert meta["verification"]["passed"] and meta["verification"]["map_deviation"] <= FP32_MAP_LIMIT
    assert meta["verification"]["inputs"] == "seeded random crops at batch 1 and 3"
    assert {"torch", "onnxruntime", "openvino"} <= set(meta["versions"])


def test_openvino_ir_has_a_dynamic_batch_and_matches_eager(exported_ir):
    model, _, path = exported_ir
    compiled = _compiled_ir(path)
    assert all(port.get_partial_shape()[0].is_dynamic for port in (*compiled.inputs, *compiled.outputs))
    inputs = network_inputs(model, seed=7, batch=3)
    batched = _ir_maps(compiled, inputs)
    with torch.no_grad():
        eager = MapsOnly(model, True)(*inputs)
    for got, want in zip(batched, eager, strict=True):
        assert np.abs(got - want.numpy()).max() <= FP32_MAP_LIMIT * float(want.abs().max())  # measured ~1e-6
    for sample in range(3):
        single = _ir_maps(compiled, [t[sample:sample + 1] for t in inputs])
        for got, want in zip(batched, single, strict=True):
            assert np.abs(got[sample] - want[0]).max() <= 1e-5 * np.abs(want).max()


@pytest.mark.slow
def test_openvino_int8_export_is_kept_when_it_passes_and_refused_when_it_fails(exported, tmp_path, monkeypatch):
    """As for ONNX int8: the gate's verdict depends on the CPU and the weights; a kept file is static int8 with a
    dynamic batch and its verdict, a failing one leaves no file (neither .xml nor .bin)."""
    pytest.importorskip("nncf", reason="openvino-int8 needs nncf (environment.yaml)")
    import lib.test.tracker.export as export

    _, model, _, _ = exported
    crops = CalibrationData("random crops", _crops(model, 1, 8, "calibration"), _crops(model, 2, 4, "held-out"))
    target = tmp_path / "tiny.int8.xml"

    monkeypatch.setattr(export, "MAP_DEVIATION_LIMIT", 1.0)
    kept = export_openvino_int8(model, target, {"search_size": 256}, crops)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.int8.bin", "tiny.int8.xml"]
    meta = read_metadata(target)
    assert kept.precision == meta["precision"] == "int8-static" and meta["batch_independent"] is True
    assert meta["search_size"] == 256 and {"openvino", "nncf"} <= set(meta["versions"])
    assert meta["verification"]["map_deviation"] == kept.verification["map_deviation"] <= 1.0
    assert meta["verification"]["inputs"] == "4 held-out crops of random crops, batch 1"
    compiled = _compiled_ir(target)
    inputs = network_inputs(model, seed=3, batch=3)
    batched = _ir_maps(compiled, inputs)
    single = _ir_maps(compiled, [t[1:2] for t in inputs])
    for got, want in zip(batched, single, strict=True):  # static scales: a frame does not depend on its mates
        assert np.abs(got[1] - want[0]).max() <= 1e-5 * np.abs(want).max()

    for path in tmp_path.iterdir():
        path.unlink()
    monkeypatch.setattr(export, "MAP_DEVIATION_LIMIT", 0.0)  # nothing passes: no file, one clear error
    with pytest.raises(ExportError, match="fails the accuracy gate"):
        export_openvino_int8(model, target, {}, crops)
    assert list(tmp_path.iterdir()) == []


def test_track_exported_bad_input_is_one_line_and_exit_code_2(tmp_path):
    run = subprocess.run([sys.executable, str(REPO_ROOT / "tracking" / "track_exported.py"),
                          str(tmp_path / "missing.onnx"), str(tmp_path), "--init_bbox", "1,2,3,4"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1
    assert "model file not found" in run.stderr
