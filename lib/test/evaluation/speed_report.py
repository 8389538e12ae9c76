"""Settings, results and printed forms of the speed measurements (``benchmark_fast_tracker.py``,
``profile_model.py``): plain data without torch, so that the command lines parse their flags at once.

``to_dict()`` of a result is the script's JSON report; the ``format_*`` functions only read their input.
"""
from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TARGET_RATIO = 3.0  # end-to-end tracker fps over eager fp32 network-only fps that the fast back-ends aim at
FLOOR_TARGET = 2.0  # end-to-end tracker time over the network's int8 floor that the fastest back-end aims at
CONTROL_NAME = "fp32+noise"  # the PerturbedEager control row
DEFAULT_BACKENDS = ("eager", "bf16", "onnx", "onnx-int8", "bf16-compile")
DEFAULT_SEQUENCES = ("Couple", "Crossing", "Football1")
CONTROL_NOISE = 2.5e-4  # ~1e-3 of each map's max at most: below every fast mode's deviation
WARMUP_CALLS = 20  # a fresh ONNX Runtime session runs ~40 % slower for its first ~20 calls
ITERATIONS = 30
Progress = Callable[[str], None]


@dataclass
class BenchmarkSettings:
    """Everything the command line chooses; the defaults are the command line's."""

    config: str = "loretrack_128"
    script: str = "loretrack"
    checkpoint: str | None = None  # None: random weights (timing is unaffected, agreement only indicative)
    opts: list[str] = field(default_factory=list)
    backends: Sequence[str] = DEFAULT_BACKENDS
    threads: int | None = None  # None: all cores of this machine
    warmup: int = WARMUP_CALLS
    iterations: int = ITERATIONS
    otb_root: str | Path | None = None  # None: default_otb_root()
    sequences: Sequence[str] = DEFAULT_SEQUENCES  # empty: network timings and map deviations only
    max_frames: int | None = None
    cache_dir: str | None = None
    ort_optimization: str = "all"
    ort_spinning: str = "never"
    control_noise: float = CONTROL_NOISE  # 0 drops the control row
    seed: int = 0  # of the random weights
    floors: bool = True  # measure the GEMM rates and the network's floors first (~30 s)


@dataclass
class BenchmarkSetup:
    """What was measured: the network, the machine's thread count, the versions and the frames used."""

    config: str
    script: str
    opts: list[str]
    checkpoint: str | None
    threads: int
    torch: str
    onnxruntime: str
    template_size: int
    search_size: int
    sequences: dict[str, int]  # name -> frames


@dataclass
class BenchmarkResult:
    """The eager reference, one entry per back-end (or ``{'skipped': why}``) and the setup; ``to_dict()`` is
    the JSON report."""

    eager_network_ms: float
    eager_network_fps: float
    eager_load: float | None
    template_embed_ms: float
    template_tokens: int
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    eager_network_ms_end: float | None = None
    eager_load_end: float | None = None
    setup: BenchmarkSetup | None = None
    floors: dict[str, Any] = field(default_factory=dict)  # GEMM rates and the network's floor per precision

    @property
    def best(self) -> tuple[str, float, float, float] | None:
        """(name, e2e ratio, min IoU vs eager, paired e2e ratio) of the fastest tracked back-end that passed its
        accuracy gate, control aside."""
        best = None
        for name, entry in self.backends.items():
            if not entry.get("gate", {}).get("passed", True):
                continue
            if "e2e_ratio" in entry and name != CONTROL_NAME and (best is None or entry["e2e_ratio"] > best[1]):
                best = (name, entry["e2e_ratio"], entry.get("agreement", {}).get("iou_min", float("nan")),
                        entry["e2e_ratio_paired"])
        return best

    def to_dict(self) -> dict[str, Any]:
        report = {"eager_network_ms": self.eager_network_ms, "eager_network_fps": self.eager_network_fps,
                  "eager_load": self.eager_load, "template_embed_ms": self.template_embed_ms,
                  "template_tokens": self.template_tokens, "backends": self.backends,
                  "eager_network_ms_end": self.eager_network_ms_end, "eager_load_end": self.eager_load_end,
                  "floors": self.floors, "best": self.best}
        if self.setup is not None:
            report.update(asdict(self.setup))
        return report


def format_setup(setup: BenchmarkSetup) -> str:
    """One line: the network, the machine and its relevant CPU features, the versions and the frames."""
    from lib.test.tracker.backends import cpu_flags

    flags = cpu_flags()
    frames = ", ".join(f"{name} {count}" for name, count in setup.sequences.items()) or "none"
    weights = f"checkpoint {setup.checkpoint}" if setup.checkpoint else "random weights"
    return (f"{setup.config} ({setup.template_size}/{setup.search_size}, {weights}) on "
            f"{platform.processor() or platform.machine()}, {setup.threads} threads, torch {setup.torch}, "
            f"onnxruntime {setup.onnxruntime}, avx512_bf16={'avx512_bf16' in flags} "
            f"amx={'amx_bf16' in flags} vnni={'avx512_vnni' in flags}; frames: {frames}")


