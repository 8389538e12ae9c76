"""Fast CPU tracker: speed and agreement of each network back-end against eager fp32, in one run.

    python tracking/benchmark_fast_tracker.py [--script loretrack --config loretrack_128] [--checkpoint PATH]
        [--backends eager bf16 onnx onnx-int8 bf16-compile] [--threads 2] [--json OUT]
        [--otb_root ../shared/data/otb_mini_sequences] [--sequences Couple Crossing Football1] [--opts K=V ...]

Prints ratios, not pass/fail: first the eager fp32 network-only latency (the reference), then per back-end
its network latency, the end-to-end tracker speed on real OTB frames (crop + normalise + network + Hann
window + decode; frames decoded beforehand, as the evaluation harness excludes image reading), the speed-up
over the eager network alone, the deviation of its score/size/offset maps from eager on fixed inputs, and
the per-frame IoU of its tracked boxes against the eager fp32 tracker. The 1-minute load average is
recorded with every timing: on a shared machine the numbers are only as good as the load allows.
A last control row, ``fp32+noise``, tracks with eager fp32 plus seeded noise on its maps (``--control_noise``,
default sigma 2.5e-4 of each map's max, i.e. about 1e-3 at most: below every fast mode's deviation); its
free-running IoU against eager shows how much of the fast modes' drift the model's own sensitivity explains.
Without ``--checkpoint`` the network has random weights (timing is unaffected; agreement is then only
indicative, since untrained score maps have many near-equal peaks).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import _init_paths  # noqa: F401

from lib.utils.cli import run_main
from lib.utils.errors import UserError

DEFAULT_BACKENDS = ["eager", "bf16", "onnx", "onnx-int8", "bf16-compile"]
DEFAULT_SEQUENCES = ["Couple", "Crossing", "Football1"]
TARGET_RATIO = 3.0
CONTROL_NAME = "fp32+noise"  # the PerturbedEager control row
WARMUP_CALLS = 20  # a fresh ONNX Runtime session runs ~40 % slower for its first ~20 calls


def loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def default_otb_root() -> Path:
    shared = os.environ.get("LORETRACK_SHARED_DIR")
    base = Path(shared) if shared else Path(_init_paths.REPO_ROOT).parent / "shared"
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


def track_sequences(tracker: Any, sequences: list[dict[str, Any]], warmup: int = 3) -> dict[str, Any]:
    """Boxes per sequence and the time of every ``track()`` call (after a few untimed warm-up frames)."""
    first = sequences[0]
    tracker.initialize(first["frames"][0], {"init_bbox": first["init_bbox"]})
    for frame in first["frames"][1:1 + warmup]:
        tracker.track(frame)
    boxes: dict[str, list[list[float]]] = {}
    frame_ms: list[float] = []
    network_ms: list[float] = []
    network_fn = tracker.network_fn

    def timed_network(*inputs):  # the network's share of each frame, measured inside that frame
        start = time.perf_counter()
        out = network_fn(*inputs)
        network_ms.append((time.perf_counter() - start) * 1000)
        return out

    tracker.network_fn = timed_network
    try:
        for seq in sequences:
            result = [tracker.initialize(seq["frames"][0], {"init_bbox": seq["init_bbox"]})["target_bbox"]]
            for frame in seq["frames"][1:]:
                start = time.perf_counter()
                result.append(tracker.track(frame)["target_bbox"])
                frame_ms.append((time.perf_counter() - start) * 1000)
            boxes[seq["name"]] = result
    finally:
        tracker.network_fn = network_fn
    total_s = sum(frame_ms) / 1000
    outside = [f - n for f, n in zip(frame_ms, network_ms)]
    return {"boxes": boxes, "frames": len(frame_ms), "fps": len(frame_ms) / total_s,
            "mean_ms": statistics.fmean(frame_ms), "median_ms": statistics.median(frame_ms),
            "network_in_frame_ms": statistics.median(network_ms), "outside_network_ms": statistics.median(outside)}


def track_from_states(tracker: Any, sequences: list[dict[str, Any]], states: dict[str, list]) -> dict[str, list]:
    """Each frame tracked from the reference tracker's previous box ("same state", untimed).

    Free-running trajectories of two slightly different networks can part for good after one ambiguous
    frame; starting every frame from the same state measures the per-frame disagreement alone.
    """
    boxes = {}
    for seq in sequences:
        ref = states[seq["name"]]
        result = [tracker.initialize(seq["frames"][0], {"init_bbox": seq["init_bbox"]})["target_bbox"]]
        for i, frame in enumerate(seq["frames"][1:]):
            tracker.state = list(ref[i])
            result.append(tracker.track(frame)["target_bbox"])
        boxes[seq["name"]] = result
    return boxes


def box_agreement(boxes: dict[str, list], reference: dict[str, list]) -> dict[str, Any]:
    """Per-frame IoU against the reference tracker's boxes (the shared initial frame excluded)."""
    import numpy as np

    from lib.test.analysis.metrics import box_iou

    per_seq, all_iou = {}, []
    for name, ref in reference.items():
        iou = box_iou(np.asarray(boxes[name][1:], float), np.asarray(ref[1:], float))
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
    import numpy as np

    from lib.test.analysis.metrics import box_iou

    result = {}
    for seq in sequences:
        gt = np.asarray(seq["ground_truth"], float)[1:]
        pred = np.asarray(boxes[seq["name"]][1:], float)
        valid = np.all(np.isfinite(gt), axis=1) & (gt[:, 2] > 0) & (gt[:, 3] > 0)
        result[seq["name"]] = float(box_iou(pred[valid], gt[valid]).mean()) if valid.any() else float("nan")
    return result


