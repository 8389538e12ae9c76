"""OSTrack inference, used as is for OSTrack and every LoReTrack student.

Per frame: crop the search region around the previous box (side ceil(sqrt(w*h) * SEARCH_FACTOR)),
run the network against the fixed first-frame template, weight the score map with a Hann window,
decode at its maximum, map the box back to the image and clip it with a 10-pixel margin. No template
update, no score threshold, no smoothing (``../shared/docs/method.md`` §4).

A frame is :meth:`~OSTrackTracker.prepare` (crop and normalise around the sequence's last box), the network,
and :meth:`~OSTrackTracker.finish` (window, decode, map back, clip, update the state). ``track`` does the three
for the one sequence the tracker holds; a lockstep benchmark run (:mod:`lib.test.evaluation.lockstep`) keeps one
:class:`TrackState` per sequence and joins their frames into one network call (:meth:`~OSTrackTracker.network_batch`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from lib.models.head import decode_boxes
from lib.models.ostrack import OSTrack
from lib.utils.boxes import InvalidBoxError, validate_init_box
from lib.utils.crop import box_to_crop, crop_geometry, crop_memory_bytes, sample_target

CLIP_MARGIN = 10  # pixels of the box kept inside the image (OSTrack's clip_box margin)
NetworkFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], Mapping[str, torch.Tensor]]


def hann1d(size: int) -> torch.Tensor:
    """Hann window 0.5 * (1 - cos(2 pi k / (size + 1))), k = 1..size: strictly positive at the borders."""
    return 0.5 * (1 - torch.cos((2 * math.pi / (size + 1)) * torch.arange(1, size + 1).float()))


def hann2d(size: int) -> torch.Tensor:
    """(1, 1, size, size) outer product of two Hann windows: the tracker's motion prior."""
    window = hann1d(size)
    return window.reshape(1, 1, -1, 1) * window.reshape(1, 1, 1, -1)


def clip_box(box: Sequence[float], height: int, width: int, margin: float = 0) -> list[float]:
    """Keep ``box`` (x, y, w, h) inside the image with at least ``margin`` pixels of size and overlap."""
    x1, y1, w, h = box
    x2, y2 = x1 + w, y1 + h
    x1 = min(max(0, x1), width - margin)
    x2 = min(max(margin, x2), width)
    y1 = min(max(0, y1), height - margin)
    y2 = min(max(margin, y2), height)
    return [x1, y1, max(margin, x2 - x1), max(margin, y2 - y1)]


@dataclass
class TrackState:
    """One sequence's tracking state: the fixed first-frame template (and its CE mask) and the last box."""

    template: torch.Tensor  # (1, 3, T, T), normalised
    ce_mask: torch.Tensor | None  # (1, template tokens) or None when the network takes none
    box: list[float]  # (x, y, w, h) in image pixels
    frame_id: int = 0


@dataclass
class SearchCrop:
    """One frame cut and normalised for the network, with what mapping its result back needs."""

    search: torch.Tensor  # (1, 3, S, S)
    resize_factor: float
    image_size: tuple[int, int]  # (height, width)


