"""CENTER box head (OSTrack's CenterPredictor): score, size and offset maps on the search grid, and the same head
rewritten as one MatMul for the int8 ONNX export."""
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

    def _tower(self, branch: str, x: torch.Tensor, first_layer: int = 1) -> torch.Tensor:
        for i in range(first_layer, 6):
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


class MatMulCenterHead(nn.Module):
    """A :class:`CenterHead` whose three first 3x3 convolutions (C -> ch each, the bulk of the head's work) run
    as ONE matrix product on the 9 shifted copies of the token grid, batch norm folded in.

    Same function as the convolutions (fp32 deviation ~1e-6), but a MatMul with constant weights is what
    ONNX Runtime's dynamic int8 quantisation speeds up; its int8 Conv path is slower than fp32 there.
    """

    def __init__(self, head: CenterHead) -> None:
        super().__init__()
        self.head = head
        self.branches = tuple(CenterHead.BRANCHES)
        weights, biases = [], []
        for branch in self.branches:
            conv, bn = getattr(head, f"conv1_{branch}")[:2]
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            weights.append(conv.weight * scale[:, None, None, None])
            biases.append((conv.bias - bn.running_mean) * scale + bn.bias)
        weight = torch.cat(weights).detach()  # (3 ch, C, 3, 3)
        self.channels = weight.shape[0] // 3
        # row (dy * 3 + dx) * C + c of the matrix multiplies the token at offset (dy - 1, dx - 1), channel c
        self.register_buffer("weight", weight.permute(2, 3, 1, 0).reshape(-1, weight.shape[0]).contiguous())
        self.register_buffer("bias", torch.cat(biases).detach())

    @staticmethod
    def supports(head: nn.Module) -> bool:
        """Whether ``head`` has the conv(3x3, bias) + batch norm + ReLU first layers this rewrite folds."""
        for branch in CenterHead.BRANCHES:
            block = getattr(head, f"conv1_{branch}", None)
            if not (isinstance(block, nn.Sequential) and len(block) == 3 and isinstance(block[0], nn.Conv2d)
                    and isinstance(block[1], nn.BatchNorm2d) and isinstance(block[2], nn.ReLU)):
                return False
            conv = block[0]
            if (conv.kernel_size, conv.padding, conv.stride, conv.dilation, conv.groups) != (
                    (3, 3), (1, 1), (1, 1), (1, 1), 1) or conv.bias is None:
                return False
        return True

    def forward(self, tokens: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``tokens`` (B, F*F, C) in raster order -> score, size, offset maps."""
        batch, num, dim = tokens.shape
        grid = nn.functional.pad(tokens.reshape(batch, size, size, dim), (0, 0, 1, 1, 1, 1))
        cols = torch.cat([grid[:, dy:dy + size, dx:dx + size, :] for dy in range(3) for dx in range(3)], dim=-1)
        hidden = torch.relu(cols.reshape(batch, num, 9 * dim) @ self.weight + self.bias)
        hidden = hidden.reshape(batch, size, size, 3, self.channels).permute(3, 0, 4, 1, 2)
        outs = {branch: self.head._tower(branch, hidden[i], first_layer=2) for i, branch in enumerate(self.branches)}
        return _clamped_sigmoid(outs["ctr"]), _clamped_sigmoid(outs["size"]), outs["offset"]


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
