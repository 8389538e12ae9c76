"""Load official OSTrack/LoReTrack checkpoints, MAE pre-training files, plain state dicts and our own.

Official training checkpoints (``OSTrack_ep0300.pth.tar``) pickle project classes (Settings, meters)
next to the weights. They are read with a restricted unpickler: tensors and plain containers are
rebuilt, every other class becomes an inert placeholder, so nothing from the file is executed.
torch's own ``weights_only=True`` loader with placeholders registered through
``torch.serialization.safe_globals`` (for the names ``get_unsafe_globals_in_checkpoint`` reports) cannot
replace it: that loader refuses any file that merely names a global from ``os``/``posix``/``nt``/``sys``
before consulting the safe globals, so a checkpoint carrying such a reference could not be read at all
(and the safe-globals registry is process-wide, not per call).
Positional embeddings trained at another resolution are resized (bicubic) instead of refused.
"""
from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lib.models.vit import resize_pos_embed_grid
from lib.utils.errors import WeightsError

log = logging.getLogger(__name__)

# Globals a checkpoint may reference that are safe to resolve for real. Everything else is replaced by
# an inert placeholder (never imported, never called).
_SAFE_GLOBALS = {
    ("collections", "OrderedDict"), ("collections", "defaultdict"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"), ("builtins", "complex"),
    ("builtins", "bytearray"), ("builtins", "range"),
    ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._utils", "_rebuild_qtensor"), ("torch._utils", "_rebuild_sparse_tensor"),
    ("torch", "Size"), ("torch", "device"), ("torch.nn.parameter", "Parameter"),
    ("torch", "Tensor"), ("torch.storage", "UntypedStorage"), ("torch", "UntypedStorage"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}
_STORAGE_NAME = re.compile(r"^[A-Za-z0-9]*Storage$")
_TORCH_DTYPES = {name for name in dir(torch) if isinstance(getattr(torch, name, None), torch.dtype)}
_NUMPY_DTYPE_CLASSES = re.compile(r"^(numpy\.dtypes|numpy)$")


class Placeholder:
    """Stands in for any class a checkpoint pickled that we do not trust; it only records its state."""

    qualified_name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> Placeholder:
        return type(self)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<placeholder for {self.qualified_name}>"


def _placeholder(module: str, name: str) -> type:
    return type(name, (Placeholder,), {"qualified_name": f"{module}.{name}", "__module__": "placeholder"})


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS or (module == "torch" and (
                _STORAGE_NAME.match(name) or name in _TORCH_DTYPES)) or (
                _NUMPY_DTYPE_CLASSES.match(module) and name.endswith("DType")):
            return super().find_class(module, name)
        return _placeholder(module, name)


class _RestrictedPickleModule:
    """A ``pickle_module`` for :func:`torch.load` whose unpickler never imports untrusted classes."""

    Unpickler = _RestrictedUnpickler
    load = staticmethod(lambda f, **kw: _RestrictedUnpickler(f, **kw).load())


def read_checkpoint(path: str | Path) -> Any:
    """Read a checkpoint file on the CPU without executing code from it."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file not found: {path}; check the path (or LORETRACK_PRETRAINED_DIR / "
                           "MODEL.PRETRAIN_FILE)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # an official training checkpoint with project classes: read it the restricted way below
    except Exception as err:  # random or truncated bytes fail in many ways (KeyError, IndexError, EOFError, ...)
        raise WeightsError(f"cannot read weight file {path} ({_short_reason(err)}); is it a complete PyTorch "
                           "checkpoint?") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickleModule)
    except Exception as err:  # any failure here means the file is not a checkpoint we can read
        raise WeightsError(f"cannot read weight file {path} ({_short_reason(err)}); is it a complete PyTorch "
                           "checkpoint?") from None


def _short_reason(err: Exception, limit: int = 160) -> str:
    """The error's type and first line, shortened at a word so a message never ends mid-word."""
    text = f"{err.__class__.__name__}: {(str(err).strip().splitlines() or [''])[0]}"
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " ..."


@dataclass
class LoadReport:
    """What :func:`load_weights` did, for logging and tests."""

    path: str
    kind: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    resized: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors from {self.path} ({self.kind})"]
        if self.resized:
            parts.append("resized " + ", ".join(f"{k} {list(a)}->{list(b)}" for k, (a, b) in self.resized.items()))
        if self.missing:
            parts.append(f"{len(self.missing)} missing (e.g. {self.missing[:3]})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected (e.g. {self.unexpected[:3]})")
        return "; ".join(parts)


def extract_state_dict(checkpoint: Any, path: str | Path = "?") -> tuple[dict[str, torch.Tensor], str]:
    """The model tensors inside a checkpoint and its kind: 'tracker' (full model) or 'backbone' (MAE)."""
    if isinstance(checkpoint, Mapping):
        if "net" in checkpoint and isinstance(checkpoint["net"], Mapping):
            return _tensors(checkpoint["net"], path), "tracker"
        if "model" in checkpoint and isinstance(checkpoint["model"], Mapping):
            state, kind = _tensors(checkpoint["model"], path), "backbone"
        elif "state_dict" in checkpoint and isinstance(checkpoint["state_dict"], Mapping):
            state, kind = _tensors(checkpoint["state_dict"], path), "tracker"
        else:
            state, kind = _tensors(checkpoint, path), "tracker"
        state = {k.removeprefix("module."): v for k, v in state.items()}
        if not any(k.startswith(("backbone.", "box_head.")) for k in state):
            return state, "backbone"
        return state, kind
    raise WeightsError(f"{path}: expected a dict of tensors (or a checkpoint with 'net' / 'model'), "
                       f"got {type(checkpoint).__name__}")


def _tensors(mapping: Mapping[str, Any], path: str | Path) -> dict[str, torch.Tensor]:
    state = {str(k): v for k, v in mapping.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise WeightsError(f"{path}: the checkpoint holds no tensors")
    return state


def _adapt_pos_embed(name: str, tensor: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """Resize a positional embedding to the model's token grid; None if ``name`` is not one."""
    leaf = name.rsplit(".", 1)[-1]
    if leaf not in ("pos_embed", "pos_embed_z", "pos_embed_x") or tensor.dim() != 3 or target.dim() != 3:
        return None
    if tensor.shape[-1] != target.shape[-1]:
        return None
    prefix = 1 if leaf == "pos_embed" else 0  # the cls entry of the original ViT table
    grid_tokens, target_tokens = tensor.shape[1] - prefix, target.shape[1] - prefix
    old_side, new_side = int(grid_tokens ** 0.5), int(target_tokens ** 0.5)
    if old_side * old_side != grid_tokens or new_side * new_side != target_tokens:
        return None
    resized = resize_pos_embed_grid(tensor[:, prefix:].float(), (new_side, new_side), (old_side, old_side))
    return torch.cat([tensor[:, :prefix].float(), resized], dim=1).to(target.dtype)


def load_state_dict_adapted(model: nn.Module, state: Mapping[str, torch.Tensor], path: str = "?",
                            kind: str = "tracker", strict: bool = True) -> LoadReport:
    """Copy ``state`` into ``model``, resizing positional embeddings; refuse other shape mismatches."""
    report = LoadReport(path=str(path), kind=kind)
    own = model.state_dict()
    adapted: dict[str, torch.Tensor] = {}
    mismatched: list[str] = []
    for name, tensor in state.items():
        if name not in own:
            report.unexpected.append(name)
            continue
        if tensor.shape != own[name].shape:
            resized = _adapt_pos_embed(name, tensor, own[name])
            if resized is None:
                mismatched.append(f"{name}: file {list(tensor.shape)} vs model {list(own[name].shape)}")
                continue
            report.resized[name] = (tuple(tensor.shape), tuple(own[name].shape))
            tensor = resized
        adapted[name] = tensor
    if not adapted:
        raise WeightsError(f"{path}: none of its {len(state)} tensors match this model's parameters "
                           f"(e.g. file has {list(state)[:3]}); is it a checkpoint of another architecture?")
    if mismatched:
        raise WeightsError(f"{path} does not fit this model (another architecture or size?): "
                           f"{len(mismatched)} shape mismatch(es), e.g. {'; '.join(mismatched[:3])}")
    report.missing = [k for k in own if k not in adapted]
    if strict and (report.missing or report.unexpected):
        raise WeightsError(f"{path} does not fit this model: {len(report.missing)} missing keys "
                           f"(e.g. {report.missing[:3]}), {len(report.unexpected)} unexpected keys "
                           f"(e.g. {report.unexpected[:3]})")
    model.load_state_dict(adapted, strict=False)
    report.loaded = sorted(adapted)
    for name, (old, new) in report.resized.items():
        log.info("%s: resized %s from %s to %s (checkpoint trained at another resolution)", path, name,
                 list(old), list(new))
    if report.missing or report.unexpected:
        log.warning("%s", report.summary())
    return report


def load_weights(model: nn.Module, path: str | Path, strict: bool | None = None) -> LoadReport:
    """Load any supported weight file into an OSTrack model.

    Full-model checkpoints (official ``.pth.tar`` with ``net``, plain state dicts, ours) are strict by
    default: missing or unexpected keys are an error. MAE/ViT files fill the backbone only: the head and
    the crop positional embeddings, which they lack, are expected to be missing, and ``pos_embed_z`` /
    ``pos_embed_x`` are re-derived from the loaded ``pos_embed`` as OSTrack does.
    """
    checkpoint = read_checkpoint(path)
    state, kind = extract_state_dict(checkpoint, path)
    if kind == "backbone":
        return _load_backbone_state(model, state, str(path), strict=bool(strict))
    return load_state_dict_adapted(model, state, str(path), kind, strict=True if strict is None else strict)


def _load_backbone_state(model: nn.Module, state: Mapping[str, torch.Tensor], path: str,
                         strict: bool) -> LoadReport:
    backbone = getattr(model, "backbone", model)
    own = backbone.state_dict()
    if not any(k in own for k in state):
        raise WeightsError(f"{path}: none of its {len(state)} tensors match the ViT backbone "
                           f"(e.g. file has {list(state)[:3]}); is it a checkpoint of another architecture?")
    has_block_weights = [k for k in own if k.startswith("blocks.")]
    missing_blocks = [k for k in has_block_weights if k not in state]
    extra_blocks = [k for k in state if k.startswith("blocks.") and k not in own]
    if missing_blocks or extra_blocks:
        raise WeightsError(f"{path} does not fit this backbone: {len(missing_blocks)} block tensors missing "
                           f"(e.g. {missing_blocks[:2]}), {len(extra_blocks)} extra (e.g. {extra_blocks[:2]}); "
                           "the file's depth differs from MODEL.BACKBONE.DEPTH")
    usable = {k: v for k, v in state.items() if k in own}
    report = load_state_dict_adapted(backbone, usable, path, "backbone", strict=False)
    report.unexpected = sorted(set(state) - set(own))
    if "pos_embed_x" not in state and "pos_embed_z" not in state and hasattr(backbone, "reset_crop_pos_embed"):
        backbone.reset_crop_pos_embed()
    if strict and report.unexpected:
        raise WeightsError(f"{path}: unexpected keys {report.unexpected[:5]}")
    return report


def resolve_weight_path(name: str | Path, pretrained_dir: Path | None = None) -> Path:
    """An existing path as given, else the name inside the pre-trained weights folder."""
    path = Path(name)
    if path.is_file():
        return path
    if pretrained_dir is None:
        from lib.utils.paths import get_paths

        pretrained_dir = get_paths().pretrained_dir
    candidate = pretrained_dir / path
    if candidate.is_file():
        return candidate
    raise WeightsError(f"weight file '{name}' not found (looked at {path} and {candidate}); put it in "
                       f"{pretrained_dir} (or set LORETRACK_PRETRAINED_DIR), or set MODEL.PRETRAIN_FILE: '' "
                       "to train from scratch")


def load_pretrained_backbone(model: nn.Module, name: str | Path) -> LoadReport:
    """Initialise a model for training from ``MODEL.PRETRAIN_FILE`` (MAE weights by default)."""
    report = load_weights(model, resolve_weight_path(name), strict=False)
    log.info("%s", report.summary())
    return report


def save_checkpoint(path: str | Path, model: nn.Module, epoch: int = 0, **extra: Any) -> Path:
    """Write a checkpoint in the official OSTrack layout (weights under ``net``), atomically.

    ``extra`` adds entries such as ``optimizer``, ``config`` or RNG states; official readers only need
    ``net``. A wrapped (DDP) model is unwrapped first.
    """
    from lib.utils.io import atomic_path

    net = getattr(model, "module", model)
    checkpoint = {"epoch": epoch, "actor_type": extra.pop("actor_type", None), "net_type": type(net).__name__,
                  "net": net.state_dict(), "net_info": None, "constructor": None, **extra}
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return Path(path)
