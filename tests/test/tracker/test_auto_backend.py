"""``--backend auto``: measured once per machine and model, cached under a key that changes with what matters,
and resolved to a concrete back-end before anything is named after it (results folder, manifest, profile)."""
from __future__ import annotations

import json
import time

import pytest
import torch

from lib.models import build_model, save_checkpoint
from lib.test.tracker import OSTrackTracker
from lib.test.tracker.backends import AUTO, BACKENDS, REGISTRY, AutoChoice, ChoiceCache, auto, build_backend, choice_key
from lib.utils.paths import get_paths
from lib.utils.run_layout import backend_choice_dir, results_root
from tests.model_configs import parity_student


def test_auto_measures_once_then_reads_its_cache(student, cache_dir, tmp_path, monkeypatch):
    cfg, model = student
    options = {"choice_dir": tmp_path, "cache_dir": cache_dir, "candidates": ("onnx",), "threads": 1}
    first = build_backend(AUTO, model, **options)
    assert first.name in ("eager", "onnx") and not first.auto_choice.cached
    assert first.auto_choice.candidates["onnx"]["gate"]["passed"]  # lossless ONNX passes the gate anywhere
    [saved] = tmp_path.glob("*.json")
    stored = json.loads(saved.read_text())
    assert {"cpu", "threads", "model", "torch", "onnxruntime", "openvino"} <= set(stored["key"])
    assert stored["choice"]["backend"] == first.name and stored["key"]["threads"] == 1

    def measure_again(*args, **kwargs):
        raise AssertionError("a cached choice must not be measured again")

    monkeypatch.setattr(auto, "choose_backend", measure_again)
    second = build_backend(AUTO, model, timed=True, **options)
    assert second.name == first.name and second.auto_choice.cached
    assert second.describe()["auto"]["cached"] and second.describe()["backend"] == first.name


def test_choice_key_changes_with_threads_and_model(student, tmp_path):
    cfg, model = student
    candidates = ("onnx-int8", "onnx")
    key = choice_key(model, 2, candidates)
    assert key == choice_key(model, 2, candidates)
    assert key != choice_key(model, 1, candidates)
    other = build_model(cfg).eval()  # other weights
    assert choice_key(other, 2, candidates)["model"] != key["model"]
    cache = ChoiceCache(tmp_path)
    cache.save(key, AutoChoice("onnx", 1.5))
    assert cache.load(key).backend == "onnx" and cache.load(key).cached
    assert cache.load(choice_key(model, 1, candidates)) is None
    assert cache.load(choice_key(other, 2, candidates)) is None


def test_auto_is_a_registry_name_and_eager_off_the_cpu(student):
    assert AUTO in BACKENDS and AUTO not in REGISTRY  # every CLI that checks BACKENDS accepts it
    with pytest.raises(Exception, match="concrete non-eager"):
        build_backend(AUTO, student[1], candidates=("eager",))


def _seed_choice(paths, model, backend: str, threads: int = 1) -> None:
    """A cached choice for ``model`` (as if measured): the run must use it and name it."""
    key = choice_key(model, threads, auto.default_candidates())
    ChoiceCache(backend_choice_dir(paths)).save(key, AutoChoice(backend, 1.5, measured="seeded"))


def test_results_folder_and_manifest_name_the_resolved_backend(parity_dir, shared_data, tmp_path):
    from lib.test.evaluation.tester import TestRun, track_benchmark

    config, model = parity_student(tmp_path, parity_dir)
    checkpoint = save_checkpoint(tmp_path / "student.pth.tar", model, epoch=1)
    paths = get_paths(save_dir=tmp_path / "out")
    loaded = OSTrackTracker.from_config(build_cfg(config), checkpoint=str(checkpoint)).model
    _seed_choice(paths, loaded, "onnx")
    report = track_benchmark(TestRun("ostrack", str(config), dataset="otb",
                                     dataset_root=str(shared_data / "otb_mini_sequences"), sequences=["Couple"],
                                     checkpoint=str(checkpoint), backend=AUTO, save_dir=str(tmp_path / "out"),
                                     progress=False))
    assert report.ok
    folders = [p.name for p in (results_root(paths) / "ostrack").iterdir()]
    assert folders == ["student_onnx"]
    manifest = json.loads((results_root(paths) / "ostrack" / "student_onnx" / "manifest.json").read_text())
    assert manifest["backend"] == "onnx"


