"""One-stream Vision Transformer for tracking, with optional candidate elimination (CE).

Template and search crops share one patch embedding, get their own positional embeddings, are
concatenated (template first) and processed jointly by pre-norm Transformer blocks. Blocks listed in
``ce_loc`` drop the search tokens the template attends to least (OSTrack's candidate elimination); the
eliminated positions come back as zero vectors after the final norm so the head always sees the full
search grid. Parameter names match OSTrack / MAE / timm checkpoints (``blocks.{i}.attn.qkv`` ...).

The small layers (patch embedding, MLP, drop path, positional-embedding resize) are written here rather than
imported from timm: importing timm pulls in torchvision and torch._dynamo and adds about 5 s to the start of
every process (8.3-8.9 s against 3.4-3.9 s to import this module, measured on 2 cores), which every command
and test process would pay for three ten-line classes. tests/test_vit_layers.py checks that they are
bit-identical to timm's, state-dict keys included. The attention is our own in any case: candidate
elimination needs its probabilities, and timm's fused attention is not bit-identical to the explicit softmax.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


class DropPath(nn.Module):
    """Per-sample stochastic depth: randomly skips a residual branch during training."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens in row-major order; works for any multiple of the patch size."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection (channel = head * head_dim + d).

    Uses ``scaled_dot_product_attention`` unless the caller needs the attention probabilities
    (candidate elimination) — then the explicit softmax path runs.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, need_weights: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, ...]]:
        """Return (output, attention probabilities or None, (q, k, v) each (B, heads, N, head_dim))."""
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if need_weights:
            attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
            out = attn @ v
        else:
            attn = None
            out = F.scaled_dot_product_attention(q, k, v)
        out = self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))
        return out, attn, (q, k, v)


def ce_search_scores(attn: torch.Tensor, num_template: int, template_mask: torch.Tensor | None) -> torch.Tensor:
    """How strongly the (selected) template tokens attend to each search token, averaged over heads.

    ``attn`` is (B, H, N, N) with the template tokens first; ``template_mask`` (B, Nz) selects template
    rows (None = all rows). The averaging order (rows, then heads) follows OSTrack exactly.
    """
    batch, heads = attn.shape[:2]
    attn_ts = attn[:, :, :num_template, num_template:]
    if template_mask is not None:
        rows = template_mask[:, None, :, None].expand(-1, heads, -1, attn_ts.shape[-1])
        attn_ts = attn_ts[rows].view(batch, heads, -1, attn_ts.shape[-1])
    return attn_ts.mean(dim=2).mean(dim=1)


