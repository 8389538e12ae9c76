"""The accuracy gate: whether a lossy back-end may stand in for eager fp32 on this machine.

Lossy arithmetic is only as good as this CPU's kernels make it (ONNX Runtime picks its int8 kernels per CPU:
AVX-512 VNNI, AMX, or AVX2 with 7-bit weights; bf16 is native or emulated), and a small deviation matters
only where it moves a box. So the gate is measured where the back-end runs, against eager fp32 from the same
inputs, on frames the back-end was never built from (no calibration crops):

- map deviation: max |map - eager map| / max |eager map| over every network call, per map (score, size,
  offset), at most :data:`MAP_DEVIATION_LIMIT`;
- same-state IoU: every frame tracked from eager's previous box, the back-end's box against eager's box, at
  least :data:`SAME_STATE_IOU_LIMIT` on every frame.

Both come from one pass: tracking from eager's states hands the back-end exactly eager's crops.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lib.test.tracker.backends.base import MAP_NAMES
from lib.utils.boxes import pytracking_box_iou

log = logging.getLogger(__name__)

MAP_DEVIATION_LIMIT = 1e-2
SAME_STATE_IOU_LIMIT = 0.95
GATE_FRAMES = 30  # frames of the generated clip when no real frames are given
NetworkCallable = Callable[..., Mapping[str, torch.Tensor]]
TrackerMaker = Callable[[NetworkCallable], Any]  # network_fn -> a tracker (initialize / track / state)


@dataclass(frozen=True)
class GateSequence:
    """Frames (H, W, 3 uint8 RGB) and the first frame's (x, y, w, h) box."""

    name: str
    frames: Sequence[np.ndarray]
    init_bbox: Sequence[float]


def generated_sequences(frames: int = GATE_FRAMES) -> list[GateSequence]:
    """A textured square sliding over texture (no data needed): the gate's frames when the caller has none."""
    from lib.utils.synthetic import moving_square_clip

    clip, boxes = moving_square_clip(frames, size=(240, 320), target=40, seed=7)
    return [GateSequence("generated", clip, boxes[0].tolist())]


def model_tracker_maker(model: torch.nn.Module) -> TrackerMaker:
    """Trackers at the model's own sizes, for callers without a config: template factor 2, search factor
    2 x search/template size (OSTrack's ratio), ImageNet normalisation."""
    from lib.test.tracker.ostrack import OSTrackTracker

    search_factor = 2.0 * model.search_size / model.template_size
    return lambda network_fn: OSTrackTracker(model, 2.0, search_factor, network_fn=network_fn)


class _Recorder:
    """``network_fn`` that keeps a detached fp32 copy of every call's maps, in call order."""

    def __init__(self, backend: NetworkCallable) -> None:
        self.backend = backend
        self.maps: list[dict[str, torch.Tensor]] = []

    def __call__(self, template, search, ce_template_mask=None):
        out = self.backend(template, search, ce_template_mask)
        self.maps.append({name: out[name].detach().float().cpu().clone() for name in MAP_NAMES})
        return out


@dataclass
class ReferenceRun:
    """Eager fp32's free-running boxes per sequence and its maps of every call (the gate's reference)."""

    boxes: dict[str, list[list[float]]]
    maps: list[dict[str, torch.Tensor]]


def reference_run(eager: NetworkCallable, sequences: Sequence[GateSequence], make_tracker: TrackerMaker
                  ) -> ReferenceRun:
    recorder = _Recorder(eager)
    tracker = make_tracker(recorder)
    boxes = {}
    for seq in sequences:
        result = [tracker.initialize(seq.frames[0], {"init_bbox": list(seq.init_bbox)})["target_bbox"]]
        result += [tracker.track(frame)["target_bbox"] for frame in seq.frames[1:]]
        boxes[seq.name] = result
    return ReferenceRun(boxes, recorder.maps)


def map_deviation(maps: Sequence[Mapping[str, torch.Tensor]], reference: Sequence[Mapping[str, torch.Tensor]]
                  ) -> dict[str, dict[str, float]]:
    """Per map: the max absolute deviation over all calls (``abs``), the map's max |eager value| (``scale``) and
    their ratio (``rel``)."""
    if len(maps) != len(reference):
        raise ValueError(f"{len(maps)} outputs against {len(reference)} reference outputs")
    result = {}
    for name in MAP_NAMES:
        abs_dev = max(float((m[name].float() - r[name].float()).abs().max()) for m, r in zip(maps, reference,
                                                                                           strict=True))
        scale = max(float(r[name].float().abs().max()) for r in reference)
        result[name] = {"abs": abs_dev, "scale": scale, "rel": abs_dev / max(scale, 1e-12)}
    return result


