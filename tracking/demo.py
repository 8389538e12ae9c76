"""LoReTrack end to end on a fresh machine: no datasets, no weights, no GPU needed.

    python tracking/demo.py [--seeds 3] [--output DIR] [--backend auto|eager|...]

Generates the embedded benchmark (realistic sequences from images bundled with installed packages),
trains a high-resolution teacher, trains a low-resolution student without and with distillation from it,
tracks the test split with all three and a static-box baseline, and prints the table (AUC, Precision,
Norm Precision, FPS, MACs). Writes the success plot, an annotated video and a JSON summary to
``<save_dir>/demo/``. A re-run reuses finished stages (and resumes an interrupted training).
"""
from __future__ import annotations

import logging
from pathlib import Path

import _init_paths  # noqa: F401
from lib.utils.cli import base_parser, run_main, setup_logging
from lib.utils.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], "no_progress")
    parser.add_argument("--seeds", type=int, default=1, help="student runs per variant (mean and spread)")
    parser.add_argument("--output", default=None, help="output root (default: settings / LORETRACK_SAVE_DIR)")
    parser.add_argument("--epochs", type=int, default=None, help="override the demo configs' TRAIN.EPOCH")
    parser.add_argument("--samples_per_epoch", type=int, default=None)
    parser.add_argument("--backend", default="auto",
                        help="network back-end for tracking (default auto: the fastest that passes the accuracy "
                             "gate on this machine, measured once per model; eager for fp32 as trained)")
    parser.add_argument("--quick", action="store_true", help="a tiny run (minutes less; for tests): few "
                        "sequences, 2 epochs of 64 pairs; the numbers mean nothing")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        raise UserError("--seeds must be at least 1")
    setup_logging(logging.WARNING)

    from lib.demo import Demo, DemoSettings
    from lib.utils.io import ensure_writable
    from lib.utils.paths import get_paths

    ensure_writable(Path(args.output) if args.output else get_paths().save_dir, "the demo's outputs")

    settings = DemoSettings(seeds=args.seeds, output=Path(args.output) if args.output else None,
                            epochs=args.epochs, samples_per_epoch=args.samples_per_epoch,
                            backend=args.backend, progress=not args.no_progress)
    if args.quick:
        settings.num_train, settings.num_val, settings.num_test = 4, 1, 2
        settings.frames, settings.frame_size = (20, 24), (160, 120)
        settings.epochs, settings.samples_per_epoch = settings.epochs or 2, settings.samples_per_epoch or 64
    result = Demo(settings).run()
    print()
    print(result.table)
    for name, summary in result.seed_summary.items():
        aucs = ", ".join(f"{a:.2f}" for a in summary["aucs"])
        print(f"{name}: AUC {summary['mean_auc']:.2f} +- {summary['std_auc']:.2f} over {len(summary['aucs'])} "
              f"seeds ({aucs})")
    kd, plain = result.scores.get("student + KD"), result.scores.get("student")
    if kd and plain:
        delta = kd["AUC"] - plain["AUC"]
        print(f"distillation changed the student's AUC by {delta:+.2f} points on this benchmark"
              + (" (one seed: run --seeds 3 for the spread)" if len(result.seed_summary) == 0 else ""))
    for what, path in result.outputs.items():
        print(f"{what}: {path}")
    print(f"demo finished in {result.seconds / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
