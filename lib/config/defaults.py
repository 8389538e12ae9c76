"""The one configuration schema of the framework, with its defaults.

Key names follow OSTrack's ``lib/config/ostrack/config.py`` so that official experiment YAML files load
unchanged. Additions are marked: the ViT dimensions (``MODEL.BACKBONE.EMBED_DIM`` ...) so that small
models are a config away. A key's type is the type of its default (an ``int`` is accepted where a
``float`` is expected); ``None`` defaults accept a string or null.
"""
from __future__ import annotations

from typing import Any

# Keys that may be null. TEST.TEMPLATE_SIZE / SEARCH_SIZE null: test at the training size (DATA.*.SIZE), so
# a config whose tracker runs at its training resolution states each size once.
NULLABLE_KEYS: dict[str, type] = {"TEST.TEMPLATE_SIZE": int, "TEST.SEARCH_SIZE": int}

# The values each numeric key may take: (lowest, highest, whether the lowest itself is allowed); None = no
# bound. Every float must also be finite. Lists of numbers are checked element by element.
RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "MODEL.BACKBONE.EMBED_DIM": (1, None, True),
    "MODEL.BACKBONE.DEPTH": (1, None, True),
    "MODEL.BACKBONE.NUM_HEADS": (1, None, True),
    "MODEL.BACKBONE.PATCH_SIZE": (1, None, True),
    "MODEL.BACKBONE.MLP_RATIO": (0, None, False),
    "MODEL.BACKBONE.CE_KEEP_RATIO": (0, 1, False),
    "MODEL.HEAD.NUM_CHANNELS": (1, None, True),
    "TRAIN.LR": (0, None, False),
    "TRAIN.WEIGHT_DECAY": (0, None, True),
    "TRAIN.EPOCH": (1, None, True),
    "TRAIN.LR_DROP_EPOCH": (1, None, True),
    "TRAIN.BATCH_SIZE": (1, None, True),
    "TRAIN.NUM_WORKER": (0, None, True),
    "TRAIN.BACKBONE_MULTIPLIER": (0, None, True),
    "TRAIN.GIOU_WEIGHT": (0, None, True),
    "TRAIN.L1_WEIGHT": (0, None, True),
    "TRAIN.PRINT_INTERVAL": (1, None, True),
    "TRAIN.VAL_EPOCH_INTERVAL": (1, None, True),
    "TRAIN.GRAD_CLIP_NORM": (0, None, True),
    "TRAIN.CE_START_EPOCH": (0, None, True),
    "TRAIN.CE_WARM_EPOCH": (0, None, True),
    "TRAIN.DROP_PATH_RATE": (0, 1, True),
    "TRAIN.SCHEDULER.DECAY_RATE": (0, None, False),
    "TRAIN.SAVE_EPOCH_INTERVAL": (0, None, True),
    "TRAIN.KEEP_LAST_EPOCHS": (0, None, True),
    "DATA.MAX_SAMPLE_INTERVAL": (1, None, True),
    "DATA.FRAME_CACHE_MB": (0, None, True),
    "DATA.MAX_SKIPPED_SHARE": (0, 1, True),
    "DATA.MAX_FAILED_DRAW_SHARE": (0, 1, True),
    "DATA.STD": (0, None, False),
    "DATA.TRAIN.DATASETS_RATIO": (0, None, True),
    "DATA.TRAIN.SAMPLE_PER_EPOCH": (1, None, True),
    "DATA.VAL.DATASETS_RATIO": (0, None, True),
    "DATA.VAL.SAMPLE_PER_EPOCH": (0, None, True),
    "DATA.SEARCH.SIZE": (1, None, True),
    "DATA.SEARCH.FACTOR": (0, None, False),
    "DATA.SEARCH.CENTER_JITTER": (0, None, True),
    "DATA.SEARCH.SCALE_JITTER": (0, None, True),
    "DATA.TEMPLATE.SIZE": (1, None, True),
    "DATA.TEMPLATE.FACTOR": (0, None, False),
    "DATA.TEMPLATE.CENTER_JITTER": (0, None, True),
    "DATA.TEMPLATE.SCALE_JITTER": (0, None, True),
    "DISTILL.TEMPERATURE": (0, None, False),
    "DISTILL.QKV.WEIGHT": (0, None, True),
    "DISTILL.QKV.TENSOR_WEIGHTS": (0, None, True),
    "DISTILL.DISC.WEIGHT": (0, None, True),
    "DISTILL.DISC.WEIGHTS": (0, None, True),
    "TEST.TEMPLATE_FACTOR": (0, None, False),
    "TEST.TEMPLATE_SIZE": (1, None, True),
    "TEST.SEARCH_FACTOR": (0, None, False),
    "TEST.SEARCH_SIZE": (1, None, True),
    "TEST.EPOCH": (1, None, True),
    "TEST.CROP_MEMORY_MB": (1, None, True),
}