def exported_deviation(model: torch.nn.Module, run: Callable[[Sequence[torch.Tensor]], Sequence[np.ndarray]],
                       inputs: Iterable[Sequence[torch.Tensor]]) -> dict[str, dict[str, float]]:
    """:func:`map_deviation` of an exported network from eager ``model`` (the original network, whatever was
    exported) over ``inputs``; ``run`` takes one input set in graph order and returns the three maps as arrays
    (an ONNX Runtime session, a compiled OpenVINO model, ...)."""
    from lib.test.tracker.backends.base import MapsOnly, uses_ce_mask

    reference = MapsOnly(model, uses_ce_mask(model)).eval()
    got, want = [], []
    for inp in inputs:
        with torch.no_grad():
            want.append(dict(zip(MAP_NAMES, reference(*inp), strict=True)))
        got.append({name: torch.from_numpy(np.asarray(out)) for name, out in zip(MAP_NAMES, run(inp), strict=True)})
    return map_deviation(got, want)


@dataclass(frozen=True)
class GateResult:
    """One back-end's gate on this machine: what was measured, against which limits, and the verdict."""

    backend: str
    deviation: dict[str, dict[str, float]]
    iou_min: float
    worst_frame: str  # "<sequence> #<frame>" of the lowest same-state IoU
    frames: int
    map_limit: float = MAP_DEVIATION_LIMIT
    iou_limit: float = SAME_STATE_IOU_LIMIT
    iou_per_sequence: dict[str, list[float]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def map_deviation(self) -> float:
        """The largest relative deviation over the three maps."""
        return max(d["rel"] for d in self.deviation.values())

    @property
    def passed(self) -> bool:
        return self.map_deviation <= self.map_limit and self.iou_min >= self.iou_limit

    def failure(self) -> str | None:
        """The one line telling the user why this back-end is not used here (None when it passed)."""
        if self.passed:
            return None
        return (f"back-end '{self.backend}' fails the accuracy gate on this machine: relative map deviation "
                f"{self.map_deviation:.1e} (limit {self.map_limit:.0e}), same-state box IoU with eager fp32 min "
                f"{self.iou_min:.3f} at {self.worst_frame} (limit {self.iou_limit}) over {self.frames} frames")

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "passed": self.passed, "map_deviation": self.map_deviation,
                "deviation": self.deviation, "iou_min": self.iou_min, "worst_frame": self.worst_frame,
                "frames": self.frames, "map_limit": self.map_limit, "iou_limit": self.iou_limit}


def evaluate_gate(name: str, backend: NetworkCallable, reference: ReferenceRun, sequences: Sequence[GateSequence],
                  make_tracker: TrackerMaker, map_limit: float = MAP_DEVIATION_LIMIT,
                  iou_limit: float = SAME_STATE_IOU_LIMIT) -> GateResult:
    """Track every frame of ``sequences`` from eager's previous box with ``backend``; compare boxes and maps."""
    recorder = _Recorder(backend)
    tracker = make_tracker(recorder)
    per_sequence, worst = {}, (float("inf"), "")
    for seq in sequences:
        ref = reference.boxes[seq.name]
        boxes = [tracker.initialize(seq.frames[0], {"init_bbox": list(seq.init_bbox)})["target_bbox"]]
        for i, frame in enumerate(seq.frames[1:]):
            tracker.state = list(ref[i])
            boxes.append(tracker.track(frame)["target_bbox"])
        iou = pytracking_box_iou(np.asarray(boxes[1:], float), np.asarray(ref[1:], float))
        per_sequence[seq.name] = [float(v) for v in iou]
        if iou.size and float(iou.min()) < worst[0]:
            worst = (float(iou.min()), f"{seq.name} #{int(np.argmin(iou)) + 1}")
    frames = sum(len(v) for v in per_sequence.values())
    return GateResult(name, map_deviation(recorder.maps, reference.maps), worst[0] if frames else float("nan"),
                      worst[1], frames, map_limit, iou_limit, per_sequence)


def report_failure(result: GateResult) -> None:
    """One warning line when ``result`` failed (nothing otherwise)."""
    line = result.failure()
    if line:
        log.warning(line)
