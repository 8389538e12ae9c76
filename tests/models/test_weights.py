"""Weight loading: official .pth.tar layout, MAE files, resolution changes, bad files."""
from __future__ import annotations

import random
import sys
import textwrap

import pytest
import torch

from lib.models import build_model, load_weights, read_checkpoint, save_checkpoint
from lib.utils.errors import WeightsError
from lib.utils.run_layout import checkpoint_name
from tests.model_configs import TINY_VIT, main_config, student_config, tiny_config


def _official_checkpoint(tmp_path, state_dict, flag_file):
    """A checkpoint pickled like OSTrack's trainer: project classes next to ``net``, plus a payload
    that would run a shell command if the loader executed pickled callables."""
    package = tmp_path / "official_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "admin.py").write_text(textwrap.dedent(f"""
        import os

        class Settings:
            def __init__(self):
                self.script_name = "ostrack"
                self.env = {{"workspace_dir": "/home/author"}}

        class AverageMeter:
            def __init__(self):
                self.avg, self.count = 0.5, 10

        class Payload:
            def __reduce__(self):
                return (os.system, ("touch {flag_file}",))
        """))
    sys.path.insert(0, str(tmp_path))
    try:
        import official_pkg.admin as admin

        checkpoint = {"epoch": 300, "actor_type": "OSTrackActor", "net_type": "OSTrack", "net": state_dict,
                      "net_info": None, "constructor": None, "optimizer": {"state": {}, "param_groups": []},
                      "stats": {"train": {"Loss/total": admin.AverageMeter()}}, "settings": admin.Settings(),
                      "payload": admin.Payload()}
        path = tmp_path / checkpoint_name(300)
        torch.save(checkpoint, path)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("official_pkg")]:
            del sys.modules[name]
    return path


def test_official_pth_tar_loads_without_executing_pickled_code(tmp_path, parity_dir):
    state = torch.load(parity_dir / "state_dict_main.pt", weights_only=True)
    flag = tmp_path / "executed"
    path = _official_checkpoint(tmp_path, state, flag)
    model = build_model(main_config()).eval()
    report = load_weights(model, path)
    assert not flag.exists(), "the loader executed code from the checkpoint"
    assert report.kind == "tracker" and not report.missing and not report.unexpected
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    checkpoint = read_checkpoint(path)
    assert checkpoint["epoch"] == 300
    assert "Settings" in repr(checkpoint["settings"])  # kept as an inert placeholder


def test_own_checkpoint_round_trip_is_official_layout(tmp_path):
    model = build_model(student_config())
    path = save_checkpoint(tmp_path / "ckpt" / checkpoint_name(2), model, epoch=2, optimizer={"x": 1})
    checkpoint = torch.load(path, weights_only=True)
    assert {"epoch", "net", "net_type", "actor_type", "optimizer"} <= set(checkpoint)
    other = build_model(student_config())
    load_weights(other, path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, other.state_dict()[key])
    assert not list(path.parent.glob(".*.tmp")), "temporary file left behind"


def _mae_state(model):
    """What an MAE pre-training file holds: ViT weights without the 'backbone.' prefix, no crop pos-embeds."""
    return {k.removeprefix("backbone."): v.clone() for k, v in model.state_dict().items()
            if k.startswith("backbone.") and "pos_embed_" not in k}


def test_mae_style_file_fills_backbone_and_derives_crop_pos_embed(tmp_path):
    source = build_model(student_config())
    mae = _mae_state(source)
    mae["decoder_embed.weight"] = torch.zeros(8, 64)  # MAE decoder weights are ignored
    path = tmp_path / "mae_pretrain_vit_tiny.pth"
    torch.save({"model": mae}, path)

    model = build_model(student_config())
    report = load_weights(model, path)
    assert report.kind == "backbone"
    assert report.unexpected == ["decoder_embed.weight"]
    assert torch.equal(model.backbone.blocks[0].attn.qkv.weight, mae["blocks.0.attn.qkv.weight"])
    expected_x = torch.nn.functional.interpolate(
        mae["pos_embed"][:, 1:].transpose(1, 2).reshape(1, 64, 14, 14), size=(8, 8), mode="bicubic",
        align_corners=False).flatten(2).transpose(1, 2)
    assert torch.equal(model.backbone.pos_embed_x, expected_x)


def test_pretrain_file_used_when_training(tmp_path, monkeypatch):
    source = build_model(student_config())
    torch.save({"model": _mae_state(source)}, tmp_path / "tiny_mae.pth")
    monkeypatch.setenv("LORETRACK_PRETRAINED_DIR", str(tmp_path))
    cfg = student_config()
    cfg.MODEL.PRETRAIN_FILE = "tiny_mae.pth"
    model = build_model(cfg, training=True)
    assert torch.equal(model.backbone.patch_embed.proj.weight, source.backbone.patch_embed.proj.weight)
    cfg.MODEL.PRETRAIN_FILE = "absent_mae.pth"
    with pytest.raises(WeightsError, match="absent_mae.pth.*LORETRACK_PRETRAINED_DIR"):
        build_model(cfg, training=True)


def test_256_checkpoint_loads_into_128_model_with_resized_pos_embed(tmp_path, caplog):
    big = build_model(tiny_config(128, 256, ce=False))
    path = save_checkpoint(tmp_path / "ostrack256.pth.tar", big, epoch=300)
    small = build_model(tiny_config(64, 128, ce=False))
    with caplog.at_level("INFO"):
        report = load_weights(small, path)
    assert report.resized == {"backbone.pos_embed_z": ((1, 64, 64), (1, 16, 64)),
                              "backbone.pos_embed_x": ((1, 256, 64), (1, 64, 64))}
    assert "resized backbone.pos_embed_x" in caplog.text
    expected = torch.nn.functional.interpolate(
        big.backbone.pos_embed_x.detach().transpose(1, 2).reshape(1, 64, 16, 16), size=(8, 8), mode="bicubic",
        align_corners=False).flatten(2).transpose(1, 2)
    torch.testing.assert_close(small.backbone.pos_embed_x.detach(), expected)
    assert torch.equal(small.box_head.conv1_ctr[0].weight, big.box_head.conv1_ctr[0].weight)
    with torch.no_grad():
        out = small.eval()(torch.randn(1, 3, 64, 64), torch.randn(1, 3, 128, 128))
    assert out["pred_boxes"].shape == (1, 1, 4)


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    wide = build_model(load_config_with(EMBED_DIM=128, NUM_HEADS=4))
    path = save_checkpoint(tmp_path / "wide.pth.tar", wide)
    with pytest.raises(WeightsError, match="does not fit this model.*shape mismatch"):
        load_weights(build_model(student_config()), path)
    deep = build_model(load_config_with(DEPTH=6))
    path = save_checkpoint(tmp_path / "deep.pth.tar", deep)
    with pytest.raises(WeightsError, match="unexpected keys"):
        load_weights(build_model(student_config()), path)
    resnet = {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 2048)}
    torch.save(resnet, tmp_path / "resnet.pth")
    with pytest.raises(WeightsError, match="another architecture"):
        load_weights(build_model(student_config()), tmp_path / "resnet.pth")


def test_missing_and_corrupt_files_are_clear_errors(tmp_path):
    model = build_model(student_config())
    with pytest.raises(WeightsError, match="not found"):
        load_weights(model, tmp_path / "nope.pth.tar")
    # Random bytes break the unpickler in many ways (IndexError for seed 2, KeyError for seed 20, ...):
    # every one of them must come out as the same clear error.
    for seed in range(40):
        (tmp_path / "garbage.pth").write_bytes(random.Random(seed).randbytes(256))
        with pytest.raises(WeightsError, match="cannot read weight file"):
            load_weights(model, tmp_path / "garbage.pth")
    good = save_checkpoint(tmp_path / "good.pth.tar", model)
    (tmp_path / "truncated.pth.tar").write_bytes(good.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="cannot read weight file"):
        load_weights(model, tmp_path / "truncated.pth.tar")


def load_config_with(**backbone):
    from lib.config import load_config

    overrides = dict(TINY_VIT)
    overrides.update({f"MODEL.BACKBONE.{k}": v for k, v in backbone.items()})
    overrides.update({"TEST.TEMPLATE_SIZE": 64, "TEST.SEARCH_SIZE": 128})
    return load_config(overrides=overrides)
