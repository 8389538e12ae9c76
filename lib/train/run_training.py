"""Build everything a training run needs from a config and run it (one process = one rank).

``tracking/train.py`` runs :func:`main` in this process, or launches itself under torchrun once per rank
(DDP: NCCL on GPUs, gloo on CPU). Where the run's checkpoints, manifest and TensorBoard events go is
:class:`lib.utils.run_layout.TrainingRun`'s to say; :class:`lib.train.checkpointer.Checkpointer` guards them.
"""
from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from lib.config import Config, load_config, resolve_config_path
from lib.models import OSTrack, build_model
from lib.train.actor import TrackingActor, TrainingDivergedError
from lib.train.checkpointer import Checkpointer, ResumePoint, retained_epochs
from lib.train.data.frame_cache import FrameCache
from lib.train.data.health import DataHealthHook
from lib.train.data.processing import CropSettings, PairProcessing
from lib.train.data.sampler import TrackingSampler, collate_pairs
from lib.train.hooks import CheckpointHook, LoggingHook, ValidationHook
from lib.train.launch import DEFAULT_COLLECTIVE_TIMEOUT_S, agent_store, restarted_launch
from lib.train.trainer import Trainer
from lib.utils.errors import ConfigError, UserError
from lib.utils.paths import Paths, get_paths
from lib.utils.run_layout import TrainingRun, data_check_dir

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


def init_distributed(device: str, collective_timeout: float = DEFAULT_COLLECTIVE_TIMEOUT_S) -> RunContext:
    """Join the torchrun process group when launched by it (``WORLD_SIZE`` > 1).

    A rank that waits longer than ``collective_timeout`` seconds for the others (one froze, or its node was
    lost) fails instead of hanging for torch's default of 30 minutes.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return RunContext()
    if not dist.is_initialized():
        store = agent_store(world_size, collective_timeout)
        rendezvous = {} if store is None else {"store": store, "rank": int(os.environ["RANK"]),
                                               "world_size": world_size}
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo",
                                timeout=timedelta(seconds=collective_timeout), **rendezvous)
    context = RunContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if device == "cuda":
        torch.cuda.set_device(context.local_rank)
    return context


def rank_seed(base_seed: int, rank: int) -> int:
    """The seed a DDP rank trains with, as in the official code (base seed + rank): drop-path masks and any other
    draw differ per rank. Pairs do not depend on it: each is drawn from its own (seed, epoch, index) seed."""
    return base_seed + rank


def seed_process(seed: int) -> None:
    """Seed every generator a training step may draw from: python, numpy and torch (CPU and all GPUs)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def crop_network(model: OSTrack, distiller: Any | None) -> OSTrack:
    """The network whose input sizes the data pipeline cuts crops at: under distillation the teacher (same
    content, higher resolution; the actor resizes the crops for the student), else the model trained."""
    return distiller.teacher.model if distiller is not None else model


def crop_settings(cfg: Config, network: OSTrack) -> tuple[CropSettings, CropSettings]:
    """Template and search crops with the configured factors and jitter, at ``network``'s input sizes."""
    t, s = cfg.DATA.TEMPLATE, cfg.DATA.SEARCH
    return (CropSettings(network.template_size, t.FACTOR, t.CENTER_JITTER, t.SCALE_JITTER),
            CropSettings(network.search_size, s.FACTOR, s.CENTER_JITTER, s.SCALE_JITTER))


def build_sampler(cfg: Config, split: str, paths: Paths, seed: int,
                  crops: tuple[CropSettings, CropSettings]) -> TrackingSampler:
    """The pair sampler over ``DATA.TRAIN`` or ``DATA.VAL`` datasets, cutting (template, search) ``crops``."""
    from lib.train.data.datasets import build_dataset
    from lib.train.data.validation import check_training_data

    section = cfg.DATA[split]
    datasets = [build_dataset(name, paths=paths) for name in section.DATASETS_NAME]
    check_training_data(datasets, data_check_dir(paths), cfg.DATA.STRICT, cfg.DATA.MAX_SKIPPED_SHARE)
    if cfg.DATA.FRAME_CACHE_MB > 0:
        cache = FrameCache(int(cfg.DATA.FRAME_CACHE_MB * 2 ** 20))  # one budget shared by all datasets
        for dataset in datasets:
            dataset.frame_cache = cache
    template, search = crops
    processing = PairProcessing(template, search, cfg.DATA.MEAN, cfg.DATA.STD, stride=cfg.MODEL.BACKBONE.STRIDE,
                                train=split == "TRAIN")
    return TrackingSampler(datasets, section.DATASETS_RATIO, section.SAMPLE_PER_EPOCH, cfg.DATA.MAX_SAMPLE_INTERVAL,
                           processing, seed=seed + (0 if split == "TRAIN" else 1_000_000))


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
    params = [head, backbone]
    if extra is not None:
        params.append([p for p in extra.parameters() if p.requires_grad])
    groups = [{"params": p, "lr": lr} for p, lr in zip(params, group_learning_rates(cfg, len(params)), strict=True)]
    optimizer = torch.optim.AdamW(groups, lr=train.LR, weight_decay=train.WEIGHT_DECAY)
    if train.SCHEDULER.TYPE != "step":
        raise ConfigError(f"TRAIN.SCHEDULER.TYPE '{train.SCHEDULER.TYPE}' is not supported; use step")
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, train.LR_DROP_EPOCH, gamma=train.SCHEDULER.DECAY_RATE)
    return optimizer, scheduler