def eliminate_candidates(tokens: torch.Tensor, scores: torch.Tensor, num_template: int, keep_ratio: float,
                         global_index: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Keep the ``ceil(keep_ratio * Ns)`` highest-scoring search tokens, in descending-score order.

    Returns the new token sequence, the original indices of the kept search tokens and those of the
    removed ones (None when nothing is removed). Template tokens are never removed.
    """
    num_search = scores.shape[1]
    num_keep = math.ceil(keep_ratio * num_search)
    if num_keep == num_search:
        return tokens, global_index, None
    _, order = torch.sort(scores, dim=1, descending=True)
    keep_idx, removed_idx = order[:, :num_keep], order[:, num_keep:]
    kept_global = global_index.gather(1, keep_idx)
    removed_global = global_index.gather(1, removed_idx)
    search = tokens[:, num_template:]
    kept = search.gather(1, keep_idx.unsqueeze(-1).expand(-1, -1, search.shape[-1]))
    return torch.cat([tokens[:, :num_template], kept], dim=1), kept_global, removed_global


class Block(nn.Module):
    """Pre-norm Transformer block; with ``keep_ratio < 1`` it also eliminates search candidates.

    Elimination happens after the attention residual and before the MLP, as in OSTrack's CEBlock.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float = 0.0,
                 keep_ratio: float = 1.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.keep_ratio = keep_ratio

    def forward(self, x: torch.Tensor, state: TokenState, keep_ratio: float | None = None,
                template_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, BlockOutput]:
        ratio = self.keep_ratio if keep_ratio is None else keep_ratio
        eliminates = self.keep_ratio < 1 and ratio < 1
        attn_out, attn, qkv = self.attn(self.norm1(x), need_weights=eliminates)
        x = x + self.drop_path(attn_out)
        removed = None
        if eliminates:
            scores = ce_search_scores(attn, state.num_template, template_mask)
            x, state.global_index_s, removed = eliminate_candidates(
                x, scores, state.num_template, ratio, state.global_index_s)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, BlockOutput(qkv=qkv, removed_index_s=removed, attn=attn)


@dataclass
class TokenState:
    """Book-keeping of which original search positions are still in the sequence."""

    num_template: int
    global_index_s: torch.Tensor  # (B, current Ns) float, original search-token indices


@dataclass
class BlockOutput:
    qkv: tuple[torch.Tensor, ...]
    removed_index_s: torch.Tensor | None
    attn: torch.Tensor | None


@dataclass
class BackboneOutput:
    tokens: torch.Tensor  # (B, Nz + Nx, C): final-norm features, search part restored to full raster order
    removed_indexes_s: list[torch.Tensor | None] = field(default_factory=list)
    global_index_s: torch.Tensor | None = None
    qkv: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    block_out: dict[int, torch.Tensor] = field(default_factory=dict)
    attn: torch.Tensor | None = None


def resize_pos_embed_grid(pos_embed: torch.Tensor, new_grid: tuple[int, int],
                          old_grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Bicubically resize (1, H*W, C) row-major positional embeddings to another token grid."""
    _, num_tokens, dim = pos_embed.shape
    if old_grid is None:
        side = math.isqrt(num_tokens)
        if side * side != num_tokens:
            raise ValueError(f"cannot infer a square grid from {num_tokens} positional embeddings")
        old_grid = (side, side)
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    grid = pos_embed.transpose(1, 2).reshape(1, dim, *old_grid)
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", align_corners=False)
    return grid.flatten(2).transpose(1, 2)


class VisionTransformerTracker(nn.Module):
    """The one-stream ViT backbone of OSTrack at any template/search size.

    ``pos_embed`` (with its cls entry) and ``cls_token`` are kept from the pre-trained ViT so checkpoints
    load unchanged; the tracker uses ``pos_embed_z`` / ``pos_embed_x``, resized from ``pos_embed`` for the
    configured crop sizes.
    """

    def __init__(self, template_size: int, search_size: int, patch_size: int = 16, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0, drop_path_rate: float = 0.0,
                 ce_loc: Sequence[int] = (), ce_keep_ratio: Sequence[float] = (),
                 pretrain_img_size: int = 224, in_chans: int = 3) -> None:
        super().__init__()
        for name, size in (("template", template_size), ("search", search_size)):
            if size % patch_size:
                raise ValueError(f"{name} size {size} is not a multiple of the patch size {patch_size}")
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.template_grid = (template_size // patch_size,) * 2
        self.search_grid = (search_size // patch_size,) * 2
        self.pretrain_grid = (pretrain_img_size // patch_size,) * 2
        self.ce_loc = list(ce_loc)

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.pretrain_grid[0] * self.pretrain_grid[1], embed_dim))
        self.pos_embed_z = nn.Parameter(torch.zeros(1, self.template_grid[0] * self.template_grid[1], embed_dim))
        self.pos_embed_x = nn.Parameter(torch.zeros(1, self.search_grid[0] * self.search_grid[1], embed_dim))
        # Kept for checkpoint compatibility only; the forward pass never uses them (DDP needs to know).
        self.cls_token.requires_grad_(False)
        self.pos_embed.requires_grad_(False)

        keep = {loc: ratio for loc, ratio in zip(ce_loc, ce_keep_ratio, strict=True)}
        rates = torch.linspace(0, drop_path_rate, depth).tolist() if depth > 1 else [drop_path_rate]
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, drop_path=rates[i], keep_ratio=keep.get(i, 1.0))
            for i in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.init_weights()

    @property
    def num_template_tokens(self) -> int:
        return self.template_grid[0] * self.template_grid[1]

    @property
    def num_search_tokens(self) -> int:
        return self.search_grid[0] * self.search_grid[1]

    def init_weights(self) -> None:
        """timm ViT initialisation; only matters when no pre-trained weights are loaded."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        self.reset_crop_pos_embed()

    @torch.no_grad()
    def reset_crop_pos_embed(self) -> None:
        """Derive ``pos_embed_z`` / ``pos_embed_x`` from ``pos_embed`` (OSTrack's ``finetune_track``)."""
        patch_pos = self.pos_embed[:, 1:]
        self.pos_embed_z.copy_(resize_pos_embed_grid(patch_pos, self.template_grid, self.pretrain_grid))
        self.pos_embed_x.copy_(resize_pos_embed_grid(patch_pos, self.search_grid, self.pretrain_grid))

    def forward(self, template: torch.Tensor, search: torch.Tensor,
                ce_template_mask: torch.Tensor | None = None, ce_keep_rate: float | None = None,
                return_qkv: bool | Sequence[int] = False, return_block_out: bool | Sequence[int] = False,
                ) -> BackboneOutput:
        """``ce_keep_rate`` overrides every CE block's ratio (training warm-up); None keeps their own."""
        depth = len(self.blocks)
        qkv_blocks = _block_set(return_qkv, depth)
        out_blocks = _block_set(return_block_out, depth)
        z = self.patch_embed(template) + self.pos_embed_z
        x = self.patch_embed(search) + self.pos_embed_x
        batch, num_search, dim = x.shape
        tokens = torch.cat([z, x], dim=1)
        index = torch.arange(num_search, device=x.device, dtype=torch.float32).expand(batch, -1)
        state = TokenState(num_template=z.shape[1], global_index_s=index)
        result = BackboneOutput(tokens=tokens)
        for i, block in enumerate(self.blocks):
            tokens, block_result = block(tokens, state, ce_keep_rate, ce_template_mask)
            if i in self.ce_loc:
                result.removed_indexes_s.append(block_result.removed_index_s)
            if i in qkv_blocks:
                result.qkv[i] = block_result.qkv
            if i in out_blocks:
                result.block_out[i] = tokens
            if block_result.attn is not None:
                result.attn = block_result.attn
        tokens = self.norm(tokens)
        result.tokens = self._restore_search_order(tokens, state, result.removed_indexes_s, num_search)
        result.global_index_s = state.global_index_s
        return result

    @staticmethod
    def _restore_search_order(tokens: torch.Tensor, state: TokenState,
                              removed: list[torch.Tensor | None], num_search: int) -> torch.Tensor:
        """Scatter the surviving search tokens back to their raster positions; eliminated ones become 0."""
        removed = [r for r in removed if r is not None]
        if not removed:
            return tokens
        z, x = tokens[:, :state.num_template], tokens[:, state.num_template:]
        batch, kept, dim = x.shape
        x = torch.cat([x, x.new_zeros(batch, num_search - kept, dim)], dim=1)
        order = torch.cat([state.global_index_s, *removed], dim=1).to(torch.int64)
        x = torch.zeros_like(x).scatter_(1, order.unsqueeze(-1).expand(-1, -1, dim), x)
        return torch.cat([z, x], dim=1)


def _block_set(selection: bool | Sequence[int], depth: int) -> set[int]:
    if selection is True:
        return set(range(depth))
    if selection is False or selection is None:
        return set()
    return {i % depth for i in selection}  # negative indices count from the last block


def build_ce_template_mask(template_grid: int, template_range: str, batch: int,
                           device: torch.device | str = "cpu",
                           template_boxes: torch.Tensor | None = None, template_size: int | None = None
                           ) -> torch.Tensor | None:
    """Which template tokens score the search tokens in candidate elimination (None = all of them).

    CTR_POINT is the centre token ((F-1)//2 in each axis: OSTrack's (3,3) for 8x8 / 7x7, (5,5) for 12x12,
    (6,6) for 14x14; other grids follow the same rule), CTR_REC the centre 2x2 (1x1 on odd grids),
    GT_BOX the tokens covered by the template's ground-truth box (normalised x, y, w, h).
    """
    if template_range == "ALL":
        return None
    centre = (template_grid - 1) // 2
    mask = torch.zeros(batch, template_grid, template_grid, device=device)
    if template_range == "CTR_POINT":
        mask[:, centre, centre] = 1
    elif template_range == "CTR_REC":
        extent = 2 if template_grid % 2 == 0 else 1
        mask[:, centre:centre + extent, centre:centre + extent] = 1
    elif template_range == "GT_BOX":
        if template_boxes is None or template_size is None:
            raise ValueError("GT_BOX candidate elimination needs the template boxes and the template size")
        pixel = torch.zeros(batch, template_size, template_size, device=device)
        for b, (x1, y1, w, h) in enumerate((template_boxes * template_size).tolist()):
            pixel[b, int(y1):int(y1 + h - 1), int(x1):int(x1 + w - 1)] = 1  # OSTrack's exclusive end
        mask = F.interpolate(pixel.unsqueeze(1), scale_factor=template_grid / template_size, mode="bilinear",
                             align_corners=False).squeeze(1)
    else:
        raise ValueError(f"unknown CE template range '{template_range}' (ALL, CTR_POINT, CTR_REC, GT_BOX)")
    return mask.flatten(1).to(torch.bool)
