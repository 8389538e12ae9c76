"""Speed and agreement of each network back-end against eager fp32, in one run (``benchmark_fast_tracker.py``).

Per back-end: its network latency, the end-to-end tracker speed on real OTB frames (crop + normalise + network +
Hann window + decode; frames decoded beforehand, as the evaluation harness excludes image reading), the
speed-up over the eager network alone, the deviation of its maps from eager on fixed inputs, the per-frame
IoU of its boxes against the eager fp32 tracker, and its accuracy gate on the tracked frames (map deviation and
same-state IoU on every frame, :mod:`lib.test.tracker.backends.gate`). Ratios, not pass/fail: the 1-minute
load average is recorded with every timing, since on a shared machine the numbers are only as good as the load
allows. A last control row, ``fp32+noise``, tracks with eager plus seeded noise on its maps: its drift shows
how much of the fast modes' drift the model's own sensitivity explains.
"""
from __future__ import annotations

import functools
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lib.models.ostrack import OSTrack
from lib.test.evaluation.speed_report import (
    CONTROL_NAME,
    ITERATIONS,
    WARMUP_CALLS,
    BenchmarkResult,
    BenchmarkSettings,
    BenchmarkSetup,
    Progress,
    format_floors,
    format_row,
    format_setup,
)
from lib.test.tracker.backends import AUTO, MAP_NAMES, BackendError, TimedBackend, build_backend
from lib.test.tracker.backends.gate import GateSequence, evaluate_gate, map_deviation, reference_run, report_failure
from lib.test.tracker.ostrack import OSTrackTracker
from lib.utils.boxes import pytracking_box_iou
from lib.utils.errors import UserError
from lib.utils.paths import REPO_ROOT
from lib.utils.profiling import time_callable


def loadavg() -> float | None:
    """The 1-minute load average (None where /proc/loadavg does not exist)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def default_otb_root() -> Path:
    """``<shared>/data/otb_mini_sequences``, the shared folder being LORETRACK_SHARED_DIR or ``../shared``."""
    shared = os.environ.get("LORETRACK_SHARED_DIR")
    base = Path(shared) if shared else REPO_ROOT.parent / "shared"
    return base / "data" / "otb_mini_sequences"


def load_frames(otb_root: Path, names: Sequence[str], max_frames: int | None = None) -> list[dict[str, Any]]:
    """Decoded RGB frames and the first box of each OTB sequence (decoding is not part of any timing)."""
    from lib.test.evaluation.datasets import get_dataset
    from lib.utils.image import read_rgb

    sequences = get_dataset("otb", root=otb_root, sequences=list(names))
    missing = set(names) - set(sequences.names())
    if missing:
        raise UserError(f"sequences {sorted(missing)} not found under {otb_root}")
    out = []
    for seq in sequences:
        files = seq.frames[:max_frames] if max_frames else seq.frames
        out.append({"name": seq.name, "init_bbox": seq.init_bbox, "frames": [read_rgb(f) for f in files],
                    "ground_truth": seq.ground_truth_rect[:len(files)]})
    return out


def track_sequences(tracker: OSTrackTracker, sequences: list[dict[str, Any]], warmup: int = 3) -> dict[str, Any]:
    """Boxes per sequence and the time of every ``track()`` call (after a few untimed warm-up frames).

    The tracker's ``network_fn`` must be a :class:`TimedBackend`: its samples are the network's share of each
    frame, measured inside that frame.
    """
    timed = tracker.network_fn
    if not isinstance(timed, TimedBackend):
        raise TypeError("track_sequences needs a tracker whose network_fn is a TimedBackend")
    first = sequences[0]
    tracker.initialize(first["frames"][0], {"init_bbox": first["init_bbox"]})
    for frame in first["frames"][1:1 + warmup]:
        tracker.track(frame)
    timed.reset()
    boxes: dict[str, list[list[float]]] = {}
    frame_ms: list[float] = []
    for seq in sequences:
        result = [tracker.initialize(seq["frames"][0], {"init_bbox": seq["init_bbox"]})["target_bbox"]]
        for frame in seq["frames"][1:]:
            start = time.perf_counter()
            result.append(tracker.track(frame)["target_bbox"])
            frame_ms.append((time.perf_counter() - start) * 1000)
        boxes[seq["name"]] = result
    network_ms = list(timed.samples_ms)
    outside = [f - n for f, n in zip(frame_ms, network_ms, strict=True)]
    return {"boxes": boxes, "frames": len(frame_ms), "fps": len(frame_ms) / (sum(frame_ms) / 1000),
            "mean_ms": statistics.fmean(frame_ms), "median_ms": statistics.median(frame_ms),
            "network_in_frame_ms": statistics.median(network_ms), "outside_network_ms": statistics.median(outside)}


def box_agreement(boxes: dict[str, list], reference: dict[str, list]) -> dict[str, Any]:
    """Per-frame IoU against the reference tracker's boxes (the shared initial frame excluded)."""
    return iou_agreement({name: pytracking_box_iou(np.asarray(boxes[name][1:], float), np.asarray(ref[1:], float))
                          for name, ref in reference.items()})