def build_cfg(config):
    from lib.config import load_config

    return load_config(str(config), script="ostrack")


def test_profile_json_names_the_resolved_backend(parity_dir, tmp_path, tracking_script):
    config, model = parity_student(tmp_path, parity_dir)
    checkpoint = save_checkpoint(tmp_path / "student.pth.tar", model, epoch=1)
    loaded = OSTrackTracker.from_config(build_cfg(config), checkpoint=str(checkpoint)).model
    _seed_choice(get_paths(), loaded, "onnx")
    script = tracking_script("profile_model")
    out = tmp_path / "profile.json"
    threads = torch.get_num_threads()
    try:
        code = script.main(["--config", str(config), "--checkpoint", str(checkpoint), "--backend", AUTO,
                            "--threads", "1", "--warmup", "1", "--iterations", "2", "--frame_size", "200x160",
                            "--json", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    report = json.loads(out.read_text())
    assert report["backend"] == "onnx" and report["network_ms"] > 0 and report["tracker_ms"] > 0


class _NamedMovedPeak:
    """A back-end the user named whose score peak is off by two cells: it must fail the gate here."""

    name = "moved-peak"
    threads = 1

    def __init__(self, model) -> None:
        self.model = model

    @torch.no_grad()
    def __call__(self, template, search, ce_template_mask=None):
        out = dict(self.model(template, search, ce_template_mask=ce_template_mask))
        out["score_map"] = torch.roll(out["score_map"], shifts=(2, 2), dims=(-2, -1))
        return out


def test_a_named_backend_that_fails_the_gate_is_reported_once_measured(student, tmp_path, caplog, monkeypatch):
    """The user keeps the back-end they named, but hears in one warning line that it fails the gate here; the
    verdict is measured once per machine and model, and the warning repeats on every later use."""
    import logging

    cfg, model = student
    monkeypatch.setattr(auto, "generated_sequences", _short_clip)
    with caplog.at_level(logging.WARNING):
        record = auto.check_named_backend(model, _NamedMovedPeak(model), tmp_path)
    assert not record["passed"] and record["frames"] == 5
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 1 and "'moved-peak' fails the accuracy gate on this machine" in lines[0]
    assert "use --backend eager or auto" in lines[0]

    monkeypatch.setattr(auto, "evaluate_gate", lambda *a, **k: pytest.fail("a stored verdict is not measured again"))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = auto.check_named_backend(model, _NamedMovedPeak(model), tmp_path)
    assert again == record and sum(r.levelno == logging.WARNING for r in caplog.records) == 1


def _short_clip():
    from lib.test.tracker.backends.gate import generated_sequences

    return generated_sequences(6)


def test_eager_and_auto_choices_are_not_gated_again(student, tmp_path):
    cfg, model = student
    assert auto.check_named_backend(model, build_backend("eager", model), tmp_path) is None
    chosen = build_backend("eager", model)
    chosen.auto_choice = AutoChoice("eager", 1.0)
    assert auto.check_named_backend(model, chosen, tmp_path) is None and not list(tmp_path.iterdir())


def test_processes_wanting_the_same_choice_measure_one_at_a_time(tmp_path):
    """torchrun ranks start together: the second waits for the first's measurement instead of timing against it."""
    import threading

    cache, key, spans = ChoiceCache(tmp_path), {"model": "m"}, []
    entered = threading.Event()

    def measure() -> None:
        with cache.measuring(key):
            entered.set()
            start = time.perf_counter()
            time.sleep(0.2)
            spans.append((start, time.perf_counter()))

    first = threading.Thread(target=measure)
    first.start()
    entered.wait(5)
    measure()
    first.join()
    (a_start, a_end), (b_start, b_end) = sorted(spans)
    assert b_start >= a_end  # never both inside
