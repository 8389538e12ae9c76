"""Trainer hooks: logging (tqdm, TensorBoard, wandb), checkpointing, validation."""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from lib.train.checkpointer import Checkpointer
from lib.train.trainer import HookBase, move_to_device

log = logging.getLogger(__name__)


class CheckpointHook(HookBase):
    """Save a checkpoint after every epoch through the run's checkpointer (which applies retention).

    The file holds the official keys (``net``, ``epoch``, ...) plus the trainer state for ``--resume`` (with
    the RNG states of every rank).
    Only the trained network is saved (a distillation teacher is not part of ``net``).
    """

    def __init__(self, checkpointer: Checkpointer, net: torch.nn.Module, config: Mapping[str, Any] | None = None,
                 actor_type: str = "OSTrackActor") -> None:
        self.checkpointer = checkpointer
        self.net = net
        self.config = config
        self.actor_type = actor_type

    def after_epoch(self) -> None:
        state = self.trainer.state_dict()  # every rank: it gathers each rank's RNG states to the one that saves
        if not self.checkpointer.is_main:
            return
        model = getattr(self.net, "module", self.net)
        self.checkpointer.save(model, self.trainer.epoch, actor_type=self.actor_type, trainer=state,
                               config=self.config)


class LoggingHook(HookBase):
    """Progress bar, epoch summaries, TensorBoard scalars and (optionally) wandb."""

    def __init__(self, log_dir: Path, print_interval: int = 50, is_main: bool = True, use_tensorboard: bool = True,
                 wandb_run: Any | None = None, progress: bool = True, steps_per_epoch: int | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.print_interval = max(1, print_interval)
        self.is_main = is_main
        self.use_tensorboard = use_tensorboard and is_main
        self.wandb_run = wandb_run if is_main else None
        self.progress = progress and is_main
        self.steps_per_epoch = steps_per_epoch
        self.writer = None
        self.bar = None
        self.history: list[dict[str, float]] = []

    def before_train(self) -> None:
        if self.use_tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def before_epoch(self) -> None:
        self.epoch_lrs = [group["lr"] for group in self.trainer.optimizer.param_groups]  # the LRs this epoch uses
        self.epoch_start = time.perf_counter()
        self.epoch_first_iteration = self.trainer.iteration
        if self.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {self.trainer.current_epoch}", leave=False,
                            dynamic_ncols=True)

    def after_step(self, status: Mapping[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if self.trainer.iteration % self.print_interval == 0:
                self.bar.set_postfix(loss=f"{status['Loss/total']:.3f}", iou=f"{status.get('IoU', 0):.3f}")
        elif self.is_main and self.trainer.iteration % self.print_interval == 0:
            # without a bar (cluster logs, --no_progress) a line every PRINT_INTERVAL steps, as detectron2 does
            elapsed = time.perf_counter() - self.epoch_start
            steps = self.trainer.iteration - self.epoch_first_iteration
            total = f"/{self.steps_per_epoch}" if self.steps_per_epoch else ""
            log.info("epoch %d step %d%s: loss %.4f, IoU %.4f, %.2f s/step", self.trainer.current_epoch, steps,
                     total, status["Loss/total"], status.get("IoU", float("nan")), elapsed / max(steps, 1))
        if self.writer is not None:
            for key, value in status.items():
                self.writer.add_scalar(f"train_step/{key}", value, self.trainer.iteration)

    def after_epoch(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        stats = {k: sum(v) / len(v) for k, v in self.trainer.epoch_stats.items() if v}
        stats.update({f"LearningRate/group{i}": lr for i, lr in enumerate(self.epoch_lrs)})
        self.history.append({"epoch": self.trainer.epoch, **stats})
        if not self.is_main:
            return
        skipped = sum(self.trainer.skipped.values())
        text = ", ".join(f"{k}={v:.4f}" for k, v in stats.items() if not k.startswith("LearningRate"))
        log.info("epoch %d: %s%s", self.trainer.epoch, text,
                 f"; skipped pairs so far: {dict(self.trainer.skipped)}" if skipped else "")
        if self.writer is not None:
            for key, value in stats.items():
                self.writer.add_scalar(key, value, self.trainer.epoch)
            self.writer.flush()
        if self.wandb_run is not None:
            self.wandb_run.log({**stats, "epoch": self.trainer.epoch})

    def after_train(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


class ValidationHook(HookBase):
    """Run the actor without gradients on the validation loader every ``period`` epochs."""

    def __init__(self, loader: Iterable, period: int, is_main: bool = True) -> None:
        self.loader = loader
        self.period = max(1, period)
        self.is_main = is_main
        self.results: list[dict[str, float]] = []

    def after_epoch(self) -> None:
        trainer = self.trainer
        if trainer.epoch % self.period and trainer.epoch != trainer.max_epoch:
            return

        for obj in (getattr(self.loader, "sampler", None), getattr(self.loader, "dataset", None)):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(trainer.epoch)
        totals: dict[str, list[float]] = {}
        trainer.actor.net.eval()
        with torch.no_grad():
            for batch in self.loader:
                _, status = trainer.actor(move_to_device(batch, trainer.device), trainer.epoch)
                for key, value in status.items():
                    totals.setdefault(key, []).append(value)
        trainer.actor.net.train()
        result = {f"val/{k}": sum(v) / len(v) for k, v in totals.items()}
        self.results.append({"epoch": trainer.epoch, **result})
        if self.is_main and result:
            log.info("validation after epoch %d: %s", trainer.epoch,
                     ", ".join(f"{k}={v:.4f}" for k, v in result.items() if math.isfinite(v)))