def iou_agreement(per_sequence_iou: dict[str, Any]) -> dict[str, Any]:
    """Min, mean and frames below 0.9 of per-frame IoUs, overall and per sequence."""
    per_seq, all_iou = {}, []
    for name, iou in per_sequence_iou.items():
        iou = np.asarray(iou, float)
        per_seq[name] = {"min": float(np.min(iou)), "mean": float(np.mean(iou)),
                         "frames_below_0.9": int(np.sum(iou < 0.9))}
        all_iou.append(iou)
    joined = np.concatenate(all_iou)
    return {"iou_min": float(joined.min()), "iou_mean": float(joined.mean()),
            "frames_below_0.9": int(np.sum(joined < 0.9)), "frames": int(joined.size), "per_sequence": per_seq}


def ground_truth_iou(boxes: dict[str, list], sequences: list[dict[str, Any]]) -> dict[str, float]:
    """Mean IoU with the ground truth per sequence. Free-running trackers that differ slightly can part (a
    different distractor, a drifting scale), so agreement alone does not say whether a back-end tracks worse;
    this does."""
    result = {}
    for seq in sequences:
        gt = np.asarray(seq["ground_truth"], float)[1:]
        pred = np.asarray(boxes[seq["name"]][1:], float)
        valid = np.all(np.isfinite(gt), axis=1) & (gt[:, 2] > 0) & (gt[:, 3] > 0)
        result[seq["name"]] = float(pytracking_box_iou(pred[valid], gt[valid]).mean()) if valid.any() else float("nan")
    return result


def fixed_inputs(model: OSTrack, sequences: list[dict[str, Any]] | None, cfg: Any,
                 seeds: int = 3) -> list[tuple]:
    """The model's seeded random inputs, plus the first real template/search crops when frames exist."""
    from lib.utils.crop import sample_target

    inputs = [tuple(model.example_inputs(device="cpu", generator=torch.Generator().manual_seed(seed)))
              for seed in range(seeds)]
    if sequences:
        tracker = OSTrackTracker.from_config(cfg, model=model)
        seq = sequences[0]
        tracker.initialize(seq["frames"][0], {"init_bbox": seq["init_bbox"]})
        crop = sample_target(seq["frames"][1], tracker.state, tracker.search_factor, tracker.search_size)
        search = tracker._normalise_into(crop.image, torch.empty_like(inputs[0][1]))
        inputs.append((tracker.template.clone(), search, inputs[0][2]))
    return inputs


def fixed_input_deviation(backend: Callable, reference: list[dict], inputs: list[tuple]
                          ) -> dict[str, dict[str, float]]:
    """Max absolute and relative (to the map's max |value|) deviation from eager, over all fixed inputs."""
    return map_deviation([backend(*inp) for inp in inputs], reference)


class PerturbedEager:
    """Control, not a back-end: eager fp32 with seeded noise added to its maps.

    The noise is ``relative * max|map| * N(0, 1)`` per element, fixed by ``seed``. Tracking with it shows how
    far the free-running tracker drifts from eager under a perturbation of known size that owes nothing to
    bf16 or int8 arithmetic: if tiny noise already splits the trajectories, the model is what is sensitive.
    """

    def __init__(self, eager: Callable, relative: float, seed: int = 0) -> None:
        self.eager, self.relative = eager, relative
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, template: torch.Tensor, search: torch.Tensor,
                 ce_template_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = self.eager(template, search, ce_template_mask)
        noisy = {}
        for name in MAP_NAMES:
            clean = out[name].float()
            noise = torch.randn(clean.shape, generator=self.generator)
            noisy[name] = clean + self.relative * clean.abs().max() * noise
        return noisy

    def describe(self) -> dict[str, Any]:
        return {"backend": CONTROL_NAME, "noise_relative_sigma": self.relative}


