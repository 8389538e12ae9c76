"""The accuracy gate decides per machine whether a lossy back-end may stand in for eager fp32.

What must hold on every CPU: the gate measures what it says (checked against hand-made back-ends of known
deviation and against this test's own same-state tracking), a failing candidate is rejected with one warning
line, and whatever passes the gate on this machine keeps the gate's promise. Whether int8 or bf16 passes is
this machine's business: both outcomes are checked for what they must imply.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import pytest
import torch

from lib.test.tracker import OSTrackTracker
from lib.test.tracker.backends import (
    MAP_DEVIATION_LIMIT,
    MAP_NAMES,
    SAME_STATE_IOU_LIMIT,
    GateSequence,
    build_backend,
    choose_backend,
    evaluate_gate,
    native_bf16_supported,
    reference_run,
)
from lib.test.tracker.backends.gate import generated_sequences
from lib.utils.boxes import pytracking_box_iou

GATED = ["onnx", "onnx-int8", *(["bf16"] if native_bf16_supported() else [])]
COUPLE_FRAMES = 40  # of the real OTB sequence Couple (140): enough for peaks that move, short enough for CI


class Scaled:
    """Eager with every map multiplied by (1 + ``eps``): relative deviation exactly ``eps`` on each map."""

    def __init__(self, model, eps: float) -> None:
        self.model, self.eps = model, eps

    @torch.no_grad()
    def __call__(self, template, search, ce_template_mask=None):
        out = self.model(template, search, ce_template_mask=ce_template_mask)
        return {name: out[name] * (1 + self.eps) for name in MAP_NAMES}


class MovedPeak:
    """Eager with the score map rolled by two cells: the box jumps, the maps deviate by their full size."""

    def __init__(self, model, delay_s: float = 0.0) -> None:
        self.model, self.delay_s = model, delay_s

    @torch.no_grad()
    def __call__(self, template, search, ce_template_mask=None):
        out = dict(self.model(template, search, ce_template_mask=ce_template_mask))
        out["score_map"] = torch.roll(out["score_map"], shifts=(2, 2), dims=(-2, -1))
        return out


class Delayed:
    """Exactly eager, ``delay_s`` slower per call."""

    def __init__(self, model, delay_s: float) -> None:
        self.model, self.delay_s = model, delay_s

    @torch.no_grad()
    def __call__(self, template, search, ce_template_mask=None):
        time.sleep(self.delay_s)
        return self.model(template, search, ce_template_mask=ce_template_mask)


@pytest.fixture(scope="module")
def couple_frames(couple):
    frames, init_bbox, _ = couple
    return frames[:COUPLE_FRAMES], list(init_bbox)


@pytest.fixture(scope="module")
def couple_gate(student, couple_frames):
    cfg, model = student
    frames, init_bbox = couple_frames
    sequences = [GateSequence("Couple", frames, init_bbox)]

    def make_tracker(network_fn):
        return OSTrackTracker.from_config(cfg, model=model, network_fn=network_fn)

    eager = build_backend("eager", model)
    return sequences, make_tracker, reference_run(eager, sequences, make_tracker)


def _same_state(cfg, model, backend, frames, init_bbox, states):
    """This test's own same-state tracking: boxes and the maps of every call."""
    maps = []

    def network_fn(template, search, mask=None):
        out = backend(template, search, mask)
        maps.append({name: out[name].float() for name in MAP_NAMES})
        return out

    tracker = OSTrackTracker.from_config(cfg, model=model, network_fn=network_fn)
    boxes = [tracker.initialize(frames[0], {"init_bbox": init_bbox})["target_bbox"]]
    for i, frame in enumerate(frames[1:]):
        tracker.state = list(states[i])
        boxes.append(tracker.track(frame)["target_bbox"])
    return np.asarray(boxes), maps


@pytest.mark.parametrize("eps, passes", [(4e-3, True), (2.5e-2, False)])
def test_gate_measures_the_relative_map_deviation(student, eps, passes):
    cfg, model = student
    sequences = generated_sequences(8)
    make_tracker = lambda fn: OSTrackTracker.from_config(cfg, model=model, network_fn=fn)  # noqa: E731
    ref = reference_run(build_backend("eager", model), sequences, make_tracker)
    gate = evaluate_gate("scaled", Scaled(model, eps), ref, sequences, make_tracker)
    for name in MAP_NAMES:
        assert gate.deviation[name]["rel"] == pytest.approx(eps, rel=1e-3), name
    assert gate.frames == 7 and gate.passed is passes and gate.map_limit == MAP_DEVIATION_LIMIT
    if passes:
        assert gate.failure() is None and gate.iou_min >= SAME_STATE_IOU_LIMIT
    else:
        line = gate.failure()
        assert "'scaled'" in line and f"{eps:.1e}" in line and "limit 1e-02" in line and "\n" not in line


