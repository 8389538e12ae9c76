"""Turn a sampled (template frame, search frame) pair into network inputs (OSTrack's STARKProcessing).

Per crop: jitter the box (scale exp(N(0,1) * scale_jitter), centre offset sqrt(w'h') * centre_jitter *
U(-0.5, 0.5)), crop factor x the jittered box and resize, then brightness jitter, horizontal flip and
ImageNet normalisation. Joint augmentation (grayscale, flip) acts on both full frames with one draw.
A pair is rejected (:class:`PairRejected`, the sampler draws another) when a crop misses the image on any side,
or is all padding (also after downsampling to the token grid); a box that cannot give a crop (not finite, or
its crop far larger than the image) raises :class:`BadBoxError`, a data failure.
All randomness comes from the generators passed in, so every sample is reproducible from its seed.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from lib.utils.crop import box_to_crop, crop_geometry, crop_misses_image, sample_target

#: a crop side beyond this many times the image's larger side comes from a corrupt box, not from jitter
MAX_CROP_TO_IMAGE = 20


class PairRejected(Exception):  # noqa: N818 - a verdict on a draw, not a failure
    """The drawn pair cannot give a training sample (an ordinary outcome of random jitter): draw another."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BadBoxError(ValueError):
    """A box that no crop can be cut around (a data failure the sampler counts and redraws)."""

    cause = "bad box"


@dataclass
class SampleRng:
    """Independent generators for one sample: python-style choices, torch draws, numpy draws."""

    torch: torch.Generator
    numpy: np.random.Generator

    @classmethod
    def from_seed(cls, seed: int) -> SampleRng:
        generator = torch.Generator()
        generator.manual_seed(seed)
        return cls(generator, np.random.default_rng(seed))


@dataclass
class CropSettings:
    output_size: int
    factor: float
    center_jitter: float
    scale_jitter: float


class PairProcessing:
    """Crops and augments template/search frames; raises :class:`PairRejected` for a pair to redraw."""

    def __init__(self, template: CropSettings, search: CropSettings, mean: Sequence[float], std: Sequence[float],
                 stride: int = 16, train: bool = True, grayscale_prob: float = 0.05, flip_prob: float = 0.5,
                 brightness_jitter: float = 0.2) -> None:
        self.settings = {"template": template, "search": search}
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.stride = stride
        self.train = train
        self.grayscale_prob = grayscale_prob if train else 0.0
        self.joint_flip_prob = flip_prob if train else 0.0
        self.crop_flip_prob = flip_prob if train else 0.0
        self.brightness_jitter = brightness_jitter if train else 0.0

    def jitter_box(self, box: torch.Tensor, setting: CropSettings, rng: SampleRng) -> torch.Tensor:
        size = box[2:4] * torch.exp(torch.randn(2, generator=rng.torch) * setting.scale_jitter)
        max_offset = size.prod().sqrt() * torch.tensor(setting.center_jitter).float()
        centre = box[0:2] + 0.5 * box[2:4] + max_offset * (torch.rand(2, generator=rng.torch) - 0.5)
        return torch.cat((centre - 0.5 * size, size))

    def _joint_augment(self, frames: list[np.ndarray], boxes: list[torch.Tensor], rng: SampleRng
                       ) -> tuple[list[np.ndarray], list[torch.Tensor]]:
        if rng.numpy.random() < self.grayscale_prob:
            frames = [cv2.cvtColor(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB) for f in frames]
        if rng.numpy.random() < self.joint_flip_prob:
            flipped = []
            for frame, box in zip(frames, boxes, strict=True):
                # pytracking's full-frame flip maps pixel column x to (W - 1) - x (pixel centres), so the box
                # [x, x + w] becomes [W - 1 - x - w, W - 1 - x]; the per-crop flip below works in [0, 1] (1 - x - w)
                width = frame.shape[1]
                flipped.append(torch.tensor([(width - 1) - (box[0] + box[2]), box[1], box[2], box[3]]))
            frames = [np.ascontiguousarray(f[:, ::-1]) for f in frames]
            boxes = flipped
        return frames, boxes

    def _to_tensor(self, crop: np.ndarray, box: torch.Tensor, mask: np.ndarray, rng: SampleRng
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        brightness = 1.0
        if self.brightness_jitter:
            brightness = rng.numpy.uniform(max(0.0, 1 - self.brightness_jitter), 1 + self.brightness_jitter)
        image = torch.from_numpy(crop).permute(2, 0, 1).float().mul(brightness / 255.0).clamp(0.0, 1.0)
        mask_t = torch.from_numpy(mask)
        if self.crop_flip_prob and rng.numpy.random() < self.crop_flip_prob:
            image, mask_t = image.flip(-1), mask_t.flip(-1)
            box = torch.tensor([1 - box[0] - box[2], box[1], box[2], box[3]])
        return (image - self.mean) / self.std, box, mask_t

    def __call__(self, template_frame: np.ndarray, template_box: torch.Tensor, search_frame: np.ndarray,
                 search_box: torch.Tensor, rng: SampleRng) -> dict[str, torch.Tensor]:
        """Processed tensors; :class:`PairRejected` when the pair is unusable (degenerate crop, a crop that
        misses the image, all padding)."""
        frames, boxes = self._joint_augment([template_frame, search_frame], [template_box, search_box], rng)
        out: dict[str, torch.Tensor] = {}
        for role, frame, box in zip(("template", "search"), frames, boxes, strict=True):
            setting = self.settings[role]
            jittered = self.jitter_box(box.float(), setting, rng)
            if not bool(torch.isfinite(jittered).all()):
                raise BadBoxError(f"{role} box {box.tolist()} gives a non-finite crop box {jittered.tolist()}")
            if math.ceil(math.sqrt(max(float(jittered[2] * jittered[3]), 0.0)) * setting.factor) < 1:
                raise PairRejected("crop too small")
            x1, y1, side = crop_geometry(jittered.tolist(), setting.factor)
            height, width = frame.shape[:2]
            if side > MAX_CROP_TO_IMAGE * max(height, width):
                raise BadBoxError(f"{role} box {box.tolist()} gives a {side} px crop of a {width}x{height} image")
            if crop_misses_image(x1, y1, side, height, width):
                raise PairRejected("crop misses the image")
            crop = sample_target(frame, jittered.tolist(), setting.factor, setting.output_size)
            box_in_crop = box_to_crop(box.float(), jittered, crop.resize_factor, setting.output_size, normalize=True)
            image, box_in_crop, mask = self._to_tensor(crop.image, box_in_crop, crop.padding_mask, rng)
            if mask.all():
                raise PairRejected("crop all padding")
            grid = setting.output_size // self.stride
            if F.interpolate(mask[None, None].float(), size=grid).to(torch.bool).all():
                raise PairRejected("crop all padding")
            out[f"{role}_images"] = image
            out[f"{role}_anno"] = box_in_crop.float()
            out[f"{role}_att"] = mask
        return out
