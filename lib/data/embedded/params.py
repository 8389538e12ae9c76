"""What determines a generated benchmark: its parameters, the split names and the per-sequence random streams."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lib.utils.errors import UserError

GENERATOR_VERSION = 1
JPEG_QUALITY = 90
SPLITS = ("train", "val", "test")
SEQUENCE_PREFIX = {"train": "EMB_Train", "val": "EMB_Val", "test": "EMB_Test"}
MANIFEST_NAME = "manifest.json"
MIN_FRAMES = 20  # OSTrack's sampler ignores shorter sequences
MAX_FRAMES = 5000
MIN_SIZE = (64, 48)
MAX_SIZE = (4096, 4096)


def _whole(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise UserError(f"embedded benchmark: {what} must be a whole number, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class EmbeddedParams:
    """Everything that determines the generated files; a change gives a new benchmark folder."""

    seed: int = 0
    num_train: int = 40
    num_val: int = 10
    num_test: int = 10
    frames: tuple[int, int] = (40, 80)
    size: tuple[int, int] = (320, 240)

    def __post_init__(self) -> None:
        """Check every field and store it normalised (ints, tuples), so equal settings compare and hash equal."""
        seed = _whole(self.seed, "seed")
        if seed < 0:
            raise UserError(f"embedded benchmark: seed must be >= 0, got {seed}")
        counts = [_whole(getattr(self, f"num_{split}"), f"num_{split}") for split in SPLITS]
        if min(counts) < 0 or sum(counts) == 0:
            raise UserError(f"embedded benchmark: sequence counts must be >= 0 with at least one sequence, "
                            f"got train/val/test = {counts}")
        frames = self._checked_frames()
        size = self._checked_size()
        for name, value in (("seed", seed), ("num_train", counts[0]), ("num_val", counts[1]),
                            ("num_test", counts[2]), ("frames", frames), ("size", size)):
            object.__setattr__(self, name, value)

    def _checked_frames(self) -> tuple[int, int]:
        frames = tuple(self.frames) if isinstance(self.frames, (tuple, list)) else (self.frames, self.frames)
        if len(frames) != 2:
            raise UserError(f"embedded benchmark: frames must be (min, max), got {self.frames!r}")
        low, high = _whole(frames[0], "frames"), _whole(frames[1], "frames")
        if not MIN_FRAMES <= low <= high <= MAX_FRAMES:
            raise UserError(f"embedded benchmark: frames per sequence must satisfy {MIN_FRAMES} <= min <= max <= "
                            f"{MAX_FRAMES} (OSTrack's sampler skips sequences under {MIN_FRAMES} frames), "
                            f"got {low}-{high}")
        return low, high

    def _checked_size(self) -> tuple[int, int]:
        if not isinstance(self.size, (tuple, list)) or len(self.size) != 2:
            raise UserError(f"embedded benchmark: size must be (width, height), got {self.size!r}")
        width, height = _whole(self.size[0], "width"), _whole(self.size[1], "height")
        if not (MIN_SIZE[0] <= width <= MAX_SIZE[0] and MIN_SIZE[1] <= height <= MAX_SIZE[1]):
            raise UserError(f"embedded benchmark: frame size must be between {MIN_SIZE[0]}x{MIN_SIZE[1]} and "
                            f"{MAX_SIZE[0]}x{MAX_SIZE[1]}, got {width}x{height}")
        return width, height

    def count(self, split: str) -> int:
        return getattr(self, f"num_{split}")

    @property
    def folder_name(self) -> str:
        """Readable and unique per parameter set, so changed parameters never reuse an old folder."""
        return (f"v{GENERATOR_VERSION}_seed{self.seed}_{self.size[0]}x{self.size[1]}_f{self.frames[0]}-"
                f"{self.frames[1]}_n{self.num_train}-{self.num_val}-{self.num_test}")

    def as_dict(self) -> dict:
        """JSON-ready (tuples as lists), as recorded in and compared against the manifest."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


def sequence_name(split: str, index: int) -> str:
    return f"{SEQUENCE_PREFIX[split]}_{index + 1:06d}"


def sequence_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """One independent stream per sequence: order, worker count and other splits never change its content."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), index, GENERATOR_VERSION]))
