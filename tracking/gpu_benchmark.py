"""GPU check in one run (random weights, about 5 minutes): network FPS, CUDA graphs, torch.compile, batched
throughput, an AMP LoReTrack training step with its teacher, NCCL set-up.

    python tracking/gpu_benchmark.py [--json OUT] [--budget_s 300] [--sections forward,batched,...]
        [--compile_mode reduce-overhead|max-autotune-no-cudagraphs] [--smoke]

Without a CUDA GPU (or with --smoke) every code path runs on 2-block versions of the networks: a smoke test, not
a measurement. Steps that fail or would not fit in --budget_s are listed as skipped, with the reason; the run
goes on. Rows, sections and ratios: docs/gpu.md (lib/test/evaluation/gpu_benchmark.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import _init_paths  # noqa: F401
from lib.utils.cli import base_parser, run_main


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], "threads", "json", "debug")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available, else a CPU smoke run), cuda, cpu")
    parser.add_argument("--smoke", action="store_true", help="2-block networks and few calls: checks the code paths")
    parser.add_argument("--budget_s", type=float, default=None,
                        help="seconds for the whole run (default 300): steps that would not fit are skipped")
    parser.add_argument("--sections", default=None, help="comma-separated subset of forward, batched, train, "
                                                         "distributed, cuda_graph, compile (default: all)")
    parser.add_argument("--compile_mode", default=None,
                        help="torch.compile mode: reduce-overhead (default) or max-autotune-no-cudagraphs")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls per row (default 20; smoke 1)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="timed calls per row at most (default 100; smoke 3); fewer where a row would run long")
    parser.add_argument("--max_batch", type=int, default=None, help="batched rows: powers of two up to this "
                                                                     "(default 64; smoke 4)")
    parser.add_argument("--train_batch", type=int, default=None,
                        help="training-step batch (default: the config's TRAIN.BATCH_SIZE; smoke 2)")
    parser.add_argument("--train_steps", type=int, default=None, help="timed training steps (default 10; smoke 2)")
    args = parser.parse_args(argv)

    from lib.test.evaluation.gpu_benchmark import GpuBenchmarkSettings, format_gpu_benchmark, run_gpu_benchmark
    from lib.utils.io import atomic_write_text

    chosen = {"budget_s": args.budget_s, "compile_mode": args.compile_mode,
              "sections": None if args.sections is None else [s.strip() for s in args.sections.split(",") if s.strip()]}
    result = run_gpu_benchmark(GpuBenchmarkSettings(
        device=args.device, smoke=args.smoke, warmup=args.warmup, iterations=args.iterations,
        max_batch=args.max_batch, train_batch=args.train_batch, train_steps=args.train_steps, threads=args.threads,
        **{key: value for key, value in chosen.items() if value is not None}))
    print(format_gpu_benchmark(result))
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(result.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
