"""Training throughput (samples/s) and, under distillation, the teacher's share of the step time.

    python tracking/benchmark_training.py --config loretrack_128 --script loretrack --batch 8 --steps 10
    python tracking/benchmark_training.py --config vitb_256_mae_32x4_ep300 \\
        --opts DATA.SEARCH.SIZE=128 DATA.TEMPLATE.SIZE=64

Steps run on random crops (data loading excluded: it runs in worker processes during real training), with
the real actor, optimiser and gradient clipping. A distillation config without teacher weights gets a
randomly initialised teacher: timing does not depend on the weights.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import _init_paths  # noqa: F401
from lib.utils.cli import base_parser, run_main


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], "threads", "opts", "json")
    parser.add_argument("--config", required=True)
    parser.add_argument("--script", default="ostrack")
    parser.add_argument("--batch", type=int, default=None, help="default: TRAIN.BATCH_SIZE")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    from lib.config import load_config
    from lib.models import build_model
    from lib.train.actor import TrackingActor
    from lib.train.run_training import build_distiller, build_optimizer, crop_network
    from lib.train.trainer import Trainer
    from lib.utils.io import atomic_write_text

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(args.config, overrides=["MODEL.PRETRAIN_FILE=''", *args.opts], script=args.script)
    batch_size = args.batch or cfg.TRAIN.BATCH_SIZE
    teacher = None
    if cfg.DISTILL.ENABLED and not Path(cfg.DISTILL.TEACHER.CHECKPOINT or "/nonexistent").is_file():
        from lib.train.loretrack import build_teacher

        teacher = build_teacher(cfg, load_checkpoint=False)
    model = build_model(cfg, training=True)
    distiller = build_distiller(cfg, model, torch.device("cpu"), 1, teacher=teacher)
    projections = getattr(distiller, "projections", None)
    actor = TrackingActor(model, cfg, distiller=distiller)
    optimizer, _ = build_optimizer(cfg, model, projections)
    cropper = crop_network(model, distiller)  # the crops come at the teacher's sizes under distillation
    template, search, _ = cropper.example_inputs(batch_size, generator=torch.Generator().manual_seed(0))
    batch = {"template_images": template, "search_images": search,
             "template_anno": torch.tensor([[0.25, 0.25, 0.5, 0.5]]).repeat(batch_size, 1),
             "search_anno": torch.tensor([[0.4, 0.4, 0.2, 0.2]]).repeat(batch_size, 1)}
    trainer = Trainer(actor, optimizer, [], cfg.TRAIN.EPOCH, "cpu", cfg.TRAIN.GRAD_CLIP_NORM, trainable=model,
                      extra_modules={"p": projections} if projections is not None else None)
    trainer.current_epoch = 1
    model.train()
    for _ in range(args.warmup):
        trainer.run_step(batch)
    if distiller is not None:
        distiller.teacher_seconds = 0.0
    start = time.perf_counter()
    for _ in range(args.steps):
        trainer.run_step(batch)
    seconds = time.perf_counter() - start
    report = {"config": args.config, "opts": args.opts, "batch": batch_size, "steps": args.steps,
              "threads": torch.get_num_threads(), "student_sizes": [model.template_size, model.search_size],
              "crop_sizes": [cropper.template_size, cropper.search_size],
              "step_s": seconds / args.steps, "samples_per_s": batch_size * args.steps / seconds}
    line = (f"{args.config}: batch {batch_size}, student {model.template_size}/{model.search_size} px, "
            f"{report['step_s'] * 1000:.0f} ms/step, {report['samples_per_s']:.2f} samples/s "
            f"({report['threads']} threads)")
    if distiller is not None:
        report["teacher_share"] = distiller.teacher_seconds / seconds
        report["teacher_dtype"] = cfg.DISTILL.TEACHER.DTYPE
        line += (f"; teacher {cfg.DISTILL.TEACHER.CONFIG} ({cfg.DISTILL.TEACHER.DTYPE}) takes "
                 f"{100 * report['teacher_share']:.1f} % of the step")
    print(line)
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