def network_floors(model: OSTrack, inputs: tuple, threads: int) -> dict[str, Any]:
    """This CPU's GEMM rates and the network's floor per precision: 2 x published MACs over each rate."""
    from lib.test.evaluation.gemm_peaks import measure_gemm_peaks
    from lib.utils.profiling import count_macs_published

    operations = 2 * count_macs_published(model, *inputs[:2])
    peaks = measure_gemm_peaks(threads)
    return {"operations": operations, "gemm": peaks.to_dict(), "fp32_floor_ms": peaks.floor_ms(operations, "fp32"),
            "bf16_floor_ms": peaks.floor_ms(operations, "bf16"), "int8_floor_ms": peaks.floor_ms(operations, "int8"),
            "describe": peaks.describe()}


def run_benchmark(settings: BenchmarkSettings, progress: Progress | None = None) -> BenchmarkResult:
    """Build the network of ``settings``, load the frames and measure every back-end; ``progress`` gets a line
    per step (the setup, the eager reference, each back-end as it finishes)."""
    import onnxruntime

    from lib.config import load_config
    from lib.models import build_model, load_weights

    threads = settings.threads or os.cpu_count() or 1
    cfg = load_config(settings.config, overrides=settings.opts, script=settings.script)
    torch.manual_seed(settings.seed)
    model = build_model(cfg, training=False)
    if settings.checkpoint:
        load_weights(model, settings.checkpoint, strict=True)
    otb_root = Path(settings.otb_root) if settings.otb_root else default_otb_root()
    sequences = load_frames(otb_root, settings.sequences, settings.max_frames) if settings.sequences else []
    options: dict[str, Any] = {"optimization": settings.ort_optimization, "spinning": settings.ort_spinning}
    if settings.cache_dir:
        options["cache_dir"] = settings.cache_dir
    setup = BenchmarkSetup(config=settings.config, script=settings.script, opts=list(settings.opts),
                           checkpoint=settings.checkpoint, threads=threads, torch=torch.__version__,
                           onnxruntime=onnxruntime.__version__, template_size=model.template_size,
                           search_size=model.search_size,
                           sequences={s["name"]: len(s["frames"]) for s in sequences})
    if progress:
        progress(format_setup(setup))
    result = measure_backends(cfg, model, settings.backends, sequences, threads, settings.warmup,
                              settings.iterations, options, control_noise=settings.control_noise, progress=progress,
                              measure_floors=settings.floors)
    result.setup = setup
    return result


