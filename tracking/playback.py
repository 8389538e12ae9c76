"""Play one sequence back with the ground truth and several trackers' boxes: an MP4 and a hardest-frames PNG.

    python tracking/playback.py --dataset otb --sequence Basketball \\
        --tracker LoReTrack=output/test/tracking_results/loretrack/loretrack_256 --tracker ATOM=/data/raw/OTB100/ATOM
    python tracking/playback.py --dataset lasot --sequence airplane-1 --result_root /data/raw/LaSOT --max_frames 300

Results are raw folders of <seq>.txt files (ours or published ones; file names are matched as the analysis
matches them). --result_root takes every sub-folder as one tracker named after it. The video shows a legend
(name, colour, average overlap) and an IoU strip with a cursor at the current frame; the contact sheet shows the
frames with the lowest IoU averaged over the trackers. Both go to --output_dir
(default <save_dir>/test/result_plots/playback) as <dataset>_<seq>_playback.mp4 and <dataset>_<seq>_hardest.png.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import _init_paths  # noqa: F401
from lib.utils.cli import base_parser, run_main
from lib.utils.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    lines = __doc__.splitlines()
    parser = base_parser(lines[0], "save_dir", epilog="\n".join(lines[1:]))
    parser.add_argument("--dataset", required=True, help="benchmark name, e.g. otb, lasot, uav, got10k_val")
    parser.add_argument("--dataset_root", default=None, help="benchmark folder (default: from the path settings)")
    parser.add_argument("--sequence", required=True, help="sequence name as the benchmark lists it, e.g. Basketball")
    parser.add_argument("--tracker", action="append", default=[], metavar="NAME=DIR",
                        help="a tracker's raw result folder, optionally named (repeatable)")
    parser.add_argument("--result_root", default=None, help="folder with one sub-folder of raw results per tracker")
    parser.add_argument("--output_dir", default=None, help="where the MP4 and PNG go")
    parser.add_argument("--max_frames", type=int, default=None, help="render only the first N frames")
    parser.add_argument("--fps", type=float, default=None, help="video frame rate (default: 25)")
    parser.add_argument("--tiles", type=int, default=None, help="hardest frames on the contact sheet (default: 12)")
    return parser


def tracker_spec(text: str):
    """``NAME=DIR`` or just ``DIR`` (named after the folder)."""
    from lib.test.analysis.result_files import TrackerSpec

    name, sep, folder = text.partition("=")
    if not sep:
        return TrackerSpec.from_folder(Path(text))
    if not name or not folder:
        raise UserError(f"--tracker '{text}' must be NAME=DIR or DIR")
    return TrackerSpec.from_folder(Path(folder), name)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from lib.test.analysis.playback import render_playback, trackers_in_root
    from lib.test.evaluation.datasets import get_dataset
    from lib.utils import run_layout
    from lib.utils.paths import get_paths

    trackers = [tracker_spec(text) for text in args.tracker]
    if args.result_root:
        trackers += trackers_in_root(args.result_root)
    paths = get_paths(save_dir=args.save_dir)
    seq = get_dataset(args.dataset, paths=paths, root=args.dataset_root, sequences=[args.sequence])[0]
    output_dir = Path(args.output_dir) if args.output_dir else run_layout.plots_root(paths) / "playback"
    result = render_playback(seq, trackers, output_dir, dataset=args.dataset, max_frames=args.max_frames,
                             fps=args.fps, tiles=args.tiles)
    for track in result.tracks:
        print(f"{track.name}: average overlap {track.average_overlap:.3f} ({track.source})")
    print(f"video: {result.video} ({result.num_frames} frames)")
    frames = ", ".join(str(index + 1) for index, _ in result.hardest)
    print(f"contact sheet: {result.contact_sheet} (hardest frames: {frames})")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