def fixed_inputs(model: Any, sequences: list[dict[str, Any]] | None, cfg: Any, seeds: int = 3) -> list[tuple]:
    """Seeded random (template, search) pairs, plus the first real template/search crops when frames exist."""
    import torch

    from lib.test.tracker.ostrack import OSTrackTracker

    t_size, s_size = cfg.TEST.TEMPLATE_SIZE, cfg.TEST.SEARCH_SIZE
    inputs = []
    for seed in range(seeds):
        gen = torch.Generator().manual_seed(seed)
        inputs.append((torch.randn(1, 3, t_size, t_size, generator=gen),
                       torch.randn(1, 3, s_size, s_size, generator=gen)))
    if sequences:
        from lib.utils.crop import sample_target

        tracker = OSTrackTracker.from_config(cfg, model=model)
        seq = sequences[0]
        tracker.initialize(seq["frames"][0], {"init_bbox": seq["init_bbox"]})
        crop = sample_target(seq["frames"][1], tracker.state, tracker.search_factor, s_size)
        search = tracker._normalise_into(crop.image, torch.empty(1, 3, s_size, s_size))
        inputs.append((tracker.template.clone(), search))
    mask = model.ce_template_mask(1, "cpu")
    return [(t, s, mask) for t, s in inputs]


def map_deviation(backend: Any, reference: list[dict], inputs: list[tuple]) -> dict[str, dict[str, float]]:
    """Max absolute and relative (to the map's max |value|) deviation from eager, over all fixed inputs."""
    from lib.test.tracker.backends import MAP_NAMES

    result = {}
    outs = [backend(*inp) for inp in inputs]
    for name in MAP_NAMES:
        abs_dev = max(float((o[name].float() - r[name]).abs().max()) for o, r in zip(outs, reference))
        scale = max(float(r[name].abs().max()) for r in reference)
        result[name] = {"abs": abs_dev, "rel": abs_dev / max(scale, 1e-12)}
    return result


class PerturbedEager:
    """Control, not a back-end: eager fp32 with seeded noise added to its maps.

    The noise is ``relative * max|map| * N(0, 1)`` per element, fixed by ``seed``. Tracking with it shows how
    far the free-running tracker drifts from eager under a perturbation of known size that owes nothing to
    bf16 or int8 arithmetic: if tiny noise already splits the trajectories, the model is what is sensitive.
    """

    def __init__(self, eager: Any, relative: float, seed: int = 0) -> None:
        import torch

        self.eager, self.relative = eager, relative
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, template, search, ce_template_mask=None):
        import torch

        from lib.test.tracker.backends import MAP_NAMES

        out = self.eager(template, search, ce_template_mask)
        noisy = {}
        for name in MAP_NAMES:
            clean = out[name].float()
            noise = torch.randn(clean.shape, generator=self.generator)
            noisy[name] = clean + self.relative * clean.abs().max() * noise
        return noisy

    def describe(self) -> dict[str, Any]:
        return {"backend": CONTROL_NAME, "noise_relative_sigma": self.relative}