def format_floors(floors: dict[str, Any]) -> str:
    """The GEMM rates and the network's floors, one line."""
    def ms(key: str) -> str:
        return f"{floors[key]:.1f} ms" if floors.get(key) else "n/a"

    return (f"{floors['describe']}; network {floors['operations'] / 1e9:.2f} GOP -> floor fp32 {ms('fp32_floor_ms')}, "
            f"bf16 {ms('bf16_floor_ms')}, int8 {ms('int8_floor_ms')} (via {floors['gemm']['int8_best']})")


def format_row(name: str, e: dict[str, Any]) -> str:
    """The progress line of one measured back-end."""
    dev = e["deviation"]
    text = (f"{name:14s} build {e['build_s']:6.1f} s | net {e['network_ms']:7.1f} ms ({e['network_ratio']:4.2f}x; "
            f"eager just before: {e['eager_network_ms_paired']:.1f} ms)")
    if "tracker" in e:
        agree, same = e["agreement"], e["agreement_same_state"]
        text += (f" | tracker {e['tracker']['mean_ms']:7.1f} ms/frame = {e['tracker_fps']:5.1f} fps "
                 f"({e['e2e_ratio']:4.2f}x eager net, {e['e2e_ratio_paired']:4.2f}x paired; crop+post "
                 f"{e['tracker']['outside_network_ms']:.1f} ms) | IoU vs eager min {agree['iou_min']:.3f} "
                 f"mean {agree['iou_mean']:.3f} ({agree['frames_below_0.9']}/{agree['frames']} < 0.9; same state: "
                 f"min {same['iou_min']:.3f}, {same['frames_below_0.9']} < 0.9)")
    text += (f" | max dev score {dev['score_map']['abs']:.1e} size {dev['size_map']['abs']:.1e} "
             f"offset {dev['offset_map']['abs']:.1e} (rel {max(d['rel'] for d in dev.values()):.1e})"
             f" [load {e['load_start']}->{e['load_end']}]")
    return text


def gate_text(entry: dict[str, Any]) -> str:
    """'pass', 'FAIL' or '-' (no frames tracked) for one back-end's accuracy gate."""
    gate = entry.get("gate")
    return "-" if gate is None else ("pass" if gate["passed"] else "FAIL")


