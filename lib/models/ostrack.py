"""OSTrack: the one-stream ViT backbone plus the CENTER head, built from a config.

The same class serves OSTrack, the LoReTrack student and the LoReTrack teacher; only the config
(resolution, CE, ViT size) differs.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from lib.models.head import CenterHead
from lib.models.vit import VisionTransformerTracker, build_ce_template_mask
from lib.utils.errors import ConfigError

SUPPORTED_BACKBONES = ("vit_base_patch16_224", "vit_base_patch16_224_ce", "vit", "vit_ce")
# Normalised (x, y, w, h) of a target centred in its template crop at the default TEMPLATE_FACTOR 2: the box a
# GT_BOX candidate-elimination mask of the example inputs is made from.
EXAMPLE_TEMPLATE_BOX = (0.25, 0.25, 0.5, 0.5)


class ExampleInputs(NamedTuple):
    """Network inputs in the order ``forward`` takes them, so that ``model(*inputs)`` runs."""

    template: torch.Tensor
    search: torch.Tensor
    ce_template_mask: torch.Tensor | None


class OSTrack(nn.Module):
    def __init__(self, backbone: VisionTransformerTracker, box_head: CenterHead,
                 ce_template_range: str = "ALL") -> None:
        super().__init__()
        self.backbone = backbone
        self.box_head = box_head
        self.ce_template_range = ce_template_range

    @property
    def template_size(self) -> int:
        """Template crop side in pixels: fixed by the backbone's positional embeddings when it was built."""
        return self.backbone.template_grid[0] * self.backbone.patch_size

    @property
    def search_size(self) -> int:
        """Search crop side in pixels: fixed by the backbone's positional embeddings when it was built."""
        return self.backbone.search_grid[0] * self.backbone.patch_size

    @property
    def search_feat_size(self) -> int:
        return self.backbone.search_grid[0]

    def example_inputs(self, batch: int = 1, device: torch.device | str | None = None,
                       dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None
                       ) -> ExampleInputs:
        """Inputs of the right sizes for export, compilation, MAC counts and timing, and the CE mask the
        tracker would pass (None when the network takes none).

        Zeros, or with a (CPU) ``generator`` standard normal draws from it, template first, in fp32 before
        the cast to ``dtype``, so that a seed gives the same crops on any device and dtype. ``device``
        defaults to where the weights are.
        """
        if device is None:
            device = next(self.parameters()).device
        crops = []
        for size in (self.template_size, self.search_size):
            shape = (batch, 3, size, size)
            crop = torch.zeros(shape) if generator is None else torch.randn(shape, generator=generator)
            crops.append(crop.to(device=device, dtype=dtype))
        boxes = None
        if self.ce_template_range == "GT_BOX":
            boxes = torch.tensor([EXAMPLE_TEMPLATE_BOX], device=device).expand(batch, 4)
        return ExampleInputs(crops[0], crops[1], self.make_ce_template_mask(batch, device, boxes))

    def make_ce_template_mask(self, batch: int, device: torch.device | str,
                              template_boxes: torch.Tensor | None = None) -> torch.Tensor | None:
        """The ``ce_template_mask`` argument of :meth:`forward` for this model's CE setting and a batch (None
        when CE is off or uses all template rows)."""
        if not self.backbone.ce_loc:
            return None
        return build_ce_template_mask(self.backbone.template_grid[0], self.ce_template_range, batch, device,
                                      template_boxes, self.template_size)

    def forward(self, template: torch.Tensor, search: torch.Tensor,
                ce_template_mask: torch.Tensor | None = None, ce_keep_rate: float | None = None,
                return_qkv: bool | Sequence[int] = False, return_block_out: bool | Sequence[int] = False,
                gt_score_map: torch.Tensor | None = None) -> dict[str, Any]:
        """Track ``template`` in ``search``; boxes are normalised (cx, cy, w, h) in the search crop.

        Returns ``pred_boxes`` (B, 1, 4), ``score_map``, ``size_map``, ``offset_map``, the head input
        ``opt_feat`` (B, C, F, F), ``backbone_feat`` (B, Nz + Nx, C), CE book-keeping
        (``removed_indexes_s``, ``global_index_s``) and, when asked, per-block ``qkv`` {block: (q, k, v)}
        (each (B, heads, N, head_dim)) and ``block_out`` {block: tokens}.
        """
        feats = self.backbone(template, search, ce_template_mask=ce_template_mask, ce_keep_rate=ce_keep_rate,
                              return_qkv=return_qkv, return_block_out=return_block_out)
        num_search = self.backbone.num_search_tokens
        search_tokens = feats.tokens[:, -num_search:]
        batch, _, dim = search_tokens.shape
        size = self.search_feat_size
        opt_feat = search_tokens.transpose(1, 2).reshape(batch, dim, size, size)
        out = self.box_head(opt_feat, gt_score_map)
        out.update(opt_feat=opt_feat, backbone_feat=feats.tokens, removed_indexes_s=feats.removed_indexes_s,
                   global_index_s=feats.global_index_s, attn=feats.attn)
        if feats.qkv:
            out["qkv"] = feats.qkv
        if feats.block_out:
            out["block_out"] = feats.block_out
        return out