class OSTrackTracker:
    """Single-object tracker around an OSTrack-style network.

    ``network_fn(template, search, ce_template_mask) -> outputs`` defaults to the eager model; faster
    back-ends (bf16, ONNX Runtime) plug in there without changing the tracking logic, by name (``backend``,
    ``backend_options``, see :func:`lib.test.tracker.backends.build_backend`) or as a callable (``network_fn``).
    ``backend_options={"timed": True}`` makes ``backend`` a :class:`~lib.test.tracker.backends.TimedBackend`
    that records the network's time inside every tracked frame. An initial box whose crops would take more than
    ``crop_memory_mb`` is refused by name (a crop grows with the square of the box side, up to the machine's end).

    The sequence being tracked is ``sequence`` (a :class:`TrackState`); ``state``, ``template``, ``ce_mask`` and
    ``frame_id`` read (``state`` also sets) its fields.
    """

    def __init__(self, model: OSTrack, template_factor: float, search_factor: float,
                 mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225),
                 device: str | torch.device = "cpu", network_fn: NetworkFn | None = None, backend: str = "eager",
                 backend_options: Mapping[str, Any] | None = None, crop_memory_mb: float = 512) -> None:
        self.crop_memory_mb = crop_memory_mb
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        # The crops are cut at the sizes the network was built for, so they cannot disagree with it.
        self.template_size, self.template_factor = model.template_size, template_factor
        self.search_size, self.search_factor = model.search_size, search_factor
        self.backend = self._build_backend(backend, backend_options, network_fn)
        self.network_fn = network_fn or self.backend or self._eager_network
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.window = hann2d(model.search_feat_size).to(self.device)
        # Buffers reused every frame: no per-frame allocation of crops or input tensors.
        self._search_crop = np.empty((self.search_size, self.search_size, 3), dtype=np.uint8)
        self._search = torch.empty(1, 3, self.search_size, self.search_size, device=self.device)
        self.sequence: TrackState | None = None

    @classmethod
    def from_config(cls, cfg: Any, checkpoint: str | None = None, device: str | torch.device = "cpu",
                    model: OSTrack | None = None, **kwargs: Any) -> OSTrackTracker:
        """Track with ``model``, or the network built at the config's TEST sizes with ``checkpoint`` loaded
        strictly; the crop factors and normalisation come from the config.

        The crop sizes are always the network's own: a ``model`` built at other sizes (a low-resolution student
        with its teacher's config, say) tracks the same crop content at its own resolution, as it was trained.
        """
        from lib.models import build_model, load_weights

        if model is None:
            model = build_model(cfg, training=False)
            if checkpoint is not None:
                load_weights(model, checkpoint, strict=True)
        kwargs.setdefault("crop_memory_mb", cfg.TEST.CROP_MEMORY_MB)
        return cls(model, cfg.TEST.TEMPLATE_FACTOR, cfg.TEST.SEARCH_FACTOR, cfg.DATA.MEAN, cfg.DATA.STD,
                   device=device, **kwargs)

    def _build_backend(self, name: str, options: Mapping[str, Any] | None,
                       network_fn: NetworkFn | None) -> NetworkFn | None:
        """The named network back-end (lib.test.tracker.backends); None for plain eager without options."""
        if network_fn is not None:
            if name != "eager" or options:
                raise ValueError("pass either network_fn or backend/backend_options, not both")
            return None
        if name == "eager" and not options:
            return None
        from lib.test.tracker.backends import BackendError, build_backend

        if self.device.type != "cpu" and name not in ("eager", "auto"):  # 'auto' is eager off the CPU
            raise BackendError(f"back-end '{name}' runs on the CPU only; use backend='eager' on {self.device}")
        return build_backend(name, self.model, **dict(options or {}))

    def _eager_network(self, template: torch.Tensor, search: torch.Tensor,
                       ce_template_mask: torch.Tensor | None) -> Mapping[str, torch.Tensor]:
        return self.model(template, search, ce_template_mask=ce_template_mask)

    @cached_property
    def batch_network(self) -> NetworkFn | None:
        """The network for a batch of several sequences' frames, or None when it must get them one by one
        (``supports_batch`` of the back-end or of a given ``network_fn``; plain eager always batches)."""
        network = self.backend if self.backend is not None else self.network_fn
        if network == self._eager_network:  # plain eager: the back-end whose batches match batch 1 bit for bit
            from lib.test.tracker.backends import EagerBackend

            return EagerBackend(self.model)
        return network if getattr(network, "supports_batch", False) else None

    # -- the sequence this tracker holds (single-sequence interface)
    @property
    def state(self) -> list[float] | None:
        return None if self.sequence is None else self.sequence.box

    @state.setter
    def state(self, box: Sequence[float]) -> None:
        if self.sequence is None:
            raise RuntimeError("call initialize() before setting the state")
        self.sequence.box = list(box)

    @property
    def template(self) -> torch.Tensor | None:
        return None if self.sequence is None else self.sequence.template

    @property
    def ce_mask(self) -> torch.Tensor | None:
        return None if self.sequence is None else self.sequence.ce_mask

    @property
    def frame_id(self) -> int:
        return 0 if self.sequence is None else self.sequence.frame_id

    def _normalise_into(self, crop: np.ndarray, target: torch.Tensor) -> torch.Tensor:
        """(x / 255 - mean) / std, computed in place in ``target`` (1, 3, S, S)."""
        target.copy_(torch.from_numpy(crop).permute(2, 0, 1).unsqueeze(0))
        return target.div_(255.0).sub_(self.mean).div_(self.std)

    @torch.no_grad()
    def initialize(self, image: np.ndarray, info: Mapping[str, Any]) -> dict[str, Any]:
        self.sequence = self.start_sequence(image, info)
        return {"target_bbox": list(self.sequence.box)}

    @torch.no_grad()
    def start_sequence(self, image: np.ndarray, info: Mapping[str, Any]) -> TrackState:
        """A new sequence's state from its first frame and ``info['init_bbox']``."""
        box = validate_init_box(info["init_bbox"], image.shape)
        self.check_crop_memory(box, image.shape)
        crop = sample_target(image, box, self.template_factor, self.template_size)
        template = torch.empty(1, 3, self.template_size, self.template_size, device=self.device)
        template = self._normalise_into(crop.image, template)
        template_box = box_to_crop(torch.tensor(box), torch.tensor(box), crop.resize_factor, self.template_size,
                                   normalize=True).view(1, 4).to(self.device)
        return TrackState(template, self.model.make_ce_template_mask(1, self.device, template_box), box)

    def check_crop_memory(self, box: Sequence[float], image_shape: Sequence[int]) -> None:
        """Refuse a box whose template or search crop would exceed ``crop_memory_mb`` (TEST.CROP_MEMORY_MB)."""
        channels = image_shape[2] if len(image_shape) > 2 else 1
        side = max(crop_geometry(box, factor)[2] for factor in (self.template_factor, self.search_factor))
        needed_mb = crop_memory_bytes(side, channels) / 2**20
        if needed_mb > self.crop_memory_mb:
            raise InvalidBoxError(
                f"initial box {[float(v) for v in box]} is too large to track: its {side}x{side} px crop "
                f"needs {needed_mb:.0f} MB, over the crop memory budget TEST.CROP_MEMORY_MB={self.crop_memory_mb:g}; "
                "check the box (x, y, w, h in pixels) or raise the budget")

    @torch.no_grad()
    def track(self, image: np.ndarray, info: Mapping[str, Any] | None = None) -> dict[str, Any]:
        if self.sequence is None:
            raise RuntimeError("call initialize() before track()")
        crop = self.prepare(image, self.sequence, out=self._search)
        out = self.network_fn(self.sequence.template, crop.search, self.sequence.ce_mask)
        return self.finish(self.sequence, crop, out)

    # -- one frame in three steps, for one sequence or several in lockstep
    @torch.no_grad()
    def prepare(self, image: np.ndarray, state: TrackState, out: torch.Tensor | None = None) -> SearchCrop:
        """The search crop around ``state``'s last box, normalised into ``out`` (a new tensor by default)."""
        state.frame_id += 1
        crop = sample_target(image, state.box, self.search_factor, self.search_size, out=self._search_crop)
        if out is None:
            out = torch.empty(1, 3, self.search_size, self.search_size, device=self.device)
        return SearchCrop(self._normalise_into(crop.image, out), crop.resize_factor, image.shape[:2])

    @torch.no_grad()
    def network_batch(self, states: Sequence[TrackState], crops: Sequence[SearchCrop]
                      ) -> list[Mapping[str, torch.Tensor]]:
        """The network's maps for several sequences' frames, in one call (each sample's maps as (1, ...)
        slices); a network that cannot batch (:attr:`batch_network` None) gets the samples one by one, so that
        a frame never depends on its batch mates."""
        from lib.test.tracker.backends.base import MAP_NAMES

        if len(states) == 1 or self.batch_network is None:
            return [self.network_fn(state.template, crop.search, state.ce_mask)
                    for state, crop in zip(states, crops, strict=True)]
        masks = [state.ce_mask for state in states]
        out = self.batch_network(torch.cat([state.template for state in states]),
                                 torch.cat([crop.search for crop in crops]),
                                 None if masks[0] is None else torch.cat(masks))
        return [{name: out[name][i:i + 1] for name in MAP_NAMES} for i in range(len(states))]

    @torch.no_grad()
    def finish(self, state: TrackState, crop: SearchCrop, out: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """Window the score map, decode the box at its maximum, map it back to the image, clip it, keep it."""
        response = self.window * out["score_map"].float()
        box = decode_boxes(response, out["size_map"].float(), out["offset_map"].float()).view(-1, 4)
        pred = (box.mean(dim=0) * self.search_size / crop.resize_factor).tolist()
        height, width = crop.image_size
        state.box = clip_box(self._map_back(state.box, pred, crop.resize_factor), height, width, margin=CLIP_MARGIN)
        return {"target_bbox": list(state.box)}

    def _map_back(self, previous: Sequence[float], pred: Sequence[float], resize_factor: float) -> list[float]:
        """Crop-pixel (cx, cy, w, h) -> image (x, y, w, h); the crop was centred on the ``previous`` box."""
        cx_prev = previous[0] + 0.5 * previous[2]
        cy_prev = previous[1] + 0.5 * previous[3]
        cx, cy, w, h = pred
        half_side = 0.5 * self.search_size / resize_factor
        cx_img, cy_img = cx + (cx_prev - half_side), cy + (cy_prev - half_side)
        return [cx_img - 0.5 * w, cy_img - 0.5 * h, w, h]
