"""The config schema: official YAML files load unchanged, mistakes are errors naming key and file."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lib.config import load_config
from lib.models import build_model
from lib.utils.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
OFFICIAL_NAMES = ["vitb_256_mae_32x4_ep300", "vitb_256_mae_ce_32x4_ep300", "vitb_256_mae_ce_32x4_got10k_ep100",
                  "vitb_384_mae_32x4_ep300", "vitb_384_mae_ce_32x4_ep300", "vitb_384_mae_ce_32x4_got10k_ep100"]


@pytest.mark.parametrize("name", OFFICIAL_NAMES)
def test_official_experiments_load_by_name(name):
    cfg = load_config(name, script="ostrack")
    size = int(name.split("_")[1])
    assert cfg.DATA.SEARCH.SIZE == cfg.TEST.SEARCH_SIZE == size
    assert cfg.DATA.TEMPLATE.SIZE == size // 2
    assert cfg.MODEL.BACKBONE.EMBED_DIM == 768 and cfg.MODEL.BACKBONE.DEPTH == 12
    assert ("_ce_" in name) == cfg.MODEL.BACKBONE.TYPE.endswith("_ce")
    if "_ce_" in name:
        assert cfg.MODEL.BACKBONE.CE_LOC == [3, 6, 9] and cfg.MODEL.BACKBONE.CE_TEMPLATE_RANGE == "CTR_POINT"
    assert cfg.TRAIN.CE_WARM_EPOCH == (50 if "got10k" in name else 80)


def test_official_yaml_style_with_comments_and_python_booleans(tmp_path):
    path = tmp_path / "official.yaml"
    path.write_text(textwrap.dedent("""\
        MODEL:
          PRETRAIN_FILE: "mae_pretrain_vit_base.pth"
          EXTRA_MERGER: False
          BACKBONE:
            TYPE: vit_base_patch16_224_ce
            CE_LOC: [3, 6, 9]
            CE_KEEP_RATIO: [0.7, 0.7, 0.7]
            CE_TEMPLATE_RANGE: 'CTR_POINT'  # choose between ALL, CTR_POINT, CTR_REC, GT_BOX
        TRAIN:
          LR: 0.0004
          CE_WARM_EPOCH: 50  # candidate elimination warm up epoch
        TEST:
          SEARCH_SIZE: 256
          TEMPLATE_SIZE: 128
        """))
    cfg = load_config(path)
    assert cfg.MODEL.EXTRA_MERGER is False and cfg.TRAIN.LR == 0.0004
    assert cfg.DATA.SEARCH.SIZE == 320  # untouched keys keep their defaults


def test_overrides_in_three_forms():
    dotted = load_config("vitb_256_mae_32x4_ep300", {"MODEL.BACKBONE.DEPTH": 4, "TRAIN.LR": 1})
    nested = load_config("vitb_256_mae_32x4_ep300", {"MODEL": {"BACKBONE": {"DEPTH": 4}}})
    cli = load_config("vitb_256_mae_32x4_ep300", ["MODEL.BACKBONE.DEPTH=4", "TRAIN.LR=1e-3"])
    assert dotted.MODEL.BACKBONE.DEPTH == nested.MODEL.BACKBONE.DEPTH == cli.MODEL.BACKBONE.DEPTH == 4
    assert isinstance(dotted.TRAIN.LR, float) and cli.TRAIN.LR == 1e-3


def _write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_unknown_key_names_key_and_file(tmp_path):
    path = _write(tmp_path, "MODEL:\n  BACKBONE:\n    TPYE: vit_base_patch16_224\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml: unknown key 'MODEL\.BACKBONE\.TPYE'"):
        load_config(path)
    with pytest.raises(ConfigError, match="unknown key 'FOO'"):
        load_config(overrides={"FOO": 1})


def test_wrong_type_names_key_and_file(tmp_path):
    path = _write(tmp_path, "TRAIN:\n  EPOCH: three hundred\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml: key 'TRAIN\.EPOCH' must be int"):
        load_config(path)
    path = _write(tmp_path, "TRAIN:\n  AMP: 1\n")
    with pytest.raises(ConfigError, match="'TRAIN.AMP' must be bool"):
        load_config(path)
    path = _write(tmp_path, "MODEL: 3\n")
    with pytest.raises(ConfigError, match="'MODEL' is a section"):
        load_config(path)


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = _write(tmp_path, "MODEL:\n  BACKBONE: [1, 2\nTRAIN:\n  LR: 1\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml: malformed YAML at line \d+"):
        load_config(path)


def test_missing_config_is_clear():
    with pytest.raises(ConfigError, match="config 'no_such_config' not found"):
        load_config("no_such_config")


def test_cross_key_checks():
    with pytest.raises(ConfigError, match="CE_LOC .* same length"):
        load_config(overrides={"MODEL.BACKBONE.CE_LOC": [3, 6], "MODEL.BACKBONE.CE_KEEP_RATIO": [0.7]})
    with pytest.raises(ConfigError, match="multiple of the patch size"):
        load_config(overrides={"TEST.SEARCH_SIZE": 250})


@pytest.mark.parametrize("search, expected_params", [(256, 92.52), (384, 92.83)])
def test_vit_b_parameter_count(search, expected_params):
    """ViT-B/16 + CENTER head: 92.12 M module parameters plus the positional tables (method.md §1.7)."""
    cfg = load_config(overrides={"TEST.SEARCH_SIZE": search, "TEST.TEMPLATE_SIZE": search // 2})
    model = build_model(cfg)
    total = sum(p.numel() for p in model.parameters()) / 1e6
    standalone = sum(p.numel() for n, p in model.named_parameters() if "pos_embed" in n or "cls_token" in n) / 1e6
    assert round(total, 2) == expected_params
    assert round(total - standalone, 2) == 92.12


def test_a_config_inherits_its_base_and_states_only_what_differs(tmp_path):
    (tmp_path / "bases").mkdir()
    (tmp_path / "bases" / "base.yaml").write_text("TRAIN: {LR: 0.002, EPOCH: 7}\nDATA:\n  SEARCH: {SIZE: 256}\n")
    (tmp_path / "middle.yaml").write_text("_BASE_: bases/base.yaml\nTRAIN: {EPOCH: 9}\n")
    (tmp_path / "child.yaml").write_text("_BASE_: middle.yaml\nDATA:\n  SEARCH: {SIZE: 128}\n")
    cfg = load_config(tmp_path / "child.yaml", overrides=["TRAIN.LR=0.003"])
    assert (cfg.TRAIN.EPOCH, cfg.DATA.SEARCH.SIZE, cfg.TRAIN.LR) == (9, 128, 0.003)
    assert cfg.DATA.SEARCH.FACTOR == 5.0  # untouched keys keep the defaults
    assert "_BASE_" not in cfg


def test_released_loretrack_configs_differ_from_their_base_only_in_sizes():
    base = load_config("loretrack_256", script="loretrack").to_dict()
    for size in (192, 128, 96):
        cfg = load_config(f"loretrack_{size}", script="loretrack")
        assert (cfg.DATA.SEARCH.SIZE, cfg.DATA.TEMPLATE.SIZE) == (size, size // 2)
        assert (cfg.TEST.SEARCH_SIZE, cfg.TEST.TEMPLATE_SIZE) == (None, None)  # stated once: tested at DATA sizes
        model = build_model(cfg)
        assert (model.search_size, model.template_size) == (size, size // 2)
        cfg.DATA.SEARCH.SIZE, cfg.DATA.TEMPLATE.SIZE = 256, 128
        assert cfg.to_dict() == base


def test_base_mistakes_are_errors_naming_the_file(tmp_path):
    (tmp_path / "a.yaml").write_text("_BASE_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_BASE_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("_BASE_: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: its _BASE_ file .*missing\.yaml does not exist"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "e.yaml").write_text("TRAIN: {LR: 0.1}\n")
    (tmp_path / "d.yaml").write_text("_BASE_: e.yaml\nTRAIN: {LRR: 1}\n")
    with pytest.raises(ConfigError, match=r"d\.yaml: unknown key 'TRAIN\.LRR'"):
        load_config(tmp_path / "d.yaml")


def test_test_sizes_may_be_null_but_keep_their_type(tmp_path):
    (tmp_path / "a.yaml").write_text("TEST: {SEARCH_SIZE: null}\n")
    assert load_config(tmp_path / "a.yaml", overrides=["TEST.SEARCH_SIZE=64"]).TEST.SEARCH_SIZE == 64
    with pytest.raises(ConfigError, match=r"TEST\.SEARCH_SIZE' must be int"):
        load_config(tmp_path / "a.yaml", overrides=["TEST.SEARCH_SIZE=big"])
    with pytest.raises(ConfigError, match=r"key 'TRAIN\.EPOCH' must be int"):
        load_config(overrides={"TRAIN.EPOCH": None})


@pytest.mark.parametrize(("override", "message"), [
    ("TRAIN.BATCH_SIZE=0", r"'TRAIN\.BATCH_SIZE' must be at least 1, got 0"),
    ("TRAIN.LR=-0.5", r"'TRAIN\.LR' must be above 0, got -0\.5"),
    ("TRAIN.LR=.nan", r"'TRAIN\.LR' must be a finite number"),
    ("TRAIN.LR=.inf", r"'TRAIN\.LR' must be a finite number"),
    ("TRAIN.NUM_WORKER=-1", r"'TRAIN\.NUM_WORKER' must be at least 0, got -1"),
    ("TRAIN.EPOCH=0", r"'TRAIN\.EPOCH' must be at least 1, got 0"),
    ("TRAIN.DROP_PATH_RATE=1.5", r"'TRAIN\.DROP_PATH_RATE' must be at least 0 and at most 1, got 1\.5"),
    ("DATA.TRAIN.DATASETS_RATIO=[0, 0, 0, 0]", r"DATASETS_RATIO \[0, 0, 0, 0\] must have a positive sum"),
    ("DATA.TRAIN.DATASETS_RATIO=[1]", r"DATA\.TRAIN\.DATASETS_RATIO has 1 entries for 4 datasets"),
    ("DATA.TRAIN.DATASETS_RATIO=[1, 1, 1, -1]", r"'DATA\.TRAIN\.DATASETS_RATIO' must be at least 0"),
    ("DATA.STD=[0.2, 0.0, 0.2]", r"'DATA\.STD' must be above 0"),
    ("MODEL.BACKBONE.CE_KEEP_RATIO=[0.7, 0.0, 0.7]", r"'MODEL\.BACKBONE\.CE_KEEP_RATIO' must be above 0 and at most 1"),
    ("DISTILL.TEMPERATURE=0", r"'DISTILL\.TEMPERATURE' must be above 0"),
    ("TEST.SEARCH_FACTOR=0", r"'TEST\.SEARCH_FACTOR' must be above 0"),
])
def test_values_that_parse_but_make_no_sense_are_errors_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("vitb_256_mae_ce_32x4_ep300", script="ostrack", overrides=[override])


def test_every_shipped_config_is_within_range():
    for path in sorted((REPO / "experiments").glob("*/*.yaml")):
        load_config(path)