# Keys of OSTrack's schema that take one of a few values, of which the framework implements only these: any
# other value is an error naming them (official configs may name samplers we do not have; never ignore that).
CHOICES: dict[str, tuple[Any, ...]] = {
    "DATA.SAMPLER_MODE": ("causal",),  # one template, then a search frame after it (lib/train/data/sampler.py)
    "DATA.TEMPLATE.NUMBER": (1,),  # frames per sample: one template ...
    "DATA.SEARCH.NUMBER": (1,),  # ... and one search frame
}

# Keys that cannot change a trained network or a tracking result (loader processes, logging, which
# checkpoints are kept, caches). They never count as a change when a run is resumed or results are reused,
# and they are left out of config digests.
NON_RESULT_KEYS: frozenset[str] = frozenset({
    "TRAIN.NUM_WORKER",
    "TRAIN.PRINT_INTERVAL",
    "TRAIN.SAVE_EPOCH_INTERVAL",
    "TRAIN.KEEP_LAST_EPOCHS",
    "DATA.FRAME_CACHE_MB",
    "DATA.STRICT",
    "DATA.MAX_SKIPPED_SHARE",
    "DATA.MAX_FAILED_DRAW_SHARE",
    "TEST.CROP_MEMORY_MB",
})


def default_config_dict() -> dict[str, Any]:
    """A fresh nested dict of every known key with its default value."""
    return {
        "MODEL": {
            "PRETRAIN_FILE": "mae_pretrain_vit_base.pth",
            "EXTRA_MERGER": False,
            "RETURN_INTER": False,
            "RETURN_STAGES": [2, 5, 8, 11],
            "BACKBONE": {
                "TYPE": "vit_base_patch16_224",  # '_ce' suffix = candidate elimination at CE_LOC
                "STRIDE": 16,
                "MID_PE": False,
                "SEP_SEG": False,
                "CAT_MODE": "direct",
                "MERGE_LAYER": 0,
                "ADD_CLS_TOKEN": False,
                "CLS_TOKEN_USE_MODE": "ignore",
                "CE_LOC": [],
                "CE_KEEP_RATIO": [],
                "CE_TEMPLATE_RANGE": "ALL",  # ALL, CTR_POINT, CTR_REC, GT_BOX
                # LoReTrack additions: ViT-B/16 unless a config says otherwise.
                "EMBED_DIM": 768,
                "DEPTH": 12,
                "NUM_HEADS": 12,
                "PATCH_SIZE": 16,
                "MLP_RATIO": 4.0,
            },
            "HEAD": {
                "TYPE": "CENTER",
                "NUM_CHANNELS": 256,
            },
        },
        "TRAIN": {
            "LR": 0.0001,
            "WEIGHT_DECAY": 0.0001,
            "EPOCH": 500,
            "LR_DROP_EPOCH": 400,
            "BATCH_SIZE": 16,
            "NUM_WORKER": 8,
            "OPTIMIZER": "ADAMW",
            "BACKBONE_MULTIPLIER": 0.1,
            "GIOU_WEIGHT": 2.0,
            "L1_WEIGHT": 5.0,
            "FREEZE_LAYERS": [0],
            "PRINT_INTERVAL": 50,
            "VAL_EPOCH_INTERVAL": 20,
            "GRAD_CLIP_NORM": 0.1,
            "AMP": False,
            "CE_START_EPOCH": 20,
            "CE_WARM_EPOCH": 80,
            "DROP_PATH_RATE": 0.1,
            "SCHEDULER": {
                "TYPE": "step",
                "DECAY_RATE": 0.1,
            },
            # LoReTrack additions.
            "SEED": 42,  # per-rank seed = SEED + rank; every training pair is drawn from its own seed
            # Checkpoint retention: every SAVE_EPOCH_INTERVAL-th epoch, the last KEEP_LAST_EPOCHS epochs of the
            # schedule (the released LoReTrack protocol tests epoch 296 of 300) and always the two newest.
            "SAVE_EPOCH_INTERVAL": 20,
            "KEEP_LAST_EPOCHS": 10,
        },
        "DATA": {
            "SAMPLER_MODE": "causal",
            "MEAN": [0.485, 0.456, 0.406],
            "STD": [0.229, 0.224, 0.225],
            "MAX_SAMPLE_INTERVAL": 200,
            # LoReTrack addition: decoded frames kept in memory per data process (0: off); pays on small datasets
            "FRAME_CACHE_MB": 0,
            # LoReTrack additions: the start-up check of the annotations (lib/train/data/validation.py) stops the
            # run when more than MAX_SKIPPED_SHARE of a dataset is unusable, and on any problem with STRICT
            # (--strict_data); the sampler stops it when more than MAX_FAILED_DRAW_SHARE of an epoch's pair
            # draws fail to load or process (they are redrawn below that)
            "STRICT": False,
            "MAX_SKIPPED_SHARE": 0.1,
            "MAX_FAILED_DRAW_SHARE": 0.1,
            "TRAIN": {
                "DATASETS_NAME": ["LASOT", "GOT10K_vottrain"],
                "DATASETS_RATIO": [1, 1],
                "SAMPLE_PER_EPOCH": 60000,
            },
            "VAL": {
                "DATASETS_NAME": ["GOT10K_votval"],
                "DATASETS_RATIO": [1],
                "SAMPLE_PER_EPOCH": 10000,
            },
            "SEARCH": {
                "SIZE": 320,
                "FACTOR": 5.0,
                "CENTER_JITTER": 4.5,
                "SCALE_JITTER": 0.5,
                "NUMBER": 1,
            },
            "TEMPLATE": {
                "NUMBER": 1,
                "SIZE": 128,
                "FACTOR": 2.0,
                "CENTER_JITTER": 0,
                "SCALE_JITTER": 0,
            },
        },
        # LoReTrack: distillation from a frozen (high-resolution) teacher. The data pipeline crops at the
        # teacher's TEST sizes; the student sees those crops resized to its DATA sizes.
        "DISTILL": {
            "ENABLED": False,
            "TEACHER": {
                "SCRIPT": "ostrack",
                "CONFIG": "vitb_384_mae_32x4_ep300",  # name in experiments/<SCRIPT>/ or a YAML path
                "CHECKPOINT": "",  # path, or a file name in the pre-trained weights folder
                "OVERRIDES": [],  # KEY=VALUE overrides of the teacher config
                "DTYPE": "float32",  # float32, bfloat16 or float16 (teacher forward under autocast)
            },
            "TEMPERATURE": 4.0,
            "ALIGN": "up",  # up: student maps upsampled to the teacher grid (released code); down: the reverse
            "PROJECTION": "auto",  # auto: learned 1x1 convs when student and teacher widths differ; none
            "QKV": {
                "WEIGHT": 0.01,
                "STUDENT_LAYERS": [-1],
                "TEACHER_LAYERS": [-1],
                "TENSOR_WEIGHTS": [1.0, 1.0, 1.0],  # q, k, v
                "LOSS": "kl",  # kl (channel-softmax KL with temperature) or mse
            },
            "DISC": {
                "WEIGHT": 0.01,
                "MASK": "energy",  # energy: teacher feature energy >= THRESHOLD (released code); gt_box
                "THRESHOLD": 0.2,
                "WEIGHTS": [0.6, 0.4],  # inside / outside the mask (GOT-10k setting: 0.75 / 0.25)
                "LOSS": "kl",
            },
        },
        "TEST": {
            "TEMPLATE_FACTOR": 2.0,
            "TEMPLATE_SIZE": 128,
            "SEARCH_FACTOR": 5.0,
            "SEARCH_SIZE": 320,
            "EPOCH": 500,
            # LoReTrack addition: the most memory one crop around the initial box may take; a larger box is an
            # error naming it, not an out-of-memory crash (a crop grows with the square of the box side)
            "CROP_MEMORY_MB": 512,
        },
    }