def measure_backends(cfg: Any, model: OSTrack, backends: Sequence[str], sequences: list[dict[str, Any]],
                     threads: int, warmup: int = WARMUP_CALLS, iterations: int = ITERATIONS,
                     backend_options: dict[str, Any] | None = None, control_noise: float = 0.0,
                     progress: Progress | None = None, measure_floors: bool = True) -> BenchmarkResult:
    """The eager reference, then every back-end in ``backends`` (eager first: its boxes are the reference);
    with ``measure_floors`` first this CPU's GEMM rates and the network's floors (:func:`network_floors`)."""
    log = progress or (lambda line: None)
    torch.set_num_threads(threads)
    options = dict(backend_options or {})
    options.setdefault("threads", threads)
    model = model.eval()
    inputs = fixed_inputs(model, sequences, cfg)
    with torch.no_grad():
        reference = [model(*inp[:2], ce_template_mask=inp[2]) for inp in inputs]
    template, search, mask = inputs[0]

    eager = build_backend("eager", model)
    load_before = loadavg()
    eager_net = time_callable(lambda: eager(template, search, mask), warmup, iterations)
    with torch.no_grad():
        tokens = model.backbone.patch_embed(template)
        embed = time_callable(lambda: model.backbone.patch_embed(template) + model.backbone.pos_embed_z,
                              warmup, iterations)
    result = BenchmarkResult(eager_network_ms=eager_net.median_ms, eager_network_fps=eager_net.fps,
                             eager_load=load_before, template_embed_ms=embed.median_ms,
                             template_tokens=tokens.shape[1])
    if measure_floors:
        result.floors = network_floors(model, inputs[0], threads)
        log(format_floors(result.floors))
    log(f"eager fp32 network only: {eager_net.median_ms:.1f} ms ({eager_net.fps:.1f} fps)   [load {load_before}]")
    log(f"  (template patch embedding, the only template work a cache could skip: {embed.median_ms:.3f} ms = "
        f"{100 * embed.median_ms / eager_net.median_ms:.2f} % of the network)")

    names = ["eager"] + [name for name in backends if name != "eager"]
    if control_noise > 0:
        names.append(CONTROL_NAME)
    reference_boxes = None
    gate_sequences = [GateSequence(s["name"], s["frames"], s["init_bbox"]) for s in sequences]

    def make_tracker(network_fn: Callable) -> OSTrackTracker:
        return OSTrackTracker.from_config(cfg, model=model, network_fn=network_fn)

    gate_reference = reference_run(eager, gate_sequences, make_tracker) if sequences else None
    for name in names:
        torch.set_num_threads(threads)  # an ONNX back-end leaves torch at one thread
        entry: dict[str, Any] = {"load_start": loadavg()}
        try:
            start = time.perf_counter()
            if name == CONTROL_NAME:
                timed = TimedBackend(PerturbedEager(eager, control_noise))
                tracker = OSTrackTracker.from_config(cfg, model=model, network_fn=timed)
            else:
                tracker = OSTrackTracker.from_config(cfg, model=model, backend=name,
                                                     backend_options={**options, "timed": True})
                timed = tracker.backend
            backend = timed.backend
            entry["build_s"] = time.perf_counter() - start
            entry["info"] = backend.describe()
            if name == AUTO:
                name = f"{AUTO}={backend.name}"  # the row says what it resolved to
        except BackendError as err:
            log(f"{name:14s} skipped: {err}")
            result.backends[name] = {"skipped": str(err)}
            continue
        # eager again, right now: on a shared machine the load drifts, and a ratio to this is fairer
        backend_torch_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        paired = time_callable(lambda: eager(template, search, mask), warmup, iterations).median_ms
        torch.set_num_threads(backend_torch_threads)
        net = time_callable(functools.partial(backend, template, search, mask), warmup, iterations)
        entry.update(network_ms=net.median_ms, network_ratio=eager_net.median_ms / net.median_ms,
                     eager_network_ms_paired=paired, network_ratio_paired=paired / net.median_ms)
        if result.floors.get("int8_floor_ms"):
            entry["network_x_int8_floor"] = net.median_ms / result.floors["int8_floor_ms"]
        if sequences:
            tracked = track_sequences(tracker, sequences)
            boxes = tracked.pop("boxes")
            entry.update(tracker=tracked, tracker_fps=tracked["fps"],
                         e2e_ratio=tracked["fps"] * eager_net.median_ms / 1000,
                         e2e_ratio_paired=tracked["fps"] * paired / 1000)
            if result.floors.get("int8_floor_ms"):
                entry["tracker_x_int8_floor"] = tracked["mean_ms"] / result.floors["int8_floor_ms"]
            if reference_boxes is None:  # this is the eager tracker
                reference_boxes = boxes
            gate = evaluate_gate(name, backend, gate_reference, gate_sequences, make_tracker)
            if name != CONTROL_NAME:
                report_failure(gate)
            entry["vs_ground_truth"] = ground_truth_iou(boxes, sequences)
            entry["agreement"] = box_agreement(boxes, reference_boxes)
            entry["agreement_same_state"] = iou_agreement(gate.iou_per_sequence)
            entry["gate"] = gate.to_dict()
        with torch.no_grad():
            entry["deviation"] = fixed_input_deviation(backend, reference, inputs)
        entry["load_end"] = loadavg()
        result.backends[name] = entry
        log(format_row(name, entry))
        del tracker, backend, timed
    torch.set_num_threads(threads)
    result.eager_network_ms_end = time_callable(lambda: eager(template, search, mask), warmup, iterations).median_ms
    result.eager_load_end = loadavg()
    return result
