"""The network reproduces the official OSTrack/LoReTrack outputs stored in ../shared/fixtures/parity."""
from __future__ import annotations

import pytest
import torch

from lib.models import build_model, load_weights, resize_pos_embed_grid
from tests.model_configs import main_config, student_config

RTOL, ATOL = 1e-5, 1e-5
MAP_KEYS = ("pred_boxes", "score_map", "size_map", "offset_map", "backbone_feat")


def _load(parity_dir, name):
    return torch.load(parity_dir / name, weights_only=True)


def _close(actual, expected, name):
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=ATOL, msg=lambda m: f"{name}: {m}")


def _model(cfg, parity_dir, weights):
    model = build_model(cfg).eval()
    model.load_state_dict(_load(parity_dir, weights), strict=True)
    return model


@pytest.fixture(scope="module")
def inputs(parity_dir):
    return _load(parity_dir, "inputs.pt")


def test_official_key_names_and_order(parity_dir):
    for cfg, weights in ((main_config(), "state_dict_main.pt"), (student_config(), "state_dict_student.pt")):
        official = _load(parity_dir, weights)
        ours = build_model(cfg).state_dict()
        assert list(ours) == list(official), "state-dict keys differ from the official model (names or order)"
        assert all(ours[k].shape == official[k].shape for k in ours)


def test_crop_pos_embed_derived_from_pos_embed_bit_exactly(parity_dir):
    state = _load(parity_dir, "state_dict_main.pt")
    patch_pos = state["backbone.pos_embed"][:, 1:]
    assert torch.equal(resize_pos_embed_grid(patch_pos, (8, 8), (14, 14)), state["backbone.pos_embed_z"])
    assert torch.equal(resize_pos_embed_grid(patch_pos, (16, 16), (14, 14)), state["backbone.pos_embed_x"])


@pytest.mark.parametrize("run", ["keep_none", "keep_0.8", "keep_none_mask_none"])
def test_candidate_elimination_matches_official(parity_dir, inputs, run):
    expected = _load(parity_dir, "forward_main_ce.pt")[run]
    model = _model(main_config(ce=True), parity_dir, "state_dict_main.pt")
    mask = inputs["ce_template_mask"] if expected["uses_ce_template_mask"] else None
    if mask is not None:
        assert torch.equal(model.make_ce_template_mask(3, "cpu"), mask)
    with torch.no_grad():
        out = model(inputs["template"], inputs["search"], ce_template_mask=mask,
                    ce_keep_rate=expected["ce_keep_rate"])
    for key in MAP_KEYS:
        _close(out[key], expected[key], f"{run}/{key}")
    opt_feat = expected["backbone_feat"][:, 64:].transpose(1, 2).reshape(3, 64, 16, 16)
    _close(out["opt_feat"], opt_feat, f"{run}/opt_feat")
    assert len(out["removed_indexes_s"]) == len(expected["removed_indexes_s"]) == 2
    for ours, theirs in zip(out["removed_indexes_s"], expected["removed_indexes_s"], strict=True):
        assert torch.equal(ours.sort(dim=1).values, theirs.sort(dim=1).values)
    final = expected["global_index_s_final"]
    assert torch.equal(out["global_index_s"].sort(dim=1).values, final.sort(dim=1).values)
    removed = torch.cat(out["removed_indexes_s"], dim=1).to(torch.int64)
    eliminated = torch.zeros(3, 256, dtype=torch.bool).scatter_(1, removed, True)
    assert (out["opt_feat"].flatten(2).transpose(1, 2)[eliminated] == 0).all()


def test_no_candidate_elimination_matches_official_with_qkv(parity_dir, inputs):
    expected = _load(parity_dir, "forward_main_noce.pt")
    model = _model(main_config(ce=False), parity_dir, "state_dict_main.pt")
    last = expected["last_block_index"]
    with torch.no_grad():
        out = model(inputs["template"], inputs["search"], return_qkv=[last], return_block_out=[last])
    for key in MAP_KEYS + ("opt_feat",):
        _close(out[key], expected[key], key)
    for i, name in enumerate("qkv"):
        _close(out["qkv"][last][i], expected[f"last_block_{name}"], f"last_block_{name}")
    _close(out["block_out"][last], expected["last_block_out"], "last_block_out")


def test_student_matches_official_every_block(parity_dir, inputs):
    expected = _load(parity_dir, "forward_student.pt")
    model = _model(student_config(), parity_dir, "state_dict_student.pt")
    with torch.no_grad():
        out = model(inputs["student_template"], inputs["student_search"], return_qkv=True, return_block_out=True)
    for key in MAP_KEYS + ("opt_feat",):
        _close(out[key], expected[key], key)
    for block in range(4):
        for i, name in enumerate("qkv"):
            _close(out["qkv"][block][i], expected[name][block], f"block {block} {name}")
        _close(out["block_out"][block], expected["block_out"][block], f"block {block} out")


def test_student_inputs_are_plain_bilinear_resizes(inputs):
    """The LoReTrack student sees the teacher crops resized bilinearly without antialiasing."""
    for key, size in (("template", 64), ("search", 128)):
        resized = torch.nn.functional.interpolate(inputs[key], size=(size, size), mode="bilinear",
                                                  align_corners=False, antialias=False)
        _close(resized, inputs[f"student_{key}"], key)


def test_official_state_dict_loads_through_load_weights(parity_dir, tmp_path, inputs):
    path = tmp_path / "plain_state_dict.pth"
    torch.save(_load(parity_dir, "state_dict_student.pt"), path)
    model = build_model(student_config()).eval()
    report = load_weights(model, path)
    assert not report.missing and not report.unexpected and not report.resized
    expected = _load(parity_dir, "forward_student.pt")
    with torch.no_grad():
        out = model(inputs["student_template"], inputs["student_search"])
    _close(out["pred_boxes"], expected["pred_boxes"], "pred_boxes")