def format_report(result: BenchmarkResult) -> str:
    """The summary table, per-sequence agreement and verdict (``result`` is only read)."""
    from lib.test.tracker.backends.gate import MAP_DEVIATION_LIMIT, SAME_STATE_IOU_LIMIT

    nan = float("nan")
    lines = ["", format_floors(result.floors)] if result.floors else [""]
    lines += [f"eager fp32 network only: {result.eager_network_ms:.1f} ms at the start, "
                 f"{result.eager_network_ms_end:.1f} ms at the end (load {result.eager_load} -> "
                 f"{result.eager_load_end})"]
    header = (f"{'backend':14s} | {'net ms':>7s} | {'net x':>5s} | {'trk ms':>7s} | {'trk fps':>7s} | "
              f"{'e2e x':>5s} | {'pair x':>6s} | {'floor x':>7s} | {'dScore':>7s} | {'dSize':>7s} | {'dOffset':>7s} | "
              f"{'IoUmin':>6s} | {'IoUmean':>7s} | {'<0.9':>7s} | {'ss min':>6s} | {'ss<0.9':>6s} | {'gate':>4s}")
    lines += [header, "-" * len(header)]
    for name, e in result.backends.items():
        if "skipped" in e:
            lines.append(f"{name:14s} | skipped: {e['skipped'][:90]}")
            continue
        dev = e["deviation"]
        trk = e.get("tracker")
        agree, same = e.get("agreement", {}), e.get("agreement_same_state", {})
        below = f"{agree['frames_below_0.9']}/{agree['frames']}" if agree else "-"
        lines.append(
            f"{name:14s} | {e['network_ms']:7.1f} | {e['network_ratio']:5.2f} | "
            f"{trk['mean_ms'] if trk else nan:7.1f} | {e.get('tracker_fps', nan):7.1f} | "
            f"{e.get('e2e_ratio', nan):5.2f} | {e.get('e2e_ratio_paired', nan):6.2f} | "
            f"{e.get('tracker_x_int8_floor', e.get('network_x_int8_floor', nan)):7.2f} | "
            f"{dev['score_map']['abs']:7.1e} | {dev['size_map']['abs']:7.1e} | {dev['offset_map']['abs']:7.1e} | "
            f"{agree.get('iou_min', nan):6.3f} | {agree.get('iou_mean', nan):7.3f} | "
            f"{below:>7s} | {same.get('iou_min', nan):6.3f} | {same.get('frames_below_0.9', '-'):>6} | "
            f"{gate_text(e):>4s}")
    lines.append("e2e x = end-to-end tracker fps / eager fp32 network-only fps (crop + network + post-processing); "
                 "pair x: the same against eager timed again just before that back-end (load drift); "
                 "floor x: tracker ms per frame (network ms without frames) / the network's int8 floor (its "
                 "operations at this CPU's int8 GEMM rate, measured in this run); "
                 "IoU: per-frame IoU of the free-running tracker's boxes vs the eager fp32 tracker's; ss = same "
                 "state: every frame tracked from the eager tracker's previous box; gate: map deviation on the "
                 f"tracked frames <= {MAP_DEVIATION_LIMIT:.0e} (relative) and same-state IoU >= "
                 f"{SAME_STATE_IOU_LIMIT} on every frame.")
    tracked = {name: e for name, e in result.backends.items() if "agreement" in e}
    if tracked:
        sequence_names = list(next(iter(tracked.values()))["vs_ground_truth"])
        lines.append("per sequence: free-running IoU vs eager mean/min (same-state min); in brackets the "
                     "back-end's own mean IoU with the ground truth")
        lines.append(f"{'backend':14s} | " + " | ".join(n.rjust(28) for n in sequence_names))
        for name, e in tracked.items():
            free, same = e["agreement"]["per_sequence"], e["agreement_same_state"]["per_sequence"]
            own = e["vs_ground_truth"]
            lines.append(f"{name:14s} | " + " | ".join(
                f"{free[n]['mean']:.3f}/{free[n]['min']:.3f} ({same[n]['min']:.3f}) [{own[n]:.2f}]".rjust(28)
                for n in sequence_names))
    best = result.best
    if best:
        verdict = "reached" if best[1] >= TARGET_RATIO else "NOT reached"
        lines.append(f"target {TARGET_RATIO:.1f}x end to end: {verdict} (best: {best[0]} at {best[1]:.2f}x, "
                     f"{best[3]:.2f}x against the paired eager timing; min IoU vs eager {best[2]:.3f})")
        floor_x = result.backends[best[0]].get("tracker_x_int8_floor")
        if floor_x is not None:
            verdict = "reached" if floor_x <= FLOOR_TARGET else "NOT reached"
            lines.append(f"target: end to end within {FLOOR_TARGET:.0f}x of the int8 floor: {verdict} ({best[0]} at "
                         f"{floor_x:.2f}x the floor of {result.floors['int8_floor_ms']:.1f} ms)")
    return "\n".join(lines)


@dataclass
class ProfileSettings:
    """What ``profile_model.py`` measures; the defaults are the command line's."""

    config: str
    script: str = "ostrack"
    checkpoint: str | None = None  # timing does not depend on the weights
    opts: list[str] = field(default_factory=list)
    device: str = "cpu"
    threads: int | None = None  # None: torch's choice
    backend: str = "eager"
    warmup: int = 10
    iterations: int = 50
    frame_size: str = "640x360"  # WxH of the generated frames for the tracker FPS


@dataclass
class ProfileResult:
    """Size, MACs and speed of one config on one back-end; ``to_dict()`` is the JSON report."""

    config: str
    opts: list[str]
    backend: str
    template_size: int
    search_size: int
    device: str
    device_name: str
    threads: int
    params_M: float
    macs_published_G: float
    macs_exact_G: float
    network_ms: float
    network_fps: float
    tracker_ms: float
    tracker_fps: float
    tracker_overhead_ms: float  # the tracker's own work per frame: frame time minus that frame's network call
    tracker_overhead_share: float
    torch: str
    iterations: int  # timed calls behind each median (printed, not part of the report)

    def to_dict(self) -> dict[str, Any]:
        report = asdict(self)
        del report["iterations"]
        return report


def format_profile(result: ProfileResult) -> str:
    """The printed summary of a profile (``result`` is only read)."""
    return "\n".join([
        f"{result.config} ({result.template_size}/{result.search_size}) on {result.device} [{result.device_name}, "
        f"{result.threads} threads], back-end {result.backend}",
        f"  params {result.params_M:.2f} M | MACs {result.macs_published_G:.2f} G (published convention: "
        f"linear/conv/norm) | {result.macs_exact_G:.2f} G exact (with attention)",
        f"  network  {result.network_ms:8.2f} ms  ({result.network_fps:6.1f} fps, median of {result.iterations})",
        f"  tracker  {result.tracker_ms:8.2f} ms  ({result.tracker_fps:6.1f} fps end to end)",
        f"  tracker work outside the network: {result.tracker_overhead_ms:.2f} ms = "
        f"{100 * result.tracker_overhead_share:.1f} % of the frame time",
    ])
