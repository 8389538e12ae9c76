"""Track one object through any video OpenCV can read; write the annotated video and the boxes.

    python tracking/video_demo.py <config> <checkpoint> <video> [--init_bbox x,y,w,h] [--output DIR]

Without --init_bbox the first frame's box is taken from ``<video>.txt`` (x,y,w,h on its first line) if it
exists; otherwise it is an error (this is a headless tool: no window to draw a box in).
"""
from __future__ import annotations

import time
from pathlib import Path

import _init_paths  # noqa: F401
from lib.utils.cli import base_parser, run_main
from lib.utils.errors import UserError


def parse_box(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        raise UserError(f"--init_bbox must be four numbers x,y,w,h, got '{text}'") from None
    if len(values) != 4:
        raise UserError(f"--init_bbox must be four numbers x,y,w,h, got '{text}'")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], "device")
    parser.add_argument("config", help="experiment config name or YAML path")
    parser.add_argument("checkpoint", help="trained weights")
    parser.add_argument("video", help="a video file (mp4, avi, ...) or an image pattern like frames/%%04d.jpg")
    parser.add_argument("--script", default=None, help="experiments/<script>/ to look the config up in")
    parser.add_argument("--init_bbox", default=None, help="x,y,w,h of the target in the first frame")
    parser.add_argument("--output", default=None, help="folder for <video>_tracked.mp4 and <video>_boxes.txt")
    parser.add_argument("--backend", default="auto", help="network back-end (see tracking/test.py --help)")
    args = parser.parse_args(argv)

    import cv2
    import numpy as np

    from lib.test.tracker.factory import TrackerFactory, backend_tracker_options
    from lib.utils.io import atomic_path, atomic_write_text, ensure_writable
    from lib.utils.paths import get_paths
    from lib.utils.video import BoxVideoWriter

    output = ensure_writable(Path(args.output) if args.output else get_paths().save_dir / "video_demo", "--output")
    video = Path(args.video)
    if "%" not in args.video and not video.is_file():
        raise UserError(f"video not found: {video}")
    capture = cv2.VideoCapture(str(video))
    ok, first = capture.read()
    if not ok:
        raise UserError(f"OpenCV cannot read frames from {video}; is it a video file or an image pattern?")
    if args.init_bbox:
        init_box = parse_box(args.init_bbox)
    else:
        sidecar = video.with_suffix(".txt")
        if not sidecar.is_file():
            raise UserError("give the target's first-frame box with --init_bbox x,y,w,h "
                            f"(or put it in {sidecar.name} next to the video)")
        init_box = parse_box(sidecar.read_text().splitlines()[0].replace("\t", ","))
    options = backend_tracker_options(args.backend, get_paths())
    factory = TrackerFactory(args.config, args.script or "ostrack", args.checkpoint, tracker_options=options)
    tracker = factory.build_checked(args.device)
    stem = video.stem.replace("%", "")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    boxes, seconds = [], []
    with atomic_path(output / f"{stem}_tracked.mp4", suffix=".tmp.mp4") as tmp_video:
        writer = BoxVideoWriter(tmp_video, first.shape[1], first.shape[0], fps)
        frame, index = first, 0
        while ok:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            start = time.perf_counter()
            out = tracker.initialize(rgb, {"init_bbox": init_box}) if index == 0 else tracker.track(rgb)
            seconds.append(time.perf_counter() - start)
            box = out["target_bbox"]
            boxes.append(box)
            writer.write(rgb, [("tracker", box, (0, 255, 0))], f"frame {index + 1}")
            ok, frame = capture.read()
            index += 1
        writer.close()
    atomic_write_text(output / f"{stem}_boxes.txt", "".join(",".join(f"{v:.2f}" for v in b) + "\n" for b in boxes))
    tracked = np.array(seconds[1:]) if len(seconds) > 1 else np.array(seconds)
    print(f"tracked {len(boxes)} frames at {1.0 / max(tracked.mean(), 1e-9):.1f} fps; wrote "
          f"{output / (stem + '_tracked.mp4')} and {output / (stem + '_boxes.txt')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
