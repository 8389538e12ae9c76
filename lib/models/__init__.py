"""Tracking networks: the one-stream ViT (optional candidate elimination) with the CENTER head."""
from lib.models.head import CenterHead, decode_boxes
from lib.models.ostrack import OSTrack, build_model, crop_sizes
from lib.models.vit import VisionTransformerTracker, build_ce_template_mask, resize_pos_embed_grid
from lib.models.weights import LoadReport, load_weights, read_checkpoint, save_checkpoint

__all__ = ["CenterHead", "decode_boxes", "OSTrack", "build_model", "crop_sizes", "VisionTransformerTracker",
           "build_ce_template_mask", "resize_pos_embed_grid", "LoadReport", "load_weights", "read_checkpoint",
           "save_checkpoint"]
