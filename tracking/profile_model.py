"""Parameters, MACs (published and exact), network latency and end-to-end tracker FPS of a config.

    python tracking/profile_model.py --script ostrack --config vitb_256_mae_ce_32x4_ep300 [--device cpu|cuda]
        [--threads N] [--json OUT] [--opts TEST.SEARCH_SIZE=128 TEST.TEMPLATE_SIZE=64]
        [--backend eager|bf16|bf16-autocast|bf16-compile|onnx|onnx-int8]

Network latency: batch-1 forwards on random crops after warm-up, median (OSTrack's protocol times the
same thing as a mean). Tracker FPS: ``track()`` on a generated clip, i.e. crop + normalise + network + Hann
window + decode + map back, median per frame. The tracker's own per-frame work is measured inside each
tracked frame (frame time minus that frame's network call), so it does not suffer from drift between runs.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import _init_paths  # noqa: F401

from lib.utils.cli import run_main
from lib.utils.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", default="ostrack")
    parser.add_argument("--config", required=True, help="config name in experiments/<script>/ or a YAML path")
    parser.add_argument("--checkpoint", default=None, help="weights (timing does not depend on them)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--frame_size", default="640x360", help="WxH of the generated frames for tracker FPS")
    parser.add_argument("--opts", nargs="*", default=[], help="config overrides KEY=VALUE")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    parser.add_argument("--backend", default="eager",
                        help="network back-end (lib/test/tracker/backends.py): eager, bf16, bf16-autocast, "
                             "bf16-compile, onnx, onnx-int8; CPU only except eager")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from lib.config import load_config
    from lib.test.tracker import OSTrackTracker
    from lib.utils.io import atomic_write_text
    from lib.utils.profiling import count_macs_exact, count_macs_published, time_callable
    from lib.utils.synthetic import moving_square_clip

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but CUDA is not available; use --device cpu")
    try:
        width, height = (int(v) for v in args.frame_size.lower().split("x"))
    except ValueError:
        raise UserError(f"--frame_size must look like 640x360, got '{args.frame_size}'") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, overrides=args.opts, script=args.script)
    options = {"threads": args.threads} if args.threads and args.backend != "eager" else None
    torch.manual_seed(0)  # the same random weights every run: an ONNX back-end then re-uses its cached export
    tracker = OSTrackTracker.from_config(cfg, checkpoint=args.checkpoint, device=args.device, backend=args.backend,
                                         backend_options=options)
    model = tracker.model
    t_size, s_size = cfg.TEST.TEMPLATE_SIZE, cfg.TEST.SEARCH_SIZE
    template = torch.randn(1, 3, t_size, t_size)
    search = torch.randn(1, 3, s_size, s_size)
    params = sum(p.numel() for p in model.parameters())
    macs_published = count_macs_published(model.cpu(), template, search)
    macs_exact = count_macs_exact(model, template, search)
    model.to(args.device)
    template, search = template.to(args.device), search.to(args.device)
    mask = model.ce_template_mask(1, args.device)
    sync = args.device == "cuda"

    network_fn = tracker.network_fn  # the eager model or the chosen back-end

    def network() -> None:
        with torch.no_grad():
            network_fn(template, search, mask)

    net_timing = time_callable(network, args.warmup, args.iterations, synchronize=sync)
    frames, boxes = moving_square_clip(args.warmup + args.iterations + 1, size=(height, width))
    tracker.initialize(frames[0], {"init_bbox": boxes[0].tolist()})
    inner_ms: list[float] = []
    eager = tracker.network_fn

    def timed_network(*inputs):  # the network's share of each tracked frame, measured inside that frame
        start = time.perf_counter()
        out = eager(*inputs)
        if sync:
            torch.cuda.synchronize()
        inner_ms.append((time.perf_counter() - start) * 1000)
        return out

    tracker.network_fn = timed_network
    clip = iter(frames[1:])
    tracker_timing = time_callable(lambda: tracker.track(next(clip)), args.warmup, args.iterations,
                                   synchronize=sync)
    frame_ms = tracker_timing.samples
    outside = sorted(total - net for total, net in zip(frame_ms, inner_ms[args.warmup:]))
    overhead = statistics.median(outside)
    device_name = torch.cuda.get_device_name() if sync else platform.processor() or platform.machine()
    report = {
        "config": args.config, "opts": args.opts, "backend": args.backend, "template_size": t_size, "search_size": s_size,
        "device": args.device, "device_name": device_name,
        "threads": tracker.backend.threads if tracker.backend is not None else torch.get_num_threads(),
        "params_M": params / 1e6, "macs_published_G": macs_published / 1e9, "macs_exact_G": macs_exact / 1e9,
        "network_ms": net_timing.median_ms, "network_fps": net_timing.fps,
        "tracker_ms": tracker_timing.median_ms, "tracker_fps": tracker_timing.fps,
        "tracker_overhead_ms": overhead, "tracker_overhead_share": overhead / tracker_timing.median_ms,
        "torch": torch.__version__,
    }
    print(f"{args.config} ({t_size}/{s_size}) on {args.device} [{device_name}, {report['threads']} threads], "
          f"back-end {args.backend}")
    print(f"  params {report['params_M']:.2f} M | MACs {report['macs_published_G']:.2f} G (published convention: "
          f"linear/conv/norm) | {report['macs_exact_G']:.2f} G exact (with attention)")
    print(f"  network  {net_timing.median_ms:8.2f} ms  ({net_timing.fps:6.1f} fps, median of {args.iterations})")
    print(f"  tracker  {tracker_timing.median_ms:8.2f} ms  ({tracker_timing.fps:6.1f} fps end to end)")
    print(f"  tracker work outside the network: {overhead:.2f} ms = {100 * report['tracker_overhead_share']:.1f} % "
          "of the frame time")
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
