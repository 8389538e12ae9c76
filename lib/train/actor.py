"""One training step's forward pass and losses, for OSTrack and (with a distiller) LoReTrack.

The actor resizes the crops to the network's own input sizes when the data pipeline produced another
resolution (LoReTrack: teacher-resolution crops, bilinear resize without antialiasing for the student),
builds the heatmap target on the network's grid and adds whatever terms the distiller contributes.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from lib.train.losses import box_losses, ce_keep_rate, focal_loss, generate_heatmap


class Distiller(Protocol):
    def __call__(self, batch: Mapping[str, torch.Tensor], student_out: Mapping[str, Any]
                 ) -> tuple[torch.Tensor, dict[str, float]]: ...


class TrainingDivergedError(RuntimeError):
    """The loss or the network output became NaN/Inf: training must stop (last good checkpoint is kept)."""


def resize_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize without antialiasing (what LoReTrack's students were trained on)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=False)


class TrackingActor:
    def __init__(self, net: nn.Module, cfg: Any, distiller: Distiller | None = None) -> None:
        self.net = net
        self.cfg = cfg
        self.distiller = distiller
        model = getattr(net, "module", net)
        self.model = model
        self.stride = model.backbone.patch_size
        self.loss_weights = {"giou": cfg.TRAIN.GIOU_WEIGHT, "l1": cfg.TRAIN.L1_WEIGHT, "focal": 1.0}
        self.qkv_blocks = getattr(distiller, "student_blocks", False) if distiller is not None else False

    def keep_rate(self, epoch: int) -> float | None:
        if not self.model.backbone.ce_loc:
            return None
        train = self.cfg.TRAIN
        return ce_keep_rate(epoch, train.CE_START_EPOCH, train.CE_WARM_EPOCH, self.cfg.MODEL.BACKBONE.CE_KEEP_RATIO[0])

    def __call__(self, batch: Mapping[str, Any], epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        template = resize_crop(batch["template_images"], self.model.template_size)
        search = resize_crop(batch["search_images"], self.model.search_size)
        gt_boxes = batch["search_anno"]
        mask = self.model.make_ce_template_mask(template.shape[0], template.device, batch["template_anno"])
        out = self.net(template, search, ce_template_mask=mask, ce_keep_rate=self.keep_rate(epoch),
                       return_qkv=self.qkv_blocks)
        if not torch.isfinite(out["pred_boxes"]).all():
            raise TrainingDivergedError("the network produced NaN/Inf boxes")
        heatmap = generate_heatmap(gt_boxes, self.model.search_size, self.stride).unsqueeze(1)
        giou, l1, iou = box_losses(out["pred_boxes"], gt_boxes)
        focal = focal_loss(out["score_map"], heatmap)
        w = self.loss_weights
        loss = w["giou"] * giou + w["l1"] * l1 + w["focal"] * focal
        status = {"Loss/giou": giou.item(), "Loss/l1": l1.item(), "Loss/location": focal.item(),
                  "IoU": iou.detach().mean().item()}
        if self.distiller is not None:
            kd_loss, kd_status = self.distiller(batch, out)
            loss = loss + kd_loss
            status.update(kd_status)
        status["Loss/total"] = loss.item()
        if not torch.isfinite(loss):
            raise TrainingDivergedError(f"the loss became {loss.item()} ({status})")
        return loss, status
