"""LoReTrack: a low-resolution student distilled from a frozen high-resolution teacher.

The teacher is any trained OSTrack-style model with its own config (default OSTrack-384 without candidate
elimination). It sees the high-resolution crops the data pipeline produces; the student sees the same crops
resized. Two terms are added to the task losses: QKV-KD on chosen blocks' q/k/v (search tokens) and Disc-KD
on the final search features (``lib/train/distillation.py``). Beyond the paper, a student of another width
than the teacher is supported through learned 1x1 projections, and the teacher can run in bf16/fp16.

The teacher is frozen for good: no gradients, eval mode that ``train()`` cannot undo, not in the optimiser,
not wrapped in DDP and not in the saved ``net``.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from lib.config import Config, load_config
from lib.models import OSTrack, build_model, load_weights
from lib.models.weights import resolve_weight_path
from lib.train.actor import resize_crop
from lib.train.distillation import box_mask, disc_kd_loss, qkv_kd_loss
from lib.train.losses import channel_kl, channel_mse
from lib.utils.errors import ConfigError

log = logging.getLogger(__name__)
LOSSES = {"kl": channel_kl, "mse": channel_mse}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class FrozenTeacher(nn.Module):
    """Wraps the teacher so that nothing can put it back into training mode or give it gradients."""

    def __init__(self, model: OSTrack) -> None:
        super().__init__()
        self.model = model
        for param in self.model.parameters():
            param.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenTeacher:
        return super().train(False)

    @property
    def template_size(self) -> int:
        return self.model.template_size

    @property
    def search_size(self) -> int:
        return self.model.search_size


def build_teacher(cfg: Config, load_checkpoint: bool = True) -> OSTrack:
    """The teacher ``DISTILL.TEACHER`` names, built at its config's TEST sizes with its checkpoint loaded strictly.

    Its config is read here only: the data pipeline's crop sizes and the distiller's resizes ask the built
    teacher. ``load_checkpoint=False`` keeps random weights, for timing runs without a trained teacher.
    """
    teacher = cfg.DISTILL.TEACHER
    teacher_cfg = load_config(teacher.CONFIG, overrides=list(teacher.OVERRIDES), script=teacher.SCRIPT)
    if not load_checkpoint:
        return build_model(teacher_cfg, training=False)
    if not teacher.CHECKPOINT:
        raise ConfigError("DISTILL.ENABLED needs DISTILL.TEACHER.CHECKPOINT (the trained teacher's weights)")
    path = resolve_weight_path(teacher.CHECKPOINT)
    model = build_model(teacher_cfg, training=False)
    load_weights(model, path, strict=True)
    log.info("teacher: %s (%d/%d px) from %s", teacher.CONFIG, model.template_size, model.search_size, path)
    return model


def _resolve_layers(layers: list[int], depth: int, who: str) -> list[int]:
    resolved = []
    for layer in layers:
        if not -depth <= layer < depth:
            raise ConfigError(f"DISTILL.QKV.{who}_LAYERS has block {layer}, but the {who.lower()} has {depth} blocks")
        resolved.append(layer % depth)
    return resolved


class LoReTrackDistiller:
    """Computes the distillation terms of one training step (called by the actor)."""

    def __init__(self, teacher: OSTrack, student: OSTrack, cfg: Config, world_size: int = 1) -> None:
        distill = cfg.DISTILL
        self.teacher = FrozenTeacher(teacher)
        self.dtype = DTYPES.get(distill.TEACHER.DTYPE)
        if self.dtype is None:
            raise ConfigError(f"DISTILL.TEACHER.DTYPE must be one of {list(DTYPES)}, got '{distill.TEACHER.DTYPE}'")
        for section in (distill.QKV, distill.DISC):
            if section.LOSS not in LOSSES:
                raise ConfigError(f"DISTILL loss '{section.LOSS}' is not supported; use one of {list(LOSSES)}")
        if distill.DISC.MASK not in ("energy", "gt_box"):
            raise ConfigError(f"DISTILL.DISC.MASK must be 'energy' or 'gt_box', got '{distill.DISC.MASK}'")
        if distill.ALIGN not in ("up", "down"):
            raise ConfigError(f"DISTILL.ALIGN must be 'up' or 'down', got '{distill.ALIGN}'")
        self.cfg = distill
        t_bb, s_bb = teacher.backbone, student.backbone
        self.qkv_pairs: list[tuple[int, int]] = []
        if distill.QKV.WEIGHT > 0:
            for who, backbone in (("teacher", t_bb), ("student", s_bb)):
                if backbone.ce_loc:
                    raise ConfigError(f"QKV-KD needs the full search grid, but the {who} uses candidate elimination "
                                      f"(CE_LOC {backbone.ce_loc}); use its non-CE config (CE and non-CE checkpoints "
                                      "share weights) or set DISTILL.QKV.WEIGHT: 0")
            s_layers = _resolve_layers(distill.QKV.STUDENT_LAYERS, len(s_bb.blocks), "STUDENT")
            t_layers = _resolve_layers(distill.QKV.TEACHER_LAYERS, len(t_bb.blocks), "TEACHER")
            if len(s_layers) != len(t_layers):
                raise ConfigError(f"DISTILL.QKV.STUDENT_LAYERS {s_layers} and TEACHER_LAYERS {t_layers} must pair up "
                                  "one to one")
            self.qkv_pairs = list(zip(s_layers, t_layers, strict=True))
        self.student_blocks = sorted({s for s, _ in self.qkv_pairs})
        self.teacher_blocks = sorted({t for _, t in self.qkv_pairs})
        self.projections = self._build_projections(s_bb.embed_dim, t_bb.embed_dim, distill.PROJECTION)
        self.student_template_tokens = s_bb.num_template_tokens
        self.teacher_template_tokens = t_bb.num_template_tokens
        self.teacher_seconds = 0.0  # accumulated teacher forward time, for benchmarks
        if world_size > 1 and self.projections is not None:
            for param in self.projections.parameters():  # the projections are trained outside DDP: average grads
                param.register_hook(lambda grad: _all_reduce_mean(grad, world_size))

    def _build_projections(self, student_dim: int, teacher_dim: int, mode: str) -> nn.ModuleDict | None:
        if student_dim == teacher_dim:
            return None
        if mode != "auto":
            raise ConfigError(f"the student is {student_dim} wide and the teacher {teacher_dim}: set "
                              "DISTILL.PROJECTION: auto to learn 1x1 projections between them")
        projections = nn.ModuleDict()
        for index in range(len(self.qkv_pairs)):
            for name in "qkv":
                projections[f"{name}{index}"] = nn.Conv2d(student_dim, teacher_dim, kernel_size=1)
        projections["feat"] = nn.Conv2d(student_dim, teacher_dim, kernel_size=1)
        log.info("student width %d != teacher width %d: learning 1x1 projections for distillation", student_dim,
                 teacher_dim)
        return projections

    def to(self, device: torch.device) -> LoReTrackDistiller:
        self.teacher.to(device)
        if self.projections is not None:
            self.projections.to(device)
        return self

    @torch.no_grad()
    def teacher_outputs(self, batch: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        start = time.perf_counter()
        template = resize_crop(batch["template_images"], self.teacher.template_size)
        search = resize_crop(batch["search_images"], self.teacher.search_size)
        device_type = template.device.type
        with torch.autocast(device_type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            out = self.teacher.model(template, search, return_qkv=self.teacher_blocks or False)
        result = {"opt_feat": out["opt_feat"].float(),
                  "qkv": {k: tuple(t.float() for t in v) for k, v in out.get("qkv", {}).items()}}
        if device_type == "cuda":
            torch.cuda.synchronize()
        self.teacher_seconds += time.perf_counter() - start
        return result

    def __call__(self, batch: Mapping[str, torch.Tensor], student_out: Mapping[str, Any]
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        teacher = self.teacher_outputs(batch)
        distill = self.cfg
        total = student_out["opt_feat"].new_zeros(())
        status: dict[str, float] = {}
        if self.qkv_pairs:
            projections = None
            if self.projections is not None:
                projections = [{name: self.projections[f"{name}{i}"] for name in "qkv"}
                               for i in range(len(self.qkv_pairs))]
            qkv, parts = qkv_kd_loss(student_out["qkv"], teacher["qkv"], self.student_template_tokens,
                                     self.teacher_template_tokens, self.qkv_pairs, distill.QKV.TENSOR_WEIGHTS,
                                     distill.TEMPERATURE, LOSSES[distill.QKV.LOSS], distill.ALIGN, projections)
            total = total + distill.QKV.WEIGHT * qkv
            status["Loss/qkv_kd"] = qkv.item()
        if distill.DISC.WEIGHT > 0:
            mask = None
            if distill.DISC.MASK == "gt_box":
                mask = box_mask(batch["search_anno"], teacher["opt_feat"].shape[-2:])
            disc, parts = disc_kd_loss(student_out["opt_feat"], teacher["opt_feat"], mask, distill.DISC.THRESHOLD,
                                       tuple(distill.DISC.WEIGHTS), distill.TEMPERATURE, LOSSES[distill.DISC.LOSS],
                                       distill.ALIGN, self.projections["feat"] if self.projections else None)
            total = total + distill.DISC.WEIGHT * disc
            status["Loss/disc_kd"] = disc.item()
            status["disc_mask_fraction"] = parts["disc_mask_fraction"]
        return total, status


def _all_reduce_mean(grad: torch.Tensor, world_size: int) -> torch.Tensor:
    grad = grad.clone()
    dist.all_reduce(grad)
    return grad / world_size


def build_loretrack_distiller(cfg: Config, student: OSTrack, device: torch.device, world_size: int = 1,
                              teacher: OSTrack | None = None) -> LoReTrackDistiller:
    """Distillation from ``teacher`` (default: :func:`build_teacher`), checked against the student."""
    if teacher is None:
        teacher = build_teacher(cfg)
    return LoReTrackDistiller(teacher, student, cfg, world_size).to(device)
