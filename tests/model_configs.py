"""Config overrides of the tiny models the parity fixtures were made with (shared by several tests)."""
from __future__ import annotations

from pathlib import Path

import torch

from lib.config import Config, load_config

TINY_VIT = {"MODEL.PRETRAIN_FILE": "", "MODEL.BACKBONE.EMBED_DIM": 64, "MODEL.BACKBONE.DEPTH": 4,
            "MODEL.BACKBONE.NUM_HEADS": 4, "MODEL.HEAD.NUM_CHANNELS": 32}


def tiny_config(template: int, search: int, ce: bool, factor: float = 5.0) -> Config:
    """The fixtures' tiny OSTrack at the given sizes (train and test sizes equal)."""
    overrides = dict(TINY_VIT)
    overrides.update({"DATA.TEMPLATE.SIZE": template, "DATA.SEARCH.SIZE": search, "DATA.SEARCH.FACTOR": factor,
                      "TEST.TEMPLATE_SIZE": template, "TEST.SEARCH_SIZE": search, "TEST.SEARCH_FACTOR": factor})
    if ce:
        overrides.update({"MODEL.BACKBONE.TYPE": "vit_base_patch16_224_ce", "MODEL.BACKBONE.CE_LOC": [1, 2],
                          "MODEL.BACKBONE.CE_KEEP_RATIO": [0.7, 0.7],
                          "MODEL.BACKBONE.CE_TEMPLATE_RANGE": "CTR_POINT"})
    return load_config(overrides=overrides)


def main_config(ce: bool = True, factor: float = 4.0) -> Config:
    return tiny_config(128, 256, ce, factor)


def student_config() -> Config:
    return tiny_config(64, 128, ce=False, factor=5.0)


def parity_student(folder: Path, parity_dir: Path) -> tuple[Path, torch.nn.Module]:
    """The fixtures' trained-looking student: its YAML written to ``folder`` and the model with its weights."""
    from lib.models import build_model

    cfg = student_config()
    model = build_model(cfg)
    model.load_state_dict(torch.load(parity_dir / "state_dict_student.pt", weights_only=True))
    (folder / "student.yaml").write_text(cfg.to_yaml())
    return folder / "student.yaml", model
