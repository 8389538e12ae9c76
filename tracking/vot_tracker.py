"""Serve a tracker over TraX for the VOT toolkit: the `command` of a trackers.ini entry (docs/vot.md).

    python tracking/vot_tracker.py --script loretrack --config <name or YAML> [--checkpoint PATH]
        [--backend eager|bf16|bf16-autocast|bf16-compile|onnx|onnx-int8] [--device cpu|cuda] [--threads N]
        [--opts KEY=VALUE ...]

The toolkit starts this process and talks TraX on its stdin/stdout, so it prints nothing there: messages
and errors go to stderr (the toolkit shows them in its log). Repeated initialisations and polygon regions
(reported back as axis-aligned rectangles) are handled; the tracker is loaded before the TraX handshake.
"""
from __future__ import annotations

import _init_paths  # noqa: F401
from lib.utils.cli import base_parser, run_main


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], "save_dir", "device", "threads", "opts", epilog=__doc__)
    parser.add_argument("--script", default="ostrack", help="tracker family: experiments/<script>/ (ostrack, "
                        "loretrack)")
    parser.add_argument("--config", required=True, help="config name in experiments/<script>/ or a YAML path")
    parser.add_argument("--checkpoint", default=None,
                        help="weights (default: the TEST.EPOCH checkpoint of this config's training run)")
    parser.add_argument("--backend", default="eager", help="network back-end (see tracking/test.py --help)")
    args = parser.parse_args(argv)

    from lib.test.vot.trax_server import VotTrackerRun, serve

    serve(VotTrackerRun(args.script, args.config, checkpoint=args.checkpoint, backend=args.backend,
                        device=args.device, overrides=tuple(args.opts), threads=args.threads,
                        save_dir=args.save_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
