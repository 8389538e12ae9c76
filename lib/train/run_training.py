"""Build everything a training run needs from a config and run it (one process = one rank).

``tracking/train.py`` runs :func:`main` in this process, or launches itself under torchrun once per rank
(DDP: NCCL on GPUs, gloo on CPU). Outputs go to ``<save_dir>/checkpoints/train/<script>/<config>/`` (checkpoints, official
naming) and ``<save_dir>/tensorboard/train/<script>/<config>/``.
"""
from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from lib.config import Config, load_config
from lib.models import build_model, load_weights, read_checkpoint
from lib.train.actor import TrackingActor, TrainingDivergedError
from lib.train.data.frame_cache import FrameCache
from lib.train.data.processing import CropSettings, PairProcessing
from lib.train.data.sampler import TrackingSampler, collate_pairs
from lib.train.hooks import CheckpointHook, LoggingHook, ValidationHook, latest_checkpoint
from lib.train.trainer import Trainer
from lib.utils.errors import ConfigError, UserError
from lib.utils.paths import Paths, get_paths

log = logging.getLogger("lib.train")


class TrainingStoppedError(UserError):
    """Training cannot go on (diverged); the message names the last good checkpoint."""


@dataclass
class RunContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> RunContext:
    """Join the torchrun process group when launched by it (``WORLD_SIZE`` > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return RunContext()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    context = RunContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if device == "cuda":
        torch.cuda.set_device(context.local_rank)
    return context


def crop_settings(cfg: Config) -> tuple[CropSettings, CropSettings]:
    """Template and search crops as configured; under distillation they are cut at the teacher's sizes
    (same content, higher resolution) and the actor resizes them for the student."""
    t, s = cfg.DATA.TEMPLATE, cfg.DATA.SEARCH
    t_size, s_size = t.SIZE, s.SIZE
    if cfg.DISTILL.ENABLED:
        from lib.train.loretrack import teacher_crop_sizes

        t_size, s_size = teacher_crop_sizes(cfg)
    return (CropSettings(t_size, t.FACTOR, t.CENTER_JITTER, t.SCALE_JITTER),
            CropSettings(s_size, s.FACTOR, s.CENTER_JITTER, s.SCALE_JITTER))


def build_sampler(cfg: Config, split: str, paths: Paths, seed: int) -> TrackingSampler:
    """The pair sampler over ``DATA.TRAIN`` or ``DATA.VAL`` datasets."""
    from lib.train.data.datasets import CORRUPT_FRAME_ERRORS, build_dataset

    section = cfg.DATA[split]
    datasets = [build_dataset(name, paths=paths) for name in section.DATASETS_NAME]
    if cfg.DATA.FRAME_CACHE_MB > 0:
        cache = FrameCache(int(cfg.DATA.FRAME_CACHE_MB * 2 ** 20))  # one budget shared by all datasets
        for dataset in datasets:
            dataset.frame_cache = cache
    template, search = crop_settings(cfg)
    processing = PairProcessing(template, search, cfg.DATA.MEAN, cfg.DATA.STD, stride=cfg.MODEL.BACKBONE.STRIDE,
                                train=split == "TRAIN")
    return TrackingSampler(datasets, section.DATASETS_RATIO, section.SAMPLE_PER_EPOCH, cfg.DATA.MAX_SAMPLE_INTERVAL,
                           processing, seed=seed + (0 if split == "TRAIN" else 1_000_000),
                           corrupt_errors=CORRUPT_FRAME_ERRORS)


def build_loader(sampler: TrackingSampler, batch_size: int, num_workers: int, context: RunContext) -> DataLoader:
    index_sampler = (DistributedSampler(sampler, num_replicas=context.world_size, rank=context.rank, shuffle=False)
                     if context.world_size > 1 else None)
    if len(sampler) < batch_size * context.world_size:
        raise ConfigError(f"SAMPLE_PER_EPOCH ({len(sampler)}) is smaller than one batch on every process "
                          f"({batch_size} x {context.world_size})")
    # its own generator: a DataLoader otherwise draws from the global RNG, once per epoch in-process but once
    # per run with persistent workers, which would shift drop-path noise and make NUM_WORKER change the result
    return DataLoader(sampler, batch_size=batch_size, sampler=index_sampler, shuffle=False, drop_last=True,
                      num_workers=num_workers, collate_fn=collate_pairs, persistent_workers=num_workers > 0,
                      pin_memory=torch.cuda.is_available(), generator=torch.Generator().manual_seed(sampler.seed))


def build_optimizer(cfg: Config, model: torch.nn.Module, extra: torch.nn.Module | None = None
                    ) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW with the backbone at ``LR * BACKBONE_MULTIPLIER``; step decay every ``LR_DROP_EPOCH`` epochs.

    ``extra`` (e.g. distillation projections) trains at the head's learning rate.
    """
    train = cfg.TRAIN
    if train.OPTIMIZER.upper() != "ADAMW":
        raise ConfigError(f"TRAIN.OPTIMIZER '{train.OPTIMIZER}' is not supported; use ADAMW")
    head = [p for n, p in model.named_parameters() if "backbone" not in n and p.requires_grad]
    backbone = [p for n, p in model.named_parameters() if "backbone" in n and p.requires_grad]
    groups = [{"params": head}, {"params": backbone, "lr": train.LR * train.BACKBONE_MULTIPLIER}]
    if extra is not None:
        groups.append({"params": [p for p in extra.parameters() if p.requires_grad]})
    optimizer = torch.optim.AdamW(groups, lr=train.LR, weight_decay=train.WEIGHT_DECAY)
    if train.SCHEDULER.TYPE != "step":
        raise ConfigError(f"TRAIN.SCHEDULER.TYPE '{train.SCHEDULER.TYPE}' is not supported; use step")
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, train.LR_DROP_EPOCH, gamma=train.SCHEDULER.DECAY_RATE)
    return optimizer, scheduler