def group_learning_rates(cfg: Config, num_groups: int) -> list[float]:
    """Base LR of each parameter group: head, backbone (x BACKBONE_MULTIPLIER), then extra modules."""
    train = cfg.TRAIN
    return [train.LR, train.LR * train.BACKBONE_MULTIPLIER, train.LR][:num_groups]


def apply_optimizer_config(cfg: Config, optimizer: torch.optim.Optimizer, scheduler: Any, epoch: int) -> None:
    """Make a resumed run's optimiser and schedule follow ``cfg`` (loaded state holds the old values)."""
    train = cfg.TRAIN
    bases = group_learning_rates(cfg, len(optimizer.param_groups))
    scheduler.base_lrs = bases
    scheduler.step_size = train.LR_DROP_EPOCH
    scheduler.gamma = train.SCHEDULER.DECAY_RATE
    for group, base in zip(optimizer.param_groups, bases, strict=True):
        group["initial_lr"] = base
        group["lr"] = base * train.SCHEDULER.DECAY_RATE ** (epoch // train.LR_DROP_EPOCH)
        group["weight_decay"] = train.WEIGHT_DECAY
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def build_distiller(cfg: Config, student: OSTrack, device: torch.device, world_size: int,
                    teacher: OSTrack | None = None) -> Any | None:
    """LoReTrack's teacher + distillation terms, when the config asks for them (see lib/train/loretrack.py);
    ``teacher`` replaces the one ``DISTILL.TEACHER`` names."""
    if not cfg.DISTILL.ENABLED:
        return None
    from lib.train.loretrack import build_loretrack_distiller

    return build_loretrack_distiller(cfg, student, device, world_size, teacher=teacher)


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
        paths: Paths | None = None, force: bool = False, accept_config_changes: bool = False,
        config_file: str | Path | None = None, collective_timeout: float = DEFAULT_COLLECTIVE_TIMEOUT_S) -> Trainer:
    """Train as configured; returns the finished trainer (its hooks hold the history).

    ``force`` moves an existing run aside; ``accept_config_changes`` lets ``resume`` continue with a config
    that differs from the stored one (the changes take effect, optimiser included). Workers that torchrun
    restarts (``--max_restarts``) resume the run their launch started, whatever the flags say.
    """
    if force and resume:
        raise UserError("--force starts a new run and --resume continues the old one; give one of them")
    paths = paths or get_paths(save_dir=save_dir)
    context = init_distributed(device, collective_timeout)
    layout = TrainingRun(paths, script, config_name)
    launch_id, restart = restarted_launch()
    checkpointer = Checkpointer(layout, cfg.TRAIN.SAVE_EPOCH_INTERVAL, cfg.TRAIN.KEEP_LAST_EPOCHS, cfg.TRAIN.EPOCH,
                                is_main=context.is_main, launch_id=launch_id)
    if restart and checkpointer.started_by_launch():
        resume, force = True, False  # the group was restarted: continue this launch's run, never move it aside
        if context.is_main:
            log.info("torchrun restarted the workers (restart %d): resuming the run from its last checkpoint",
                     restart)
    checkpointer.check_start(resume, force)  # fail before the expensive builds below
    _warn_if_test_epoch_not_kept(cfg)
    torch_device = torch.device(f"cuda:{context.local_rank}" if device == "cuda" else "cpu")
    torch.manual_seed(cfg.TRAIN.SEED)  # identical initial weights on every rank, then a seed per rank below
    model = build_model(cfg, training=True).to(torch_device)
    net: torch.nn.Module = model
    if context.world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[context.local_rank] if device == "cuda" else None, find_unused_parameters=False)
    distiller = build_distiller(cfg, model, torch_device, context.world_size)
    projections = getattr(distiller, "projections", None)
    seed = rank_seed(cfg.TRAIN.SEED, context.rank)
    seed_process(seed)
    actor = TrackingActor(net, cfg, distiller=distiller)
    optimizer, scheduler = build_optimizer(cfg, model, projections)
    workers = cfg.TRAIN.NUM_WORKER if num_workers is None else num_workers
    crops = crop_settings(cfg, crop_network(model, distiller))  # the teacher is built above: it fixes the crops
    train_loader = build_loader(build_sampler(cfg, "TRAIN", paths, cfg.TRAIN.SEED, crops), cfg.TRAIN.BATCH_SIZE,
                                workers, context)
    hooks = [LoggingHook(layout.tensorboard_dir, cfg.TRAIN.PRINT_INTERVAL, context.is_main,
                         wandb_run=_init_wandb(use_wandb, paths.save_dir, layout.name, cfg, context.is_main),
                         progress=progress, steps_per_epoch=len(train_loader))]
    if cfg.DATA.VAL.DATASETS_NAME and cfg.DATA.VAL.SAMPLE_PER_EPOCH > 0:
        val_loader = build_loader(build_sampler(cfg, "VAL", paths, cfg.TRAIN.SEED, crops), cfg.TRAIN.BATCH_SIZE,
                                  workers, context)
        hooks.append(ValidationHook(val_loader, cfg.TRAIN.VAL_EPOCH_INTERVAL, context.is_main))
    hooks.append(DataHealthHook(cfg.DATA.MAX_FAILED_DRAW_SHARE, cfg.TRAIN.BATCH_SIZE, context.is_main))
    hooks.append(CheckpointHook(checkpointer, net, cfg.to_dict(),
                                actor_type="LoReTrackActor" if distiller else "OSTrackActor"))
    trainer = Trainer(actor, optimizer, train_loader, cfg.TRAIN.EPOCH, torch_device, cfg.TRAIN.GRAD_CLIP_NORM,
                      amp=cfg.TRAIN.AMP, scheduler=scheduler, hooks=hooks, trainable=model,
                      extra_modules={"distill_projections": projections} if projections is not None else None,
                      rank=context.rank, seed=seed)
    if cfg.TRAIN.AMP and device != "cuda":
        log.warning("TRAIN.AMP is on but training runs on the CPU: AMP is skipped")
    point = checkpointer.start(cfg.to_dict(), config_file, resume=resume, force=force,
                               accept_changes=accept_config_changes)
    if point is not None:
        _resume(trainer, model, checkpointer, point, cfg)
        if trainer.epoch >= trainer.max_epoch:
            log.warning("%s is already finished (epoch %d of %d): nothing to train; test it with tracking/test.py, "
                        "or raise TRAIN.EPOCH with --accept_config_changes to train on", layout.name,
                        trainer.epoch, trainer.max_epoch)
            if context.world_size > 1 and dist.is_initialized():
                dist.destroy_process_group()
            return trainer
    if context.is_main:
        log.info("training %s on %s (%d process(es)), %d steps per epoch, checkpoints in %s", layout.name,
                 torch_device, context.world_size, len(train_loader), layout.checkpoint_dir)
    try:
        trainer.train()
        checkpointer.finish()
    except TrainingDivergedError as err:
        saved = layout.checkpoints()
        kept = f"the last good checkpoint is {list(saved.values())[-1]}" if saved else "no checkpoint was written yet"
        raise TrainingStoppedError(f"training stopped at epoch {trainer.current_epoch}, iteration "
                                   f"{trainer.iteration}: {err}; {kept} (lower TRAIN.LR or check the data, then "
                                   "--resume)") from None
    finally:
        if context.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return trainer