def test_gate_iou_is_the_same_state_iou_on_every_frame(student, couple_frames, couple_gate):
    """A moved score peak: the gate's per-frame IoU equals this test's own same-state tracking, and it fails."""
    cfg, model = student
    frames, init_bbox = couple_frames
    sequences, make_tracker, ref = couple_gate
    moved = MovedPeak(model)
    gate = evaluate_gate("moved-peak", moved, ref, sequences, make_tracker)
    boxes, _ = _same_state(cfg, model, moved, frames, init_bbox, ref.boxes["Couple"][:-1])
    iou = pytracking_box_iou(boxes[1:], np.asarray(ref.boxes["Couple"][1:]))
    np.testing.assert_allclose(gate.iou_per_sequence["Couple"], iou, rtol=0, atol=1e-12)
    assert gate.frames == len(frames) - 1 and gate.iou_min == pytest.approx(iou.min())
    assert not gate.passed and gate.worst_frame == f"Couple #{int(np.argmin(iou)) + 1}"


def test_failing_candidate_is_rejected_even_when_fastest(student, caplog):
    """Eager made slow: a fast candidate with a moved peak fails the gate and loses to a fast exact one."""
    cfg, model = student
    sequences = generated_sequences(8)
    make_tracker = lambda fn: OSTrackTracker.from_config(cfg, model=model, network_fn=fn)  # noqa: E731
    slow_eager = Delayed(model, 0.05)
    candidates = {"moved-peak": lambda: MovedPeak(model), "exact-fast": lambda: Delayed(model, 0.0)}
    inputs = tuple(model.example_inputs(generator=torch.Generator().manual_seed(0)))
    with caplog.at_level(logging.WARNING):
        choice, chosen = choose_backend(slow_eager, candidates, 1, inputs, sequences, make_tracker, rounds=2,
                                        calls=3)
    assert choice.backend == "exact-fast" and isinstance(chosen, Delayed) and chosen.delay_s == 0
    assert choice.speedup >= 1.1 and choice.candidates["exact-fast"]["gate"]["passed"]
    rejected = choice.candidates["moved-peak"]
    assert not rejected["gate"]["passed"] and "speedup" not in rejected  # never timed
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'moved-peak' fails the accuracy gate" in warnings[0]
    assert "limit 1e-02" in warnings[0] and "limit 0.95" in warnings[0]


def test_slow_candidate_is_not_chosen(student):
    cfg, model = student
    sequences = generated_sequences(6)
    make_tracker = lambda fn: OSTrackTracker.from_config(cfg, model=model, network_fn=fn)  # noqa: E731
    eager = build_backend("eager", model)
    inputs = tuple(model.example_inputs(generator=torch.Generator().manual_seed(0)))
    choice, chosen = choose_backend(eager, {"slow": lambda: Delayed(model, 0.05)}, 1, inputs, sequences,
                                    make_tracker, rounds=2, calls=3)
    assert choice.backend == "eager" and chosen is eager and choice.speedup == 1.0
    assert choice.candidates["slow"]["gate"]["passed"] and choice.candidates["slow"]["speedup"] < 1.1
    assert "'eager' (no candidate reached 1.1x" in choice.summary()


@pytest.mark.parametrize("name", GATED)
def test_what_passes_the_gate_here_keeps_its_promise(name, student, couple_frames, couple_gate, cache_dir, caplog):
    """On real frames of Couple: the gate's numbers are this test's own; a pass means every frame tracked from
    eager's state is within IoU 0.95 and every map within 1e-2; a fail is reported and never chosen."""
    cfg, model = student
    frames, init_bbox = couple_frames
    sequences, make_tracker, ref = couple_gate
    backend = build_backend(name, model, cache_dir=cache_dir)
    gate = evaluate_gate(name, backend, ref, sequences, make_tracker)

    boxes, maps = _same_state(cfg, model, backend, frames, init_bbox, ref.boxes["Couple"][:-1])
    iou = pytracking_box_iou(boxes[1:], np.asarray(ref.boxes["Couple"][1:]))
    deviation = max(max(float((m[k] - r[k]).abs().max()) for m, r in zip(maps, ref.maps, strict=True))
                    / max(float(r[k].abs().max()) for r in ref.maps) for k in MAP_NAMES)
    assert gate.iou_min == pytest.approx(float(iou.min()), abs=1e-9)
    assert gate.map_deviation == pytest.approx(deviation, rel=1e-6)
    if name == "onnx":  # lossless: it passes on any CPU
        assert gate.passed and deviation < 1e-4
    if gate.passed:
        assert iou.min() >= SAME_STATE_IOU_LIMIT and deviation <= MAP_DEVIATION_LIMIT
        return
    eager = build_backend("eager", model)
    inputs = tuple(model.example_inputs(generator=torch.Generator().manual_seed(0)))
    with caplog.at_level(logging.WARNING):
        choice, _ = choose_backend(eager, {name: lambda: backend}, 1, inputs, sequences, make_tracker, rounds=1,
                                   calls=2)
    assert choice.backend == "eager"
    assert any(f"'{name}' fails the accuracy gate" in r.getMessage() for r in caplog.records)