def crop_sizes(cfg: Any, training: bool = False) -> tuple[int, int]:
    """(template, search) crop sizes of the network a config builds: ``DATA`` when training, ``TEST`` otherwise
    (a null TEST size means the training size).

    This is the one place the crop sizes are read from a config: everything else asks the built model
    (``template_size``, ``search_size``, ``example_inputs``), which cannot disagree with its weights, or this
    function where no model is built.
    """
    training_sizes = (cfg.DATA.TEMPLATE.SIZE, cfg.DATA.SEARCH.SIZE)
    if training:
        return training_sizes
    test_sizes = (cfg.TEST.TEMPLATE_SIZE, cfg.TEST.SEARCH_SIZE)
    template_size, search_size = (test or train for test, train in zip(test_sizes, training_sizes, strict=True))
    return template_size, search_size


def build_model(cfg: Any, training: bool = False) -> OSTrack:
    """Build OSTrack from a config, at its :func:`crop_sizes` for ``training`` or testing.

    With ``training=True`` the MAE (or other) weights in ``MODEL.PRETRAIN_FILE`` are loaded into the
    backbone when the file exists under the pre-trained weights folder or as a path.
    """
    bb = cfg.MODEL.BACKBONE
    if bb.TYPE not in SUPPORTED_BACKBONES:
        raise ConfigError(f"MODEL.BACKBONE.TYPE '{bb.TYPE}' is not supported; use one of {SUPPORTED_BACKBONES}")
    if cfg.MODEL.HEAD.TYPE != "CENTER":
        raise ConfigError(f"MODEL.HEAD.TYPE '{cfg.MODEL.HEAD.TYPE}' is not supported; use CENTER")
    use_ce = bb.TYPE.endswith("_ce")
    template_size, search_size = crop_sizes(cfg, training)
    backbone = VisionTransformerTracker(
        template_size=template_size, search_size=search_size, patch_size=bb.PATCH_SIZE,
        embed_dim=bb.EMBED_DIM, depth=bb.DEPTH, num_heads=bb.NUM_HEADS, mlp_ratio=bb.MLP_RATIO,
        drop_path_rate=cfg.TRAIN.DROP_PATH_RATE,
        ce_loc=bb.CE_LOC if use_ce else (), ce_keep_ratio=bb.CE_KEEP_RATIO if use_ce else ())
    head = CenterHead(bb.EMBED_DIM, cfg.MODEL.HEAD.NUM_CHANNELS, search_size // bb.PATCH_SIZE)
    model = OSTrack(backbone, head, ce_template_range=bb.CE_TEMPLATE_RANGE if use_ce else "ALL")
    if training and cfg.MODEL.PRETRAIN_FILE:
        from lib.models.weights import load_pretrained_backbone

        load_pretrained_backbone(model, cfg.MODEL.PRETRAIN_FILE)
    return model