def run_benchmark(cfg: Any, model: Any, backends: Sequence[str], sequences: list[dict[str, Any]], threads: int,
                  warmup: int = WARMUP_CALLS, iterations: int = 30, backend_options: dict[str, Any] | None = None,
                  control_noise: float = 0.0, log=print) -> dict[str, Any]:
    import torch

    from lib.test.tracker.backends import BackendError, build_backend
    from lib.test.tracker.ostrack import OSTrackTracker
    from lib.utils.profiling import time_callable

    torch.set_num_threads(threads)
    options = dict(backend_options or {})
    options.setdefault("threads", threads)
    model = model.eval()
    inputs = fixed_inputs(model, sequences, cfg)
    with torch.no_grad():
        reference = [model(*inp[:2], ce_template_mask=inp[2]) for inp in inputs]
    template, search, mask = inputs[0]

    # 1. the reference: eager fp32, network only
    eager = build_backend("eager", model)
    load_before = loadavg()
    eager_net = time_callable(lambda: eager(template, search, mask), warmup, iterations)
    with torch.no_grad():
        z = model.backbone.patch_embed(template)
        embed = time_callable(lambda: model.backbone.patch_embed(template) + model.backbone.pos_embed_z,
                              warmup, iterations)
    report: dict[str, Any] = {
        "eager_network_ms": eager_net.median_ms, "eager_network_fps": eager_net.fps, "eager_load": load_before,
        "template_embed_ms": embed.median_ms, "template_tokens": z.shape[1], "backends": {}}
    log(f"eager fp32 network only: {eager_net.median_ms:.1f} ms ({eager_net.fps:.1f} fps)   [load {load_before}]")
    log(f"  (template patch embedding, the only template work a cache could skip: {embed.median_ms:.3f} ms = "
        f"{100 * embed.median_ms / eager_net.median_ms:.2f} % of the network)")

    reference_boxes = None
    names = list(backends)
    if "eager" in names:  # the eager tracker first: its boxes are the reference for the others
        names.remove("eager")
        names.insert(0, "eager")
    else:
        names.insert(0, "eager")
    if control_noise > 0:
        names.append(CONTROL_NAME)
    for name in names:
        torch.set_num_threads(threads)  # an ONNX back-end leaves torch at one thread
        entry: dict[str, Any] = {"load_start": loadavg()}
        try:
            start = time.perf_counter()
            if name == CONTROL_NAME:
                backend = PerturbedEager(eager, control_noise)
                tracker = OSTrackTracker.from_config(cfg, model=model, network_fn=backend)
            else:
                tracker = OSTrackTracker.from_config(cfg, model=model, backend=name, backend_options=options)
                backend = tracker.backend or eager
            entry["build_s"] = time.perf_counter() - start
            entry["info"] = backend.describe()
        except BackendError as err:
            log(f"{name:14s} skipped: {err}")
            report["backends"][name] = {"skipped": str(err)}
            continue
        # eager again, right now: on a shared machine the load drifts, and a ratio to this is fairer
        backend_torch_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        paired = time_callable(lambda: eager(template, search, mask), warmup, iterations).median_ms
        torch.set_num_threads(backend_torch_threads)
        net = time_callable(lambda: backend(template, search, mask), warmup, iterations)
        entry.update(network_ms=net.median_ms, network_ratio=eager_net.median_ms / net.median_ms,
                     eager_network_ms_paired=paired, network_ratio_paired=paired / net.median_ms)
        if sequences:
            tracked = track_sequences(tracker, sequences)
            boxes = tracked.pop("boxes")
            entry.update(tracker=tracked, tracker_fps=tracked["fps"],
                         e2e_ratio=tracked["fps"] * eager_net.median_ms / 1000,
                         e2e_ratio_paired=tracked["fps"] * paired / 1000)
            if reference_boxes is None:  # this is the eager tracker
                reference_boxes = boxes
                same_state = boxes
            else:
                same_state = track_from_states(tracker, sequences, reference_boxes)
            entry["vs_ground_truth"] = ground_truth_iou(boxes, sequences)
            entry["agreement"] = box_agreement(boxes, reference_boxes)
            entry["agreement_same_state"] = box_agreement(same_state, reference_boxes)
        with torch.no_grad():
            entry["deviation"] = map_deviation(backend, reference, inputs)
        entry["load_end"] = loadavg()
        report["backends"][name] = entry
        log(_row(name, entry))
        del tracker, backend
    torch.set_num_threads(threads)
    report["eager_network_ms_end"] = time_callable(lambda: eager(template, search, mask), warmup, iterations).median_ms
    report["eager_load_end"] = loadavg()
    return report


