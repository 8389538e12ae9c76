"""The released GOT-10k one-shot protocol: the configs state it, and one training step runs from them as shipped."""
from __future__ import annotations

import pytest
import torch

from lib.config import load_config
from lib.config.config import EXPERIMENTS_DIR, flatten
from lib.data.embedded import ensure_embedded_benchmark
from lib.models import build_model, save_checkpoint
from lib.train import run_training
from lib.train.actor import TrackingActor
from lib.train.checkpointer import retained_epochs
from lib.train.data.sampler import collate_pairs
from lib.train.loretrack import build_teacher
from lib.train.trainer import Trainer
from lib.utils.paths import get_paths

STUDENTS = {96: 48, 128: 64, 192: 96, 256: 128}
# every key in which a GOT-10k config may differ from the full-data config of the same student
PROTOCOL_KEYS = {"DATA.TRAIN.DATASETS_NAME", "DATA.TRAIN.DATASETS_RATIO", "DATA.VAL.DATASETS_NAME", "TRAIN.EPOCH",
                 "TRAIN.LR_DROP_EPOCH", "TEST.EPOCH", "DISTILL.DISC.WEIGHTS", "DISTILL.TEACHER.CONFIG",
                 "DISTILL.TEACHER.OVERRIDES", "DISTILL.TEACHER.CHECKPOINT"}
TINY = {"MODEL.BACKBONE.EMBED_DIM": 32, "MODEL.BACKBONE.DEPTH": 2, "MODEL.BACKBONE.NUM_HEADS": 2,
        "MODEL.HEAD.NUM_CHANNELS": 16}


def got10k_config_path(size: int):
    return EXPERIMENTS_DIR / "loretrack" / f"loretrack_{size}_got10k.yaml"


@pytest.mark.parametrize("size", sorted(STUDENTS))
def test_got10k_configs_state_the_one_shot_protocol(size):
    cfg = load_config(got10k_config_path(size))
    assert cfg.DATA.TRAIN.DATASETS_NAME == ["GOT10K_train_full"] and cfg.DATA.TRAIN.DATASETS_RATIO == [1]
    assert cfg.DATA.VAL.DATASETS_NAME == ["GOT10K_official_val"]
    assert (cfg.TRAIN.EPOCH, cfg.TRAIN.LR_DROP_EPOCH, cfg.TEST.EPOCH) == (100, 80, 100)
    assert cfg.DISTILL.DISC.WEIGHTS == [0.75, 0.25]
    assert (cfg.DATA.SEARCH.SIZE, cfg.DATA.TEMPLATE.SIZE) == (size, STUDENTS[size])
    assert 100 in retained_epochs(list(range(1, 101)), cfg.TRAIN.SAVE_EPOCH_INTERVAL, cfg.TRAIN.KEEP_LAST_EPOCHS, 100)
    # the rest is the full-data LoReTrack config of the same student, untouched
    full = flatten(load_config(EXPERIMENTS_DIR / "loretrack" / f"loretrack_{size}.yaml"))
    assert {key for key, value in flatten(cfg).items() if full[key] != value} <= PROTOCOL_KEYS
    # the teacher is trained on GOT-10k only as well, and built without candidate elimination (QKV-KD needs
    # every search token); its sizes fix the crops: OSTrack-384
    distill = cfg.DISTILL.TEACHER
    teacher = load_config(distill.CONFIG, overrides=list(distill.OVERRIDES), script=distill.SCRIPT)
    assert teacher.DATA.TRAIN.DATASETS_NAME == ["GOT10K_train_full"]
    assert teacher.MODEL.BACKBONE.TYPE == "vit_base_patch16_224" and not teacher.MODEL.BACKBONE.CE_LOC
    assert (teacher.TEST.TEMPLATE_SIZE, teacher.TEST.SEARCH_SIZE) == (192, 384)


def test_got10k_disc_kd_weights_are_marked_unverified():
    """0.75/0.25 comes from a code comment of the released code only (method.md: unverified); the file says so."""
    lines = (EXPERIMENTS_DIR / "loretrack" / "loretrack_256_got10k.yaml").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if "WEIGHTS: [0.75, 0.25]" in line)
    comment = " ".join(line for line in lines[max(0, at - 3):at] if line.lstrip().startswith("#"))
    assert "unverified" in comment and "GOT-10k" in comment