def build_distiller(cfg: Config, student: torch.nn.Module, device: torch.device, world_size: int) -> Any | None:
    """LoReTrack's teacher + distillation terms, when the config asks for them (see lib/train/loretrack.py)."""
    if not cfg.DISTILL.ENABLED:
        return None
    from lib.train.loretrack import build_loretrack_distiller

    return build_loretrack_distiller(cfg, student, device, world_size)


def _init_wandb(enabled: bool, save_dir: Path, name: str, cfg: Config, is_main: bool) -> Any | None:
    if not (enabled and is_main):
        return None
    try:
        import wandb
    except ImportError:
        raise UserError("--use_wandb 1 needs the wandb package (pip install wandb), or use --use_wandb 0") from None
    mode = os.environ.get("WANDB_MODE", "offline")
    return wandb.init(project="loretrack", name=name, dir=str(save_dir), mode=mode, config=cfg.to_dict())


def run(cfg: Config, script: str, config_name: str, save_dir: Path | None = None, resume: bool = False,
        use_wandb: bool = False, device: str = "cpu", num_workers: int | None = None, progress: bool = True,
        paths: Paths | None = None) -> Trainer:
    """Train as configured; returns the finished trainer (its hooks hold the history)."""
    paths = paths or get_paths(save_dir=save_dir)
    context = init_distributed(device)
    torch_device = torch.device(f"cuda:{context.local_rank}" if device == "cuda" else "cpu")
    torch.manual_seed(cfg.TRAIN.SEED)  # identical initial weights on every rank
    model = build_model(cfg, training=True).to(torch_device)
    net: torch.nn.Module = model
    if context.world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[context.local_rank] if device == "cuda" else None, find_unused_parameters=False)
    distiller = build_distiller(cfg, model, torch_device, context.world_size)
    projections = getattr(distiller, "projections", None)
    actor = TrackingActor(net, cfg, distiller=distiller)
    optimizer, scheduler = build_optimizer(cfg, model, projections)
    workers = cfg.TRAIN.NUM_WORKER if num_workers is None else num_workers
    train_loader = build_loader(build_sampler(cfg, "TRAIN", paths, cfg.TRAIN.SEED), cfg.TRAIN.BATCH_SIZE, workers,
                                context)
    run_name = f"{script}/{config_name}"
    checkpoint_dir = paths.checkpoints_dir / "train" / script / config_name
    hooks = [LoggingHook(paths.save_dir / "tensorboard" / "train" / script / config_name,
                         cfg.TRAIN.PRINT_INTERVAL, context.is_main,
                         wandb_run=_init_wandb(use_wandb, paths.save_dir, run_name, cfg, context.is_main),
                         progress=progress, steps_per_epoch=len(train_loader))]
    if cfg.DATA.VAL.DATASETS_NAME and cfg.DATA.VAL.SAMPLE_PER_EPOCH > 0:
        val_loader = build_loader(build_sampler(cfg, "VAL", paths, cfg.TRAIN.SEED), cfg.TRAIN.BATCH_SIZE, workers,
                                  context)
        hooks.append(ValidationHook(val_loader, cfg.TRAIN.VAL_EPOCH_INTERVAL, context.is_main))
    hooks.append(CheckpointHook(checkpoint_dir, net, cfg.TRAIN.SAVE_EPOCH_INTERVAL, cfg.to_dict(),
                                actor_type="LoReTrackActor" if distiller else "OSTrackActor", is_main=context.is_main))
    trainer = Trainer(actor, optimizer, train_loader, cfg.TRAIN.EPOCH, torch_device, cfg.TRAIN.GRAD_CLIP_NORM,
                      amp=cfg.TRAIN.AMP, scheduler=scheduler, hooks=hooks, trainable=model,
                      extra_modules={"distill_projections": projections} if projections is not None else None)
    if cfg.TRAIN.AMP and device != "cuda":
        log.warning("TRAIN.AMP is on but training runs on the CPU: AMP is skipped")
    if resume:
        _resume(trainer, model, checkpoint_dir)
    if context.is_main:
        log.info("training %s on %s (%d process(es)), %d steps per epoch, checkpoints in %s", run_name,
                 torch_device, context.world_size, len(train_loader), checkpoint_dir)
    try:
        trainer.train()
    except TrainingDivergedError as err:
        last = latest_checkpoint(checkpoint_dir)
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        raise TrainingStoppedError(f"training stopped at epoch {trainer.current_epoch}, iteration "
                                   f"{trainer.iteration}: {err}; {kept} (lower TRAIN.LR or check the data, then "
                                   "--resume)") from None
    finally:
        if context.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return trainer