def _resume(trainer: Trainer, model: torch.nn.Module, checkpointer: Checkpointer, point: ResumePoint,
            cfg: Config) -> None:
    checkpointer.load_model(model, point)
    trainer.load_state_dict(point.checkpoint["trainer"])
    if point.accepted_changes:
        apply_optimizer_config(cfg, trainer.optimizer, trainer.scheduler, trainer.epoch)
    log.info("resumed from %s (epoch %d)", point.path, trainer.epoch)


def _warn_if_test_epoch_not_kept(cfg: Config) -> None:
    train, epoch = cfg.TRAIN, cfg.TEST.EPOCH
    if epoch <= train.EPOCH and epoch not in retained_epochs(list(range(1, train.EPOCH + 1)),
                                                             train.SAVE_EPOCH_INTERVAL, train.KEEP_LAST_EPOCHS,
                                                             train.EPOCH):
        log.warning("TEST.EPOCH %d will not be kept by retention (every %d-th and the last %d epochs); raise "
                    "TRAIN.KEEP_LAST_EPOCHS or change SAVE_EPOCH_INTERVAL", epoch, train.SAVE_EPOCH_INTERVAL,
                    train.KEEP_LAST_EPOCHS)


def train_config(config: str | Path, script: str = "ostrack", overrides: Sequence[str] = (),
                 device: str | None = None, save_dir: str | Path | None = None, **options: Any) -> Trainer:
    """Train the config ``config`` (a name in experiments/<script>/ or a YAML path) in this process.

    ``device`` None picks the GPU when there is one; ``options`` are :func:`run`'s.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but no CUDA GPU is available; use --device cpu")
    cfg = load_config(config, overrides=list(overrides), script=script)
    config_file = resolve_config_path(config, script)
    return run(cfg, script, config_file.stem, save_dir=Path(save_dir) if save_dir else None, device=device,
               config_file=config_file, **options)