@pytest.fixture(scope="module")
def embedded_got10k(tmp_path_factory):
    """A small GOT-10k-layout benchmark (train/ and val/ with list.txt): the config's own dataset names read it."""
    return ensure_embedded_benchmark(tmp_path_factory.mktemp("embedded"), seed=0, progress=False, workers=1,
                                     num_train=2, num_val=1, num_test=0, frames=(20, 20), size=(160, 120))


@pytest.fixture
def one_thread():
    """One intra-op thread: on a shared 2-core machine a second one only adds contention to this small step."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("size", [96, 256])
def test_got10k_config_trains_one_step_as_shipped(size, embedded_got10k, tmp_path, one_thread):
    """Only the model width/depth (student and teacher) and the teacher's weights (random) are overridden; the
    dataset names of the file are kept and resolved to the embedded benchmark through the path settings."""
    shipped = load_config(got10k_config_path(size))
    teacher_checkpoint = tmp_path / "teacher.pth.tar"
    overrides = {**TINY, "MODEL.PRETRAIN_FILE": "", "DISTILL.TEACHER.CHECKPOINT": str(teacher_checkpoint),
                 "DISTILL.TEACHER.OVERRIDES": [*shipped.DISTILL.TEACHER.OVERRIDES,
                                               *(f"{key}={value}" for key, value in TINY.items())]}
    cfg = load_config(got10k_config_path(size), overrides=overrides)
    torch.manual_seed(0)
    save_checkpoint(teacher_checkpoint, build_teacher(cfg, load_checkpoint=False), epoch=100)
    paths = get_paths(save_dir=tmp_path / "out", datasets={"got10k": embedded_got10k})

    model = build_model(cfg, training=True)
    distiller = run_training.build_distiller(cfg, model, torch.device("cpu"), world_size=1)
    assert not distiller.teacher.model.backbone.ce_loc and distiller.cfg.DISC.WEIGHTS == [0.75, 0.25]
    crops = run_training.crop_settings(cfg, run_training.crop_network(model, distiller))
    assert [(c.output_size, c.factor) for c in crops] == [(192, 2.0), (384, 5.0)]  # the teacher's crops
    train = run_training.build_sampler(cfg, "TRAIN", paths, cfg.TRAIN.SEED, crops)
    val = run_training.build_sampler(cfg, "VAL", paths, cfg.TRAIN.SEED, crops)
    assert [d.name for d in train.datasets] == ["GOT10k_train_full"] and len(train.datasets[0]) == 2
    assert [d.name for d in val.datasets] == ["GOT10k_official_val"] and len(val.datasets[0]) == 1

    batch = collate_pairs([train[i] for i in range(cfg.TRAIN.BATCH_SIZE)])
    assert batch["search_images"].shape == (cfg.TRAIN.BATCH_SIZE, 3, 384, 384)
    optimizer, scheduler = run_training.build_optimizer(cfg, model, distiller.projections)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([4e-4, 4e-5])
    assert scheduler.step_size == 80
    trainer = Trainer(TrackingActor(model, cfg, distiller=distiller), optimizer, [batch], cfg.TRAIN.EPOCH,
                      grad_clip_norm=cfg.TRAIN.GRAD_CLIP_NORM, scheduler=scheduler, trainable=model)
    trainer.current_epoch = 1
    before = {name: value.clone() for name, value in model.state_dict().items()}
    teacher_before = {name: value.clone() for name, value in distiller.teacher.model.state_dict().items()}
    status = trainer.run_step(batch)
    assert all(torch.isfinite(torch.tensor(value)) for value in status.values())
    assert status["Loss/disc_kd"] > 0 and status["Loss/qkv_kd"] > 0
    assert not torch.equal(model.state_dict()["backbone.blocks.0.attn.qkv.weight"],
                           before["backbone.blocks.0.attn.qkv.weight"])
    assert all(torch.equal(value, teacher_before[name])
               for name, value in distiller.teacher.model.state_dict().items())
    assert model.backbone.pos_embed_x.shape[1] == (size // 16) ** 2