def _row(name: str, e: dict[str, Any]) -> str:
    dev = e["deviation"]
    text = (f"{name:14s} build {e['build_s']:6.1f} s | net {e['network_ms']:7.1f} ms ({e['network_ratio']:4.2f}x; "
            f"eager just before: {e['eager_network_ms_paired']:.1f} ms)")
    if "tracker" in e:
        agree, same = e["agreement"], e["agreement_same_state"]
        text += (f" | tracker {e['tracker']['mean_ms']:7.1f} ms/frame = {e['tracker_fps']:5.1f} fps "
                 f"({e['e2e_ratio']:4.2f}x eager net, {e['e2e_ratio_paired']:4.2f}x paired; crop+post {e['tracker']['outside_network_ms']:.1f} ms) | IoU vs eager min {agree['iou_min']:.3f} "
                 f"mean {agree['iou_mean']:.3f} ({agree['frames_below_0.9']}/{agree['frames']} < 0.9; same state: "
                 f"min {same['iou_min']:.3f}, {same['frames_below_0.9']} < 0.9)")
    text += (f" | max dev score {dev['score_map']['abs']:.1e} size {dev['size_map']['abs']:.1e} "
             f"offset {dev['offset_map']['abs']:.1e} (rel {max(d['rel'] for d in dev.values()):.1e})"
             f" [load {e['load_start']}->{e['load_end']}]")
    return text


