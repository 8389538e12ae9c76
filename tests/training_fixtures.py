"""Tiny GOT-10k-style datasets and configs for fast training tests."""
from __future__ import annotations

import socket
from pathlib import Path

import cv2
import numpy as np

from lib.utils.synthetic import moving_square_clip


def free_port() -> int:
    """A TCP port nothing listens on now, for a torchrun rendezvous (a fixed one can be taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_sequence(folder: Path, frames: list[np.ndarray], boxes: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i + 1:08d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
    np.savetxt(folder / "groundtruth.txt", boxes, fmt="%.2f", delimiter=",")


def make_custom_dataset(root: Path, num_sequences: int = 4, num_frames: int = 24, size: tuple[int, int] = (96, 128),
                        seed: int = 0) -> Path:
    """Moving textured squares in the GOT-10k-style custom layout (``root/<seq>/00000001.jpg``, ...)."""
    names = []
    for index in range(num_sequences):
        frames, boxes = moving_square_clip(num_frames, size=size, target=24, seed=seed + index)
        name = f"seq_{index:03d}"
        write_sequence(root / name, frames, boxes)
        names.append(name)
    (root / "list.txt").write_text("\n".join(names) + "\n")
    return root


def tiny_training_yaml(path: Path, train_root: Path, epochs: int = 2, samples: int = 16, batch: int = 4,
                       val_root: Path | None = None, extra: str = "") -> Path:
    """A 2-block ViT at 32/64 px: a training step takes milliseconds on a CPU."""
    val = (f"  VAL:\n    DATASETS_NAME: ['CUSTOM:{val_root}']\n    DATASETS_RATIO: [1]\n    SAMPLE_PER_EPOCH: 8\n"
           if val_root else "  VAL:\n    DATASETS_NAME: []\n    DATASETS_RATIO: []\n")
    path.write_text(f"""\
DATA:
  MAX_SAMPLE_INTERVAL: 10
  SEARCH: {{SIZE: 64, FACTOR: 4.0, CENTER_JITTER: 3, SCALE_JITTER: 0.25}}
  TEMPLATE: {{SIZE: 32, FACTOR: 2.0}}
  TRAIN:
    DATASETS_NAME: ['CUSTOM:{train_root}']
    DATASETS_RATIO: [1]
    SAMPLE_PER_EPOCH: {samples}
{val}MODEL:
  PRETRAIN_FILE: ''
  BACKBONE: {{EMBED_DIM: 32, DEPTH: 2, NUM_HEADS: 2}}
  HEAD: {{NUM_CHANNELS: 16}}
TRAIN:
  EPOCH: {epochs}
  LR_DROP_EPOCH: {max(1, epochs - 1)}
  BATCH_SIZE: {batch}
  NUM_WORKER: 0
  LR: 0.001
  PRINT_INTERVAL: 1
  VAL_EPOCH_INTERVAL: 1
  SAVE_EPOCH_INTERVAL: 1
TEST: {{SEARCH_SIZE: 64, TEMPLATE_SIZE: 32, SEARCH_FACTOR: 4.0}}
{extra}""")
    return path
