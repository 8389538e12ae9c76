"""Training targets and losses of OSTrack and LoReTrack.

Task losses: focal loss on the centre heatmap, GIoU and L1 on the box decoded at the predicted score
peak (OSTrack). Distillation losses: temperature-scaled KL with the softmax over channels, used by
QKV-KD and Disc-KD (LoReTrack, as its released code computes them).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from lib.utils.boxes import DegenerateBoxError, box_cxcywh_to_xyxy, box_xywh_to_xyxy, generalized_iou


# --------------------------------------------------------------------------------------- heatmap targets
def gaussian_radius(box_wh: torch.Tensor, min_overlap: float = 0.7) -> torch.Tensor:
    """CornerNet's radius (the widely used 'bug version', kept for parity) for boxes (N, 2) in cells."""
    width, height = box_wh[..., 0], box_wh[..., 1]
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + torch.sqrt(b2 ** 2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + torch.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return torch.min(r1, torch.min(r2, r3))


def _gaussian_patch(radius: int) -> torch.Tensor:
    sigma = (2 * radius + 1) / 6
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    gauss = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    gauss[gauss < np.finfo(gauss.dtype).eps * gauss.max()] = 0
    return torch.Tensor(gauss)


def _draw_gaussian(heatmap: torch.Tensor, centre: torch.Tensor, radius: int) -> None:
    """Element-wise max of ``heatmap`` with a Gaussian at integer ``centre``, as CenterNet draws it."""
    gaussian = _gaussian_patch(radius)
    x, y = int(centre[0]), int(centre[1])
    height, width = heatmap.shape
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    region = heatmap[y - top:y + bottom, x - left:x + right]
    patch = gaussian[radius - top:radius + bottom, radius - left:radius + right]
    if min(patch.shape) > 0 and min(region.shape) > 0:
        heatmap[y - top:y + bottom, x - left:x + right] = torch.max(region, patch)


def generate_heatmap(boxes: torch.Tensor, search_size: int, stride: int, min_overlap: float = 0.7
                     ) -> torch.Tensor:
    """Centre heatmaps (B, F, F) for normalised (x1, y1, w, h) boxes (B, 4) on the F = size/stride grid.

    The centre cell is rounded half to even (torch.round), the radius truncated after clamping at 0.
    """
    feat_size = search_size // stride
    heatmaps = torch.zeros(boxes.shape[0], feat_size, feat_size)
    cells = boxes.detach().cpu().float() * feat_size
    wh = cells[:, 2:]
    centres = (cells[:, :2] + wh / 2).round()
    radii = torch.clamp_min(gaussian_radius(wh, min_overlap), 0).to(torch.int).numpy()
    for i in range(boxes.shape[0]):
        _draw_gaussian(heatmaps[i], centres[i], int(radii[i]))
    return heatmaps.to(boxes.device)


# ------------------------------------------------------------------------------------------ task losses
def focal_loss(prediction: torch.Tensor, target: torch.Tensor, alpha: float = 2, beta: float = 4) -> torch.Tensor:
    """CenterNet focal loss, normalised by the number of positive cells (target exactly 1) in the batch."""
    positive = target.eq(1).float()
    negative = target.lt(1).float()
    prediction = torch.clamp(prediction, 1e-12)
    positive_loss = (torch.log(prediction) * torch.pow(1 - prediction, alpha) * positive).sum()
    negative_loss = (torch.log(1 - prediction) * torch.pow(prediction, alpha) * torch.pow(1 - target, beta)
                     * negative).sum()
    num_positive = positive.sum()
    if num_positive == 0:
        return -negative_loss
    return -(positive_loss + negative_loss) / num_positive


def box_losses(pred_boxes_cxcywh: torch.Tensor, gt_boxes_xywh: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(GIoU loss, L1 loss, per-sample IoU) of predicted (B, Q, 4) boxes against GT (B, 4).

    GT boxes are clamped to the crop; a degenerate prediction makes the GIoU term 0 for that step,
    as in OSTrack.
    """
    num_queries = pred_boxes_cxcywh.shape[1]
    pred = box_cxcywh_to_xyxy(pred_boxes_cxcywh).view(-1, 4)
    gt = box_xywh_to_xyxy(gt_boxes_xywh)[:, None, :].repeat(1, num_queries, 1).view(-1, 4).clamp(0.0, 1.0)
    try:
        giou, iou = generalized_iou(pred, gt)
        giou_loss = (1 - giou).mean()
    except DegenerateBoxError:
        giou_loss = iou = pred.new_tensor(0.0)
    return giou_loss, F.l1_loss(pred, gt), iou


# ------------------------------------------------------------------------------------ distillation losses
def channel_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """T^2/B * sum over batch, positions and channels of KL(softmax_c(t/T) || softmax_c(s/T)).

    Inputs are (B, C, H, W) maps; the softmax runs over the channel axis at every position
    (LoReTrack's DistillKL as used by QKV-KD and Disc-KD).
    """
    log_p_student = F.log_softmax(student / temperature, dim=1)
    p_teacher = F.softmax(teacher / temperature, dim=1)
    kl = F.kl_div(log_p_student, p_teacher, reduction="sum")
    return kl * temperature ** 2 / student.shape[0]


def channel_mse(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Plain mean-squared feature matching, the alternative to :func:`channel_kl`."""
    return F.mse_loss(student, teacher)


def ce_keep_rate(epoch: int, start_epoch: int, warm_epochs: int, base_keep_rate: float,
                 max_keep_rate: float = 1.0) -> float:
    """Candidate-elimination keep ratio for an epoch: 1 before ``start_epoch``, then a cosine decay to
    ``base_keep_rate`` over ``warm_epochs`` (OSTrack's ``adjust_keep_rate`` with one step per epoch)."""
    end_epoch = start_epoch + warm_epochs
    if epoch < start_epoch:
        return 1
    if epoch >= end_epoch:
        return base_keep_rate
    progress = (epoch - start_epoch) / (end_epoch - start_epoch)
    return base_keep_rate + (max_keep_rate - base_keep_rate) * (math.cos(progress * math.pi) + 1) * 0.5