def _resume(trainer: Trainer, model: torch.nn.Module, checkpoint_dir: Path) -> None:
    path = latest_checkpoint(checkpoint_dir)
    if path is None:
        log.info("--resume: no checkpoint in %s yet; starting from scratch", checkpoint_dir)
        return
    checkpoint = read_checkpoint(path)
    if "trainer" not in checkpoint:
        raise UserError(f"{path} has no trainer state (not written by this framework); it can initialise a "
                        "model (MODEL.PRETRAIN_FILE) but not resume a run")
    load_weights(model, path, strict=True)
    trainer.load_state_dict(checkpoint["trainer"])
    log.info("resumed from %s (epoch %d)", path, trainer.epoch)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train one process (tracking/train.py launches this).")
    parser.add_argument("--script", default="ostrack", help="experiments/<script>/ folder of the config")
    parser.add_argument("--config", required=True, help="config name or YAML path")
    parser.add_argument("--save_dir", default=None, help="output root (default: settings / LORETRACK_SAVE_DIR)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint of this run")
    parser.add_argument("--use_wandb", type=int, default=0, choices=[0, 1])
    parser.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda when available")
    parser.add_argument("--num_workers", type=int, default=None, help="override TRAIN.NUM_WORKER")
    parser.add_argument("--opts", nargs="*", default=[], help="config overrides KEY=VALUE")
    parser.add_argument("--no_progress", action="store_true")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but no CUDA GPU is available; use --device cpu")
    cfg = load_config(args.config, overrides=args.opts, script=args.script)
    config_name = Path(args.config).stem
    run(cfg, args.script, config_name, save_dir=Path(args.save_dir) if args.save_dir else None, resume=args.resume,
        use_wandb=bool(args.use_wandb), device=device, num_workers=args.num_workers, progress=not args.no_progress)
    return 0

