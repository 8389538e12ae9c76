"""Box conversions and (G)IoU on normalised boxes, in torch (training losses and targets)."""
from __future__ import annotations

import torch


def box_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    x1, y1, w, h = boxes.unbind(-1)
    return torch.stack([x1, y1, x1 + w, y1 + h], dim=-1)


def box_xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)


def _area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def paired_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and union of row-paired (N, 4) xyxy boxes."""
    top_left = torch.max(boxes1[:, :2], boxes2[:, :2])
    bottom_right = torch.min(boxes1[:, 2:], boxes2[:, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = _area(boxes1) + _area(boxes2) - inter
    return inter / union, union


class DegenerateBoxError(ValueError):
    """A box with x2 < x1 or y2 < y1: GIoU is undefined for it."""


def generalized_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """GIoU and IoU of row-paired (N, 4) xyxy boxes."""
    if not ((boxes1[:, 2:] >= boxes1[:, :2]).all() and (boxes2[:, 2:] >= boxes2[:, :2]).all()):
        raise DegenerateBoxError("GIoU needs boxes with x2 >= x1 and y2 >= y1")
    iou, union = paired_iou(boxes1, boxes2)
    top_left = torch.min(boxes1[:, :2], boxes2[:, :2])
    bottom_right = torch.max(boxes1[:, 2:], boxes2[:, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    enclosing = wh[:, 0] * wh[:, 1]
    return iou - (enclosing - union) / enclosing, iou
