"""Fast CPU tracker: speed and agreement of each network back-end against eager fp32, in one run.

    python tracking/benchmark_fast_tracker.py [--script loretrack --config loretrack_128] [--checkpoint PATH]
        [--backends eager bf16 onnx onnx-int8 bf16-compile] [--threads 2] [--json OUT]
        [--otb_root ../shared/data/otb_mini_sequences] [--sequences Couple Crossing Football1] [--opts K=V ...]

Prints ratios, not pass/fail: first the eager fp32 network-only latency (the reference), then per back-end
its network latency, the end-to-end tracker speed on real OTB frames, the speed-up over the eager network
alone, the deviation of its score/size/offset maps from eager on fixed inputs, and the per-frame IoU of its
tracked boxes against the eager fp32 tracker (details: lib/test/evaluation/speed_benchmark.py). A last control row,
``fp32+noise``, tracks with eager fp32 plus seeded noise on its maps (``--control_noise``, default sigma
2.5e-4 of each map's max, i.e. about 1e-3 at most: below every fast mode's deviation); its free-running IoU
against eager shows how much of the fast modes' drift the model's own sensitivity explains.
Without ``--checkpoint`` the network has random weights (timing is unaffected; agreement is then only
indicative, since untrained score maps have many near-equal peaks).
"""
from __future__ import annotations

import json
from pathlib import Path

import _init_paths  # noqa: F401
from lib.test.evaluation.speed_report import BenchmarkSettings, format_report
from lib.utils.cli import base_parser, run_main


def main(argv: list[str] | None = None) -> int:
    defaults = BenchmarkSettings()
    parser = base_parser(__doc__.splitlines()[0], "opts", "threads", "json", "debug",
                         epilog="--threads defaults to all cores of this machine here, for every back-end.")
    parser.add_argument("--script", default=defaults.script)
    parser.add_argument("--config", default=defaults.config, help="config name in experiments/<script>/ or a YAML")
    parser.add_argument("--checkpoint", default=None, help="trained weights (default: random weights)")
    parser.add_argument("--backends", nargs="+", default=list(defaults.backends))
    parser.add_argument("--warmup", type=int, default=defaults.warmup, help="untimed calls before each timing")
    parser.add_argument("--iterations", type=int, default=defaults.iterations, help="timed network calls per back-end")
    parser.add_argument("--otb_root", default=None,
                        help="OTB-layout folder (default: ../shared/data/otb_mini_sequences)")
    parser.add_argument("--sequences", nargs="*", default=list(defaults.sequences),
                        help="sequences to track (none: network timings and map deviations only)")
    parser.add_argument("--max_frames", type=int, default=None, help="use only the first N frames of each sequence")
    parser.add_argument("--cache_dir", default=None, help="ONNX cache (default: <save_dir>/cache/onnx)")
    parser.add_argument("--ort_optimization", default=defaults.ort_optimization,
                        choices=["disable", "basic", "extended", "all"])
    parser.add_argument("--ort_spinning", default=defaults.ort_spinning, choices=["run", "always", "never"],
                        help="ORT idle threads busy-wait: never (default), within a run only, always")
    parser.add_argument("--control_noise", type=float, default=defaults.control_noise,
                        help="sigma, relative to each map's max |value|, of the noise the 'fp32+noise' control row "
                             "adds to eager's maps (max deviation ~4 sigma); 0 drops that row")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the random weights (no --checkpoint)")
    parser.add_argument("--no_floors", action="store_true",
                        help="skip the GEMM-rate measurement (the network's fp32/bf16/int8 floors, ~30 s)")
    args = parser.parse_args(argv)

    from lib.test.evaluation.speed_benchmark import run_benchmark
    from lib.utils.io import atomic_write_text

    settings = BenchmarkSettings(
        config=args.config, script=args.script, checkpoint=args.checkpoint, opts=args.opts, backends=args.backends,
        threads=args.threads, warmup=args.warmup, iterations=args.iterations, otb_root=args.otb_root,
        sequences=args.sequences, max_frames=args.max_frames, cache_dir=args.cache_dir,
        ort_optimization=args.ort_optimization, ort_spinning=args.ort_spinning, control_noise=args.control_noise,
        seed=args.seed, floors=not args.no_floors)
    result = run_benchmark(settings, progress=print)
    print(format_report(result))
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(result.to_dict(), indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
