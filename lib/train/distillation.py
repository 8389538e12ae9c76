"""LoReTrack's cross-resolution distillation terms, as the released code computes them.

Both terms compare the student's search-region maps, bilinearly upsampled to the teacher's grid, with
the teacher's maps through a channel-softmax KL (:func:`lib.train.losses.channel_kl`):

* QKV-KD: the query, key and value of chosen blocks (default the last), search tokens only.
* Disc-KD: the final search features, split by a mask of "discriminative" positions where the teacher's
  feature energy mean_c(F_t^2) reaches a threshold (default 0.2), weighted 0.6 inside / 0.4 outside.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from lib.train.losses import channel_kl

MapLoss = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def tokens_to_map(tokens: torch.Tensor) -> torch.Tensor:
    """(B, N, C) row-major search tokens -> (B, C, H, W) with H = W = sqrt(N)."""
    batch, num, channels = tokens.shape
    side = int(round(num ** 0.5))
    if side * side != num:
        raise ValueError(f"{num} search tokens do not form a square grid")
    return tokens.transpose(1, 2).reshape(batch, channels, side, side)


def heads_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, head_dim) -> (B, N, heads * head_dim), channel = head * head_dim + d."""
    batch, heads, num, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, num, heads * head_dim)


def align(student_map: torch.Tensor, teacher_map: torch.Tensor, direction: str = "up"
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Bring two maps to one grid: 'up' resizes the student to the teacher's (released code), 'down'
    the teacher to the student's."""
    if student_map.shape[-2:] == teacher_map.shape[-2:]:
        return student_map, teacher_map
    if direction == "up":
        return F.interpolate(student_map, size=teacher_map.shape[-2:], mode="bilinear", align_corners=False), \
            teacher_map
    if direction == "down":
        return student_map, F.interpolate(teacher_map, size=student_map.shape[-2:], mode="bilinear",
                                          align_corners=False)
    raise ValueError(f"alignment direction must be 'up' or 'down', got '{direction}'")


def search_map(x: torch.Tensor, num_template: int) -> torch.Tensor:
    """q, k or v of one block (B, heads, N, hd) -> the search-token map (B, C, H, W)."""
    return tokens_to_map(heads_to_tokens(x)[:, num_template:])


def qkv_kd_loss(student_qkv: dict[int, Sequence[torch.Tensor]], teacher_qkv: dict[int, Sequence[torch.Tensor]],
                student_template_tokens: int, teacher_template_tokens: int,
                layer_pairs: Sequence[tuple[int, int]], weights: Sequence[float] = (1.0, 1.0, 1.0),
                temperature: float = 4.0, loss: MapLoss = channel_kl, direction: str = "up",
                projections: Sequence[Mapping[str, torch.nn.Module]] | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum over (student block, teacher block) pairs of weighted q/k/v map losses.

    ``projections`` (per pair, {'q': module, 'k': ..., 'v': ...}, e.g. 1x1 convs) map a narrower student's
    channels to the teacher's.
    Returns the loss and its per-tensor parts for logging.
    """
    total = None
    parts: dict[str, float] = {}
    for pair_index, (s_block, t_block) in enumerate(layer_pairs):
        for name, weight, s_x, t_x in zip("qkv", weights, student_qkv[s_block], teacher_qkv[t_block], strict=True):
            s_map = search_map(s_x, student_template_tokens)
            if projections is not None:
                s_map = projections[pair_index][name](s_map)
            t_map = search_map(t_x, teacher_template_tokens).detach()
            s_map, t_map = align(s_map, t_map, direction)
            term = loss(s_map, t_map, temperature)
            parts[f"{name}{t_block}"] = float(term.detach())
            total = weight * term if total is None else total + weight * term
    return total, parts


def discriminative_mask(teacher_feat: torch.Tensor, threshold: float = 0.2) -> torch.Tensor:
    """(B, 1, H, W) bool: positions whose mean squared teacher feature reaches ``threshold``."""
    return teacher_feat.pow(2).mean(dim=1, keepdim=True) >= threshold


def box_mask(boxes_xywh: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) bool: grid cells whose centre lies inside the normalised GT box (the paper's
    target-aware alternative to the teacher-energy mask)."""
    height, width = size
    ys = (torch.arange(height, device=boxes_xywh.device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=boxes_xywh.device, dtype=torch.float32) + 0.5) / width
    x1, y1, w, h = (boxes_xywh[:, i].view(-1, 1, 1) for i in range(4))
    inside_x = (xs.view(1, 1, -1) >= x1) & (xs.view(1, 1, -1) <= x1 + w)
    inside_y = (ys.view(1, -1, 1) >= y1) & (ys.view(1, -1, 1) <= y1 + h)
    return (inside_x & inside_y).unsqueeze(1)


def disc_kd_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor, mask: torch.Tensor | None = None,
                 threshold: float = 0.2, weights: tuple[float, float] = (0.6, 0.4), temperature: float = 4.0,
                 loss: MapLoss = channel_kl, direction: str = "up", projection: torch.nn.Module | None = None
                 ) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted map loss inside and outside the discriminative mask (teacher energy unless given)."""
    if projection is not None:
        student_feat = projection(student_feat)
    student_feat, teacher_feat = align(student_feat, teacher_feat.detach(), direction)
    if mask is None:
        mask = discriminative_mask(teacher_feat, threshold)
    elif mask.shape[-2:] != teacher_feat.shape[-2:]:
        mask = F.interpolate(mask.float(), size=teacher_feat.shape[-2:], mode="nearest").bool()
    inside, outside = mask.float(), (~mask).float()
    term_in = loss(student_feat * inside, teacher_feat * inside, temperature)
    term_out = loss(student_feat * outside, teacher_feat * outside, temperature)
    parts = {"disc_in": float(term_in.detach()), "disc_out": float(term_out.detach()),
             "disc_mask_fraction": float(inside.mean())}
    return weights[0] * term_in + weights[1] * term_out, parts
