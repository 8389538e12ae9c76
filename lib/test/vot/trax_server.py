"""Serve one of our trackers over TraX, the protocol the VOT toolkit (and any TraX client) drives trackers with.

The client starts ``tracking/vot_tracker.py`` as a process and sends requests on its stdin/stdout: ``initialize``
(an image and the target's region), ``frame`` (an image), ``quit``. We answer each with the target's box as a
TraX rectangle. The same process may get any number of ``initialize`` requests (the VOT toolkit's supervised
and multi-start experiments re-initialise after a failure or at every anchor): each starts the tracker afresh.
Polygons (VOT's rotated ground truth) become their axis-aligned bounding box, as in pytracking's VOT integration.
"""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from lib.utils.errors import UserError
from lib.utils.image import read_rgb

TRACKER_NAME = "LoReTrack"


class TraxRequestError(UserError):
    """A TraX request our single-object, rectangle-reporting tracker cannot answer."""


def polygon_to_box(points: Sequence[Sequence[float]]) -> list[float]:
    """``[x, y, w, h]`` of the axis-aligned bounding box of a polygon's ``(x, y)`` points."""
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(xy) < 3:
        raise TraxRequestError(f"a polygon region needs at least 3 points, got {len(xy)}")
    x0, y0 = xy.min(axis=0)
    x1, y1 = xy.max(axis=0)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def region_to_box(region: Any) -> list[float]:
    """A TraX rectangle as ``[x, y, w, h]``; a polygon as its axis-aligned bounding box."""
    from trax import Region

    if region.type == Region.RECTANGLE:
        return [float(v) for v in region.bounds()]
    if region.type == Region.POLYGON:
        return polygon_to_box(list(region))
    raise TraxRequestError(f"cannot initialise from a TraX '{region.type}' region; send a rectangle or a polygon")


def read_request_image(images: Mapping[str, Any]) -> np.ndarray:
    """The RGB frame of a request: the colour channel, sent as a file path (the only format we announce)."""
    from trax import Image

    image = images.get("color") if images else None
    if image is None:
        raise TraxRequestError(f"the request has no colour image (channels: {sorted(images or {})})")
    if image.type() != Image.PATH:
        raise TraxRequestError(f"images must be sent as file paths, got a '{image.type()}' image")
    return read_rgb(image.path())


class TrackerLike(Protocol):
    """What :func:`serve_trax` needs of a tracker (:class:`~lib.test.tracker.ostrack.OSTrackTracker` has it)."""

    def initialize(self, image: np.ndarray, info: Mapping[str, Any]) -> Mapping[str, Any]: ...

    def track(self, image: np.ndarray, info: Mapping[str, Any] | None = None) -> Mapping[str, Any]: ...


def serve_trax(tracker: TrackerLike, name: str = TRACKER_NAME) -> int:
    """Answer TraX requests on this process's stdin/stdout until the client quits; the number of requests.

    Anything the tracker prints goes to stderr while serving: stdout carries the protocol.
    """
    from trax import Image, Rectangle, Region, Server, TraxStatus

    served = 0
    with contextlib.redirect_stdout(sys.stderr), \
            Server([Region.RECTANGLE, Region.POLYGON], [Image.PATH], ["color"], tracker_name=name) as server:
        while True:
            request = server.wait()
            if request.type == TraxStatus.QUIT:
                break
            image = read_request_image(request.image)
            if request.type == TraxStatus.INITIALIZE:
                if len(request.objects) != 1:
                    raise TraxRequestError(f"this tracker follows one object; the request has {len(request.objects)}")
                region, _properties = request.objects[0]
                out = tracker.initialize(image, {"init_bbox": region_to_box(region)})
            else:
                if request.objects:
                    raise TraxRequestError("a frame request may not add objects to this single-object tracker")
                out = tracker.track(image)
            server.status([(Rectangle.create(*[float(v) for v in out["target_bbox"]]), {})])
            served += 1
    return served


@dataclass(frozen=True)
class VotTrackerRun:
    """Which tracker the TraX entry serves: a config of ``experiments/<script>/``, weights, back-end, device."""

    script: str
    config: str
    checkpoint: str | None = None  # default: the TEST.EPOCH checkpoint of this config's training run
    backend: str = "eager"
    device: str = "cpu"
    overrides: tuple[str, ...] = ()
    threads: int | None = None
    save_dir: str | None = None
    tracker_options: dict[str, Any] = field(default_factory=dict)


def build_tracker(run: VotTrackerRun) -> Any:
    """The tracker ``run`` names, built and loaded before the handshake, so a bad config or checkpoint is a
    one-line error instead of a broken TraX session."""
    import torch

    from lib.config import resolve_config_path
    from lib.test.tracker.factory import TrackerFactory, backend_tracker_options, default_checkpoint
    from lib.utils.paths import get_paths

    if run.threads is not None:
        if run.threads < 1:
            raise UserError(f"--threads must be >= 1, got {run.threads}")
        torch.set_num_threads(run.threads)
    if run.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but CUDA is not available; use --device cpu")
    paths = get_paths(save_dir=run.save_dir)
    checkpoint = run.checkpoint
    if checkpoint is None:
        config_name = resolve_config_path(run.config, run.script).stem
        cfg = TrackerFactory(run.config, run.script, None, run.overrides).load_config()
        checkpoint = str(default_checkpoint(paths, run.script, config_name, cfg.TEST.EPOCH))
    options = {**backend_tracker_options(run.backend, paths), **run.tracker_options}
    return TrackerFactory(run.config, run.script, checkpoint, run.overrides, tracker_options=options)(run.device)


def serve(run: VotTrackerRun) -> int:
    """Build the tracker ``run`` names and serve it over TraX until the client quits; the number of requests."""
    return serve_trax(build_tracker(run))
