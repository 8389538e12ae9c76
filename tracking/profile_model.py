"""Parameters, MACs (published and exact), network latency and end-to-end tracker FPS of a config.

    python tracking/profile_model.py --script ostrack --config vitb_256_mae_ce_32x4_ep300 [--device cpu|cuda]
        [--threads N] [--json OUT] [--opts TEST.SEARCH_SIZE=128 TEST.TEMPLATE_SIZE=64]
        [--backend eager|auto|onnx-int8|openvino-int8|...]

Network latency: batch-1 forwards on random crops after warm-up, median (OSTrack's protocol times the
same thing as a mean). Tracker FPS: ``track()`` on a generated clip, i.e. crop + normalise + network + Hann
window + decode + map back, median per frame. The tracker's own per-frame work is measured inside each
tracked frame (frame time minus that frame's network call), so it does not suffer from drift between runs
(details: lib/test/evaluation/model_profile.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import _init_paths  # noqa: F401
from lib.test.evaluation.speed_report import ProfileSettings, format_profile
from lib.utils.cli import base_parser, run_main


def main(argv: list[str] | None = None) -> int:
    defaults = ProfileSettings(config="")
    parser = base_parser(__doc__.splitlines()[0], "device", "threads", "opts", "json", "debug")
    parser.add_argument("--script", default=defaults.script)
    parser.add_argument("--config", required=True, help="config name in experiments/<script>/ or a YAML path")
    parser.add_argument("--checkpoint", default=None, help="weights (timing does not depend on them)")
    parser.add_argument("--warmup", type=int, default=defaults.warmup)
    parser.add_argument("--iterations", type=int, default=defaults.iterations)
    parser.add_argument("--frame_size", default=defaults.frame_size,
                        help="WxH of the generated frames for tracker FPS")
    parser.add_argument("--backend", default=defaults.backend,
                        help="network back-end: eager, auto or a name of lib/test/tracker/backends (an unknown "
                             "name lists them); CPU only except eager")
    args = parser.parse_args(argv)

    from lib.test.evaluation.model_profile import profile_tracker
    from lib.utils.io import atomic_write_text

    result = profile_tracker(ProfileSettings(
        config=args.config, script=args.script, checkpoint=args.checkpoint, opts=args.opts, device=args.device,
        threads=args.threads, backend=args.backend, warmup=args.warmup, iterations=args.iterations,
        frame_size=args.frame_size))
    print(format_profile(result))
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(result.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
