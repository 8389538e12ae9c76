"""A plain training loop with hooks (detectron2 style).

The loop runs steps (forward through the actor, backward with a GradScaler under AMP, gradient clipping,
optimiser step) and, after each epoch, steps the LR scheduler (per epoch, as OSTrack does) before the
``after_epoch`` hooks, so a checkpoint saved there holds the stepped scheduler. Logging, checkpointing and
validation are hooks, so a new behaviour is a new hook rather than an edit of the loop. ``state_dict`` holds
everything a bit-exact resume needs: model, optimiser, scheduler, scaler, epoch and the RNG states of every
rank (each rank draws from its own seed, so each gets its own state back).
"""
from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from lib.train.actor import TrackingActor

log = logging.getLogger(__name__)


class HookBase:
    """Override any of these; ``trainer`` gives access to the whole state."""

    trainer: Trainer

    def before_train(self) -> None: ...

    def after_train(self) -> None: ...

    def before_epoch(self) -> None: ...

    def after_epoch(self) -> None: ...

    def after_step(self, status: Mapping[str, float]) -> None: ...


def move_to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class Trainer:
    def __init__(self, actor: TrackingActor, optimizer: torch.optim.Optimizer, train_loader: Iterable,
                 max_epoch: int, device: torch.device | str = "cpu", grad_clip_norm: float = 0.0,
                 amp: bool = False, scheduler: Any | None = None, hooks: Sequence[HookBase] = (),
                 trainable: nn.Module | None = None, extra_modules: Mapping[str, nn.Module] | None = None,
                 rank: int = 0, seed: int | None = None) -> None:
        """``trainable`` is what gradient clipping sees (the network, unwrapped); ``extra_modules`` are trained
        too and saved in the trainer state (e.g. distillation projections), but are not part of the network.
        ``rank`` picks this process's RNG states on resume; ``seed`` (the one this rank was seeded with) is
        recorded beside them."""
        self.actor = actor
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.max_epoch = max_epoch
        self.device = torch.device(device)
        self.grad_clip_norm = grad_clip_norm
        self.amp = amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.scheduler = scheduler
        self.trainable = trainable if trainable is not None else actor.net
        self.extra_modules = dict(extra_modules or {})
        self.rank = rank
        self.seed = seed
        self.epoch = 0  # last completed epoch
        self.iteration = 0
        self.epoch_stats: dict[str, list[float]] = defaultdict(list)
        self.skipped: Counter = Counter()
        self.hooks: list[HookBase] = []
        for hook in hooks:
            self.register_hook(hook)

    def register_hook(self, hook: HookBase) -> None:
        hook.trainer = self
        self.hooks.append(hook)

    def _call(self, name: str, *args: Any) -> None:
        for hook in self.hooks:
            getattr(hook, name)(*args)

    def train(self) -> None:
        self._call("before_train")
        try:
            while self.epoch < self.max_epoch:
                self.current_epoch = self.epoch + 1
                self.epoch_stats = defaultdict(list)
                sampler = getattr(self.train_loader, "sampler", None)
                for obj in (sampler, getattr(self.train_loader, "dataset", None)):
                    if hasattr(obj, "set_epoch"):
                        obj.set_epoch(self.current_epoch)
                self._call("before_epoch")
                self.actor.net.train()
                for batch in self.train_loader:
                    self.run_step(batch)
                self.epoch = self.current_epoch
                if self.scheduler is not None:
                    self.scheduler.step()
                self._call("after_epoch")
        finally:
            self._call("after_train")

    def run_step(self, batch: Mapping[str, Any]) -> dict[str, float]:
        for reason, count in _merge_skipped(batch.get("skipped", ())).items():
            self.skipped[reason] += count
        batch = move_to_device(batch, self.device)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            loss, status = self.actor(batch, self.current_epoch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip_norm > 0:
            self.scaler.unscale_(self.optimizer)
            params = [p for m in (self.trainable, *self.extra_modules.values()) for p in m.parameters()]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.iteration += 1
        for key, value in status.items():
            self.epoch_stats[key].append(value)
        self._call("after_step", status)
        return status

    # ------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The state to resume from. Under DDP every rank must call it: it gathers each rank's RNG states."""
        state = {"epoch": self.epoch, "iteration": self.iteration, "optimizer": self.optimizer.state_dict(),
                 "scaler": self.scaler.state_dict(), "skipped": dict(self.skipped),
                 "rng": gather_from_ranks(self.rng_state())}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        state["modules"] = {name: module.state_dict() for name, module in self.extra_modules.items()}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.iteration = int(state.get("iteration", 0))
        self.optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        self.skipped = Counter(state.get("skipped", {}))
        for name, module_state in state.get("modules", {}).items():
            if name in self.extra_modules:
                self.extra_modules[name].load_state_dict(module_state)
        rng = state.get("rng", {})
        if isinstance(rng, Mapping):  # written before per-rank states: one state for every rank
            self.load_rng_state(rng)
        elif self.rank < len(rng):
            self.load_rng_state(rng[self.rank])
        else:
            log.warning("the checkpoint holds the RNG states of %d rank(s); rank %d keeps its fresh seed, so this "
                        "resume is not bit-identical to an uninterrupted run", len(rng), self.rank)

    def rng_state(self) -> dict[str, Any]:
        """This process's random states: python, numpy, torch (CPU and CUDA) and the training loader's generator."""
        state = {"rank": self.rank, "seed": self.seed, "torch": torch.get_rng_state(), "numpy": _numpy_state(),
                 "python": random.getstate()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        generator = getattr(self.train_loader, "generator", None)
        if isinstance(generator, torch.Generator):
            state["loader"] = generator.get_state()
        return state

    def load_rng_state(self, rng: Mapping[str, Any]) -> None:
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "numpy" in rng:
            name, keys, pos, has_gauss, cached = rng["numpy"]
            np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        if "python" in rng:
            random.setstate(rng["python"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        generator = getattr(self.train_loader, "generator", None)
        if "loader" in rng and isinstance(generator, torch.Generator):
            generator.set_state(rng["loader"])


def gather_from_ranks(value: Any) -> list[Any]:
    """``value`` of every rank, in rank order, on every rank (a collective under DDP; ``[value]`` otherwise)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def _numpy_state() -> tuple:
    """numpy's global RNG state with its key array as a tensor, so checkpoints load with weights_only."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached


def _merge_skipped(per_sample: Iterable[Mapping[str, int]]) -> Counter:
    total: Counter = Counter()
    for counts in per_sample:
        total.update(counts)
    return total
