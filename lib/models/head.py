"""CENTER box head (OSTrack's CenterPredictor): score, size and offset maps on the search grid."""
from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def _clamped_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x.sigmoid(), min=1e-4, max=1 - 1e-4)


class CenterHead(nn.Module):
    """Three conv towers (centre score, box size, sub-cell offset) on the (B, C, F, F) search features.

    Each tower halves ``channels`` three times (C -> ch -> ch/2 -> ch/4 -> ch/8 -> out). Attribute names
    (``conv1_ctr`` ... ``conv5_size``) match OSTrack checkpoints.
    """

    BRANCHES = {"ctr": 1, "offset": 2, "size": 2}

    def __init__(self, in_channels: int, channels: int, feat_size: int) -> None:
        super().__init__()
        self.feat_size = feat_size
        widths = [in_channels, channels, channels // 2, channels // 4, channels // 8]
        for branch, out_channels in self.BRANCHES.items():
            for i in range(4):
                setattr(self, f"conv{i + 1}_{branch}", conv_bn_relu(widths[i], widths[i + 1]))
            setattr(self, f"conv5_{branch}", nn.Conv2d(widths[4], out_channels, kernel_size=1))
        for param in self.parameters():
            if param.dim() > 1:
                nn.init.xavier_uniform_(param)

    def _tower(self, branch: str, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, 6):
            x = getattr(self, f"conv{i}_{branch}")(x)
        return x

    def forward(self, feat: torch.Tensor, gt_score_map: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        """Maps plus the box decoded at the score-map maximum (or at ``gt_score_map``'s, if given)."""
        score_map = _clamped_sigmoid(self._tower("ctr", feat))
        size_map = _clamped_sigmoid(self._tower("size", feat))
        offset_map = self._tower("offset", feat)
        peak_map = score_map if gt_score_map is None else gt_score_map.unsqueeze(1)
        boxes = decode_boxes(peak_map, size_map, offset_map)
        return {"pred_boxes": boxes.unsqueeze(1), "score_map": score_map, "size_map": size_map,
                "offset_map": offset_map}


def decode_boxes(score_map: torch.Tensor, size_map: torch.Tensor, offset_map: torch.Tensor) -> torch.Tensor:
    """Normalised (cx, cy, w, h) at the first maximum of ``score_map`` (B, 1, F, F).

    cx = (column + dx) / F with no half-cell shift: the learned offset absorbs it, as in OSTrack.
    """
    feat_size = score_map.shape[-1]
    _, idx = torch.max(score_map.flatten(1), dim=1, keepdim=True)
    idx_y = torch.div(idx, feat_size, rounding_mode="floor")
    idx_x = idx % feat_size
    gather_idx = idx.unsqueeze(1).expand(-1, 2, 1)
    size = size_map.flatten(2).gather(2, gather_idx).squeeze(-1)
    offset = offset_map.flatten(2).gather(2, gather_idx).squeeze(-1)
    return torch.cat([(idx_x.to(torch.float) + offset[:, :1]) / feat_size,
                      (idx_y.to(torch.float) + offset[:, 1:]) / feat_size, size], dim=1)
