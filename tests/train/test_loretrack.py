"""LoReTrack distillation: loss parity with the official actor, a frozen teacher, bad teacher set-ups."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from lib.config import load_config
from lib.models import build_model, read_checkpoint, save_checkpoint
from lib.train import loretrack, run_training
from lib.train.actor import TrackingActor
from lib.train.loretrack import LoReTrackDistiller, build_loretrack_distiller
from lib.utils.errors import ConfigError, WeightsError
from lib.utils.paths import REPO_ROOT, get_paths
from lib.utils.run_layout import TrainingRun
from tests.model_configs import main_config, student_config
from tests.training_fixtures import free_port, make_custom_dataset, tiny_training_yaml


def test_loretrack_actor_reproduces_official_losses(parity_dir):
    """Teacher crops in, student resizes them itself, heatmap on the student grid, QKV-KD + Disc-KD added."""
    inputs = torch.load(parity_dir / "inputs.pt", weights_only=True)
    status = json.loads((parity_dir / "losses.json").read_text())["loretrack_actor"]["status"]
    teacher = build_model(main_config(ce=False))
    teacher.load_state_dict(torch.load(parity_dir / "state_dict_main.pt", weights_only=True))
    cfg = student_config()
    cfg.DISTILL.ENABLED = True
    student = build_model(cfg).eval()
    student.load_state_dict(torch.load(parity_dir / "state_dict_student.pt", weights_only=True))
    actor = TrackingActor(student, cfg, distiller=LoReTrackDistiller(teacher, student, cfg))
    batch = {"template_images": inputs["template"], "search_images": inputs["search"],
             "template_anno": inputs["template_anno_xywh"], "search_anno": inputs["gt_boxes_xywh"]}
    with torch.no_grad():
        _, ours = actor(batch, epoch=60)
    for key, official in (("Loss/giou", "Loss/giou"), ("Loss/l1", "Loss/l1"), ("Loss/location", "Loss/location"),
                          ("Loss/disc_kd", "Loss/kd"), ("Loss/qkv_kd", "Loss/qkv_11"), ("Loss/total", "Loss/total"),
                          ("IoU", "IoU")):
        assert ours[key] == pytest.approx(status[official], rel=1e-4), key


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory):
    """A tiny trained-looking teacher (64/128 crops) saved as a checkpoint, with its config."""
    folder = tmp_path_factory.mktemp("teacher")
    cfg = load_config(overrides={"MODEL.PRETRAIN_FILE": "", "MODEL.BACKBONE.EMBED_DIM": 32, "MODEL.BACKBONE.DEPTH": 2,
                                 "MODEL.BACKBONE.NUM_HEADS": 2, "MODEL.HEAD.NUM_CHANNELS": 16,
                                 "TEST.TEMPLATE_SIZE": 64, "TEST.SEARCH_SIZE": 128, "TEST.SEARCH_FACTOR": 4.0})
    (folder / "teacher.yaml").write_text(cfg.to_yaml())
    torch.manual_seed(3)
    model = build_model(cfg)
    for module in model.modules():  # non-trivial BN statistics, to see that they never change
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    return folder / "teacher.yaml", save_checkpoint(folder / "teacher.pth.tar", model, epoch=300)


def _distill_yaml(tmp_path, data_root, teacher_files, extra_distill: str = "", **kwargs):
    teacher_cfg, teacher_ckpt = teacher_files
    distill = (f"DISTILL:\n  ENABLED: true\n  TEACHER: {{CONFIG: '{teacher_cfg}', CHECKPOINT: '{teacher_ckpt}'}}\n"
               f"{extra_distill}")
    return tiny_training_yaml(tmp_path / "student.yaml", data_root, extra=distill, **kwargs)


def test_training_changes_only_the_student(tmp_path, teacher_files, monkeypatch):
    data = make_custom_dataset(tmp_path / "data", num_sequences=3)
    cfg_path = _distill_yaml(tmp_path, data, teacher_files, epochs=1, samples=8)
    cfg = load_config(cfg_path)
    reference = build_model(load_config(teacher_files[0]))
    reference.load_state_dict(read_checkpoint(teacher_files[1])["net"])
    teacher_config_loads = []
    monkeypatch.setattr(loretrack, "load_config",
                        lambda *args, **kwargs: teacher_config_loads.append(args) or load_config(*args, **kwargs))
    trainer = run_training.run(cfg, "loretrack", "student", save_dir=tmp_path / "out", progress=False,
                               paths=get_paths(save_dir=tmp_path / "out"))
    assert len(teacher_config_loads) == 1
    crops = trainer.train_loader.dataset.processing.settings
    assert (crops["template"].output_size, crops["search"].output_size) == (64, 128)  # the built teacher's sizes
    teacher = trainer.actor.distiller.teacher
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    for name, value in reference.state_dict().items():
        assert torch.equal(teacher.model.state_dict()[name], value), f"teacher {name} changed"
    status = trainer.hooks[0].history[-1]
    assert status["Loss/qkv_kd"] > 0 and status["Loss/disc_kd"] > 0
    checkpoint = read_checkpoint(_run(tmp_path, "student").checkpoint_path(1))
    assert checkpoint["actor_type"] == "LoReTrackActor"
    student_keys = set(build_model(cfg).state_dict())
    assert set(checkpoint["net"]) == student_keys  # the teacher is not saved
    assert checkpoint["net"]["backbone.pos_embed_x"].shape[1] == 16  # 64 px student: 4x4 search tokens


def test_student_narrower_than_teacher_trains_through_projections(tmp_path, teacher_files):
    data = make_custom_dataset(tmp_path / "data", num_sequences=3)
    cfg_path = _distill_yaml(tmp_path, data, teacher_files, epochs=1, samples=8)
    cfg = load_config(cfg_path, overrides={"MODEL.BACKBONE.EMBED_DIM": 16})
    trainer = run_training.run(cfg, "loretrack", "narrow", save_dir=tmp_path / "out", progress=False,
                               paths=get_paths(save_dir=tmp_path / "out"))
    projections = trainer.actor.distiller.projections
    assert projections["q0"].weight.shape == (32, 16, 1, 1)
    assert any(p is projections["feat"].weight for g in trainer.optimizer.param_groups for p in g["params"])
    checkpoint = read_checkpoint(_run(tmp_path, "narrow").checkpoint_path(1))
    assert "feat.weight" in checkpoint["trainer"]["modules"]["distill_projections"]
    with pytest.raises(ConfigError, match="PROJECTION: auto"):
        cfg.DISTILL.PROJECTION = "none"
        build_loretrack_distiller(cfg, build_model(cfg), torch.device("cpu"))


def test_bad_teacher_setups_fail_before_training(tmp_path, teacher_files):
    data = make_custom_dataset(tmp_path / "data", num_sequences=1)
    cfg = load_config(_distill_yaml(tmp_path, data, teacher_files))
    student = build_model(cfg)
    wrong = load_config(teacher_files[0], overrides={"TEST.SEARCH_SIZE": 128, "MODEL.BACKBONE.DEPTH": 3})
    (tmp_path / "wrong.yaml").write_text(wrong.to_yaml())
    cfg.DISTILL.TEACHER.CONFIG = str(tmp_path / "wrong.yaml")
    with pytest.raises(WeightsError, match="does not fit"):
        build_loretrack_distiller(cfg, student, torch.device("cpu"))
    ce = load_config(teacher_files[0], overrides={"MODEL.BACKBONE.TYPE": "vit_base_patch16_224_ce",
                                                  "MODEL.BACKBONE.CE_LOC": [1], "MODEL.BACKBONE.CE_KEEP_RATIO": [0.7]})
    (tmp_path / "ce.yaml").write_text(ce.to_yaml())
    cfg.DISTILL.TEACHER.CONFIG = str(tmp_path / "ce.yaml")
    with pytest.raises(ConfigError, match="candidate elimination"):
        build_loretrack_distiller(cfg, student, torch.device("cpu"))
    cfg.DISTILL.TEACHER.CONFIG = str(teacher_files[0])
    cfg.DISTILL.QKV.TEACHER_LAYERS = [5]
    with pytest.raises(ConfigError, match="TEACHER_LAYERS has block 5"):
        build_loretrack_distiller(cfg, student, torch.device("cpu"))
    cfg.DISTILL.QKV.TEACHER_LAYERS = [-1]
    cfg.DISTILL.TEACHER.CHECKPOINT = ""
    with pytest.raises(ConfigError, match="CHECKPOINT"):
        build_loretrack_distiller(cfg, student, torch.device("cpu"))


def _run(tmp_path, name: str) -> TrainingRun:
    return TrainingRun(get_paths(save_dir=tmp_path / "out"), "loretrack", name)


@pytest.mark.e2e
def test_train_cli_reports_teacher_mismatch_in_one_line(tmp_path, teacher_files):
    data = make_custom_dataset(tmp_path / "data", num_sequences=1)
    wrong = load_config(teacher_files[0], overrides={"MODEL.BACKBONE.EMBED_DIM": 48})
    (tmp_path / "wrong.yaml").write_text(wrong.to_yaml())
    cfg_path = _distill_yaml(tmp_path, data, (tmp_path / "wrong.yaml", teacher_files[1]))
    result = subprocess.run([sys.executable, str(REPO_ROOT / "tracking" / "train.py"), "--script", "loretrack",
                             "--config", str(cfg_path), "--save_dir", str(tmp_path / "out"), "--no_progress",
                             "--device", "cpu"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "does not fit this model" in result.stderr.strip().splitlines()[-1]
    assert not _run(tmp_path, "student").checkpoint_dir.exists()


@pytest.mark.e2e
@pytest.mark.slow
def test_two_process_ddp_with_teacher(tmp_path, teacher_files):
    data = make_custom_dataset(tmp_path / "data", num_sequences=3)
    cfg_path = _distill_yaml(tmp_path, data, teacher_files, epochs=1, samples=16, batch=2)
    command = [sys.executable, str(REPO_ROOT / "tracking" / "train.py"), "--script", "loretrack", "--config",
               str(cfg_path), "--save_dir", str(tmp_path / "out"), "--no_progress", "--device", "cpu", "--mode",
               "multiple", "--nproc_per_node", "2", "--master_port", str(free_port())]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(2 process(es))" in result.stderr and "teacher:" in result.stderr
    checkpoint = read_checkpoint(_run(tmp_path, "student").checkpoint_path(1))
    assert checkpoint["trainer"]["iteration"] == 4
    assert "Loss/qkv_kd" in result.stderr
