"""Parameters, MACs, network latency and end-to-end tracker speed of one config (``profile_model.py``).

Network latency: batch-1 forwards on random crops after warm-up, median (OSTrack's protocol times the same thing
as a mean). Tracker speed: ``track()`` on a generated clip, i.e. crop + normalise + network + Hann window +
decode + map back, median per frame. The tracker's back-end is a :class:`TimedBackend`, so the network's share
of each frame is measured inside that frame and the tracker's own work does not suffer from drift between runs.
"""
from __future__ import annotations

import platform
import statistics

import torch

from lib.config import load_config
from lib.test.evaluation.speed_report import ProfileResult, ProfileSettings
from lib.test.tracker.ostrack import OSTrackTracker
from lib.utils.errors import UserError
from lib.utils.profiling import count_macs_exact, count_macs_published, time_callable
from lib.utils.synthetic import moving_square_clip

MAX_FRAME_SIDE = 8192  # generated frames larger than 8K only measure the machine's memory


def parse_frame_size(text: str) -> tuple[int, int]:
    """``'640x360'`` -> (640, 360)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--frame_size must look like 640x360, got '{text}'") from None
    if not (1 <= width <= MAX_FRAME_SIDE and 1 <= height <= MAX_FRAME_SIDE):
        raise UserError(f"--frame_size {text}: width and height must be 1..{MAX_FRAME_SIDE} pixels, e.g. 640x360")
    return width, height


def check_settings(settings: ProfileSettings) -> tuple[int, int]:
    """The counts must be able to measure something; returns the frame size. Checked before anything is built."""
    if settings.iterations < 1:
        raise UserError(f"--iterations must be at least 1 (timed calls behind each median), got {settings.iterations}")
    if settings.warmup < 0:
        raise UserError(f"--warmup must be at least 0, got {settings.warmup}")
    if settings.threads is not None and settings.threads < 1:
        raise UserError(f"--threads must be at least 1 (or left out for torch's choice), got {settings.threads}")
    return parse_frame_size(settings.frame_size)


def profile_tracker(settings: ProfileSettings) -> ProfileResult:
    """Build the tracker of ``settings`` (random weights seeded 0 without a checkpoint) and measure it."""
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but CUDA is not available; use --device cpu")
    width, height = check_settings(settings)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    cfg = load_config(settings.config, overrides=settings.opts, script=settings.script)
    options = {"timed": True}
    if settings.threads and settings.backend != "eager":
        options["threads"] = settings.threads
    torch.manual_seed(0)  # the same random weights every run: an ONNX back-end then re-uses its cached export
    tracker = OSTrackTracker.from_config(cfg, checkpoint=settings.checkpoint, device=settings.device,
                                         backend=settings.backend, backend_options=options)
    timed = tracker.backend
    model = tracker.model
    params = sum(p.numel() for p in model.parameters())
    inputs = model.cpu().example_inputs(generator=torch.Generator().manual_seed(0))
    macs_published = count_macs_published(model, *inputs)
    macs_exact = count_macs_exact(model, *inputs)
    model.to(settings.device)
    template, search, mask = (None if t is None else t.to(settings.device) for t in inputs)
    sync = settings.device == "cuda"
    warmup, iterations = settings.warmup, settings.iterations

    def network() -> None:
        with torch.no_grad():
            timed.backend(template, search, mask)

    net_timing = time_callable(network, warmup, iterations, synchronize=sync)
    frames, boxes = moving_square_clip(warmup + iterations + 1, size=(height, width))
    tracker.initialize(frames[0], {"init_bbox": boxes[0].tolist()})
    timed.reset()
    clip = iter(frames[1:])
    tracker_timing = time_callable(lambda: tracker.track(next(clip)), warmup, iterations, synchronize=sync)
    in_frame_network_ms = timed.samples_ms[warmup:]
    overhead = statistics.median(
        total - net for total, net in zip(tracker_timing.samples, in_frame_network_ms, strict=True))
    return ProfileResult(
        config=settings.config, opts=list(settings.opts), backend=timed.name, template_size=model.template_size,
        search_size=model.search_size, device=settings.device,
        device_name=torch.cuda.get_device_name() if sync else platform.processor() or platform.machine(),
        threads=timed.threads, params_M=params / 1e6, macs_published_G=macs_published / 1e9,
        macs_exact_G=macs_exact / 1e9, network_ms=net_timing.median_ms, network_fps=net_timing.fps,
        tracker_ms=tracker_timing.median_ms, tracker_fps=tracker_timing.fps, tracker_overhead_ms=overhead,
        tracker_overhead_share=overhead / tracker_timing.median_ms, torch=torch.__version__, iterations=iterations)