def print_table(report: dict[str, Any], log=print) -> None:
    log("")
    log(f"eager fp32 network only: {report['eager_network_ms']:.1f} ms at the start, "
        f"{report['eager_network_ms_end']:.1f} ms at the end (load {report['eager_load']} -> "
        f"{report['eager_load_end']})")
    header = (f"{'backend':14s} | {'net ms':>7s} | {'net x':>5s} | {'trk ms':>7s} | {'trk fps':>7s} | "
              f"{'e2e x':>5s} | {'pair x':>6s} | {'dScore':>7s} | {'dSize':>7s} | {'dOffset':>7s} | {'IoUmin':>6s} | {'IoUmean':>7s} | "
              f"{'<0.9':>7s} | {'ss min':>6s} | {'ss<0.9':>6s}")
    log(header)
    log("-" * len(header))
    best = None
    for name, e in report["backends"].items():
        if "skipped" in e:
            log(f"{name:14s} | skipped: {e['skipped'][:90]}")
            continue
        dev = e["deviation"]
        trk = e.get("tracker")
        agree, same = e.get("agreement", {}), e.get("agreement_same_state", {})
        below = f"{agree['frames_below_0.9']}/{agree['frames']}" if agree else "-"
        log(f"{name:14s} | {e['network_ms']:7.1f} | {e['network_ratio']:5.2f} | "
            f"{trk['mean_ms'] if trk else float('nan'):7.1f} | {e.get('tracker_fps', float('nan')):7.1f} | "
            f"{e.get('e2e_ratio', float('nan')):5.2f} | {e.get('e2e_ratio_paired', float('nan')):6.2f} | "
            f"{dev['score_map']['abs']:7.1e} | "
            f"{dev['size_map']['abs']:7.1e} | {dev['offset_map']['abs']:7.1e} | "
            f"{agree.get('iou_min', float('nan')):6.3f} | {agree.get('iou_mean', float('nan')):7.3f} | "
            f"{below:>7s} | {same.get('iou_min', float('nan')):6.3f} | {same.get('frames_below_0.9', '-'):>6}")
        if "e2e_ratio" in e and name != CONTROL_NAME and (best is None or e["e2e_ratio"] > best[1]):
            best = (name, e["e2e_ratio"], agree.get("iou_min", float("nan")), e["e2e_ratio_paired"])
    log("e2e x = end-to-end tracker fps / eager fp32 network-only fps (crop + network + post-processing); "
        "pair x: the same against eager timed again just before that back-end (load drift); "
        "IoU: per-frame IoU of the free-running tracker's boxes vs the eager fp32 tracker's; ss = same state: "
        "every frame tracked from the eager tracker's previous box.")
    tracked = {name: e for name, e in report["backends"].items() if "agreement" in e}
    if tracked:
        sequence_names = list(next(iter(tracked.values()))["vs_ground_truth"])
        log("per sequence: free-running IoU vs eager mean/min (same-state min); in brackets the back-end's own "
            "mean IoU with the ground truth")
        log(f"{'backend':14s} | " + " | ".join(n.rjust(28) for n in sequence_names))
        for name, e in tracked.items():
            free, same = e["agreement"]["per_sequence"], e["agreement_same_state"]["per_sequence"]
            own = e["vs_ground_truth"]
            log(f"{name:14s} | " + " | ".join(
                f"{free[n]['mean']:.3f}/{free[n]['min']:.3f} ({same[n]['min']:.3f}) [{own[n]:.2f}]".rjust(28)
                for n in sequence_names))
    if best:
        verdict = "reached" if best[1] >= TARGET_RATIO else "NOT reached"
        log(f"target {TARGET_RATIO:.1f}x end to end: {verdict} (best: {best[0]} at {best[1]:.2f}x, {best[3]:.2f}x "
            f"against the paired eager timing; min IoU vs eager {best[2]:.3f})")
    report["best"] = best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", default="loretrack")
    parser.add_argument("--config", default="loretrack_128", help="config name in experiments/<script>/ or a YAML")
    parser.add_argument("--checkpoint", default=None, help="trained weights (default: random weights)")
    parser.add_argument("--opts", nargs="*", default=[], help="config overrides KEY=VALUE")
    parser.add_argument("--backends", nargs="+", default=DEFAULT_BACKENDS)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for every back-end (default: all cores of this machine)")
    parser.add_argument("--warmup", type=int, default=WARMUP_CALLS, help="untimed calls before each timing")
    parser.add_argument("--iterations", type=int, default=30, help="timed network calls per back-end")
    parser.add_argument("--otb_root", default=None, help="OTB-layout folder (default: ../shared/data/otb_mini_sequences)")
    parser.add_argument("--sequences", nargs="*", default=DEFAULT_SEQUENCES,
                        help="sequences to track (none: network timings and map deviations only)")
    parser.add_argument("--max_frames", type=int, default=None, help="use only the first N frames of each sequence")
    parser.add_argument("--cache_dir", default=None, help="ONNX cache (default: <save_dir>/cache/onnx)")
    parser.add_argument("--ort_optimization", default="all", choices=["disable", "basic", "extended", "all"])
    parser.add_argument("--ort_spinning", default="never", choices=["run", "always", "never"],
                        help="ORT idle threads busy-wait: never (default), within a run only, always")
    parser.add_argument("--control_noise", type=float, default=2.5e-4,
                        help="sigma, relative to each map's max |value|, of the noise the 'fp32+noise' control row "
                             "adds to eager's maps (max deviation ~4 sigma); 0 drops that row")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (no --checkpoint)")
    parser.add_argument("--json", default=None, help="also write the report to this JSON file")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from lib.config import load_config
    from lib.models import build_model, load_weights
    from lib.test.tracker.backends import cpu_flags
    from lib.utils.io import atomic_write_text

    threads = args.threads or os.cpu_count() or 1
    cfg = load_config(args.config, overrides=args.opts, script=args.script)
    torch.manual_seed(args.seed)
    model = build_model(cfg, training=False)
    if args.checkpoint:
        load_weights(model, args.checkpoint, strict=True)
    otb_root = Path(args.otb_root) if args.otb_root else default_otb_root()
    sequences = load_frames(otb_root, args.sequences, args.max_frames) if args.sequences else []
    options: dict[str, Any] = {"optimization": args.ort_optimization, "spinning": args.ort_spinning}
    if args.cache_dir:
        options["cache_dir"] = args.cache_dir
    flags = cpu_flags()
    import onnxruntime

    print(f"{args.config} ({cfg.TEST.TEMPLATE_SIZE}/{cfg.TEST.SEARCH_SIZE}, "
          f"{'checkpoint ' + args.checkpoint if args.checkpoint else 'random weights'}) on "
          f"{platform.processor() or platform.machine()}, {threads} threads, torch {torch.__version__}, "
          f"onnxruntime {onnxruntime.__version__}, avx512_bf16={'avx512_bf16' in flags} "
          f"amx={'amx_bf16' in flags} vnni={'avx512_vnni' in flags}; frames: "
          f"{', '.join(s['name'] + ' ' + str(len(s['frames'])) for s in sequences) or 'none'}")
    report = run_benchmark(cfg, model, args.backends, sequences, threads, args.warmup, args.iterations, options,
                           control_noise=args.control_noise)
    print_table(report)
    report.update(config=args.config, script=args.script, opts=args.opts, checkpoint=args.checkpoint,
                  threads=threads, torch=torch.__version__, onnxruntime=onnxruntime.__version__,
                  template_size=cfg.TEST.TEMPLATE_SIZE, search_size=cfg.TEST.SEARCH_SIZE,
                  sequences={s["name"]: len(s["frames"]) for s in sequences})
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
