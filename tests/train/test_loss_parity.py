"""Training targets and losses reproduce the official actors' numbers (../shared/fixtures/parity)."""
from __future__ import annotations

import json

import pytest
import torch

from lib.models import build_model
from lib.train.distillation import align, disc_kd_loss, discriminative_mask, qkv_kd_loss, search_map
from lib.train.losses import box_losses, ce_keep_rate, focal_loss, gaussian_radius, generate_heatmap
from tests.model_configs import main_config, student_config

RTOL = 1e-4


@pytest.fixture(scope="module")
def fixtures(parity_dir):
    load = lambda name: torch.load(parity_dir / name, weights_only=True)  # noqa: E731
    return {"inputs": load("inputs.pt"), "ostrack": load("loss_ostrack.pt"), "loretrack": load("loss_loretrack.pt"),
            "json": json.loads((parity_dir / "losses.json").read_text()),
            "config": json.loads((parity_dir / "config.json").read_text())}


def test_keep_rate_schedule(fixtures):
    for epoch, expected in fixtures["config"]["keep_rate_schedule"].items():
        assert ce_keep_rate(int(epoch), 20, 80, 0.7) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("run, feat_size", [("main_ce", 16), ("student", 8)])
def test_heatmap_targets(fixtures, run, feat_size):
    expected = fixtures["ostrack"][run]
    boxes = fixtures["inputs"]["gt_boxes_xywh"]
    radius = gaussian_radius(boxes[:, 2:] * feat_size)
    torch.testing.assert_close(radius, expected["gaussian_radius_float"], rtol=1e-6, atol=1e-6)
    heatmap = generate_heatmap(boxes, feat_size * 16, 16)
    assert torch.equal(heatmap, expected["gt_heatmap"])


@pytest.mark.parametrize("run, fixture_key", [("main_ce", "ostrack_actor_main_ce"),
                                              ("student", "ostrack_actor_student")])
def test_task_losses(fixtures, run, fixture_key):
    expected = fixtures["ostrack"][run]
    status = fixtures["json"][fixture_key]["status"]
    boxes = fixtures["inputs"]["gt_boxes_xywh"]
    giou, l1, iou = box_losses(expected["pred_boxes"], boxes)
    focal = focal_loss(expected["score_map"], expected["gt_heatmap"].unsqueeze(1))
    torch.testing.assert_close(iou, expected["iou_per_sample"], rtol=RTOL, atol=1e-6)
    assert giou.item() == pytest.approx(status["Loss/giou"], rel=RTOL)
    assert l1.item() == pytest.approx(status["Loss/l1"], rel=RTOL)
    assert focal.item() == pytest.approx(status["Loss/location"], rel=RTOL)
    total = 2.0 * giou + 5.0 * l1 + focal
    assert total.item() == pytest.approx(status["Loss/total"], rel=RTOL)


def test_training_forward_with_keep_rate_reproduces_loss(fixtures, parity_dir):
    """The CE model run the way the training actor runs it (epoch 60 -> keep rate 0.85)."""
    inputs, expected = fixtures["inputs"], fixtures["ostrack"]["main_ce"]
    model = build_model(main_config(), training=False).eval()
    model.load_state_dict(torch.load(parity_dir / "state_dict_main.pt", weights_only=True))
    keep = ce_keep_rate(60, 20, 80, 0.7)
    with torch.no_grad():
        out = model(inputs["template"], inputs["search"], ce_template_mask=expected["ce_template_mask"],
                    ce_keep_rate=keep)
    torch.testing.assert_close(out["score_map"], expected["score_map"], rtol=1e-5, atol=1e-5)
    assert [r.shape[1] for r in out["removed_indexes_s"]] == [38, 32]  # 256 -> 218 -> 186


def test_distillation_losses(fixtures, parity_dir):
    inputs, expected = fixtures["inputs"], fixtures["loretrack"]
    status = fixtures["json"]["loretrack_actor"]["status"]
    teacher = build_model(main_config(ce=False)).eval()
    teacher.load_state_dict(torch.load(parity_dir / "state_dict_main.pt", weights_only=True))
    student = build_model(student_config()).eval()
    student.load_state_dict(torch.load(parity_dir / "state_dict_student.pt", weights_only=True))
    with torch.no_grad():
        t_out = teacher(inputs["template"], inputs["search"], return_qkv=[-1])
        s_out = student(inputs["student_template"], inputs["student_search"], return_qkv=[-1])
    for i, name in enumerate("qkv"):
        up, _ = align(search_map(s_out["qkv"][3][i], 16), search_map(t_out["qkv"][3][i], 64))
        torch.testing.assert_close(up, expected[f"student_{name}_map_up"], rtol=1e-4, atol=1e-5)
    qkv, parts = qkv_kd_loss(s_out["qkv"], t_out["qkv"], 16, 64, layer_pairs=[(3, 3)])
    for name in "qkv":
        assert parts[f"{name}3"] == pytest.approx(expected[f"kl_{name}"].item(), rel=RTOL)
    assert qkv.item() == pytest.approx(status["Loss/qkv_11"], rel=RTOL)
    mask = discriminative_mask(t_out["opt_feat"])
    assert torch.equal(mask.flatten(1), expected["disc_mask"])
    disc, parts = disc_kd_loss(s_out["opt_feat"], t_out["opt_feat"])
    assert parts["disc_in"] == pytest.approx(expected["disc_kl_masked"].item(), rel=RTOL)
    assert parts["disc_out"] == pytest.approx(expected["disc_kl_complement"].item(), rel=RTOL)
    assert disc.item() == pytest.approx(status["Loss/kd"], rel=RTOL)
    giou, l1, _ = box_losses(s_out["pred_boxes"], inputs["gt_boxes_xywh"])
    focal = focal_loss(s_out["score_map"], generate_heatmap(inputs["gt_boxes_xywh"], 128, 16).unsqueeze(1))
    total = 2 * giou + 5 * l1 + focal + 0.01 * disc + 0.01 * qkv
    assert total.item() == pytest.approx(status["Loss/total"], rel=RTOL)


def test_gt_box_mask_marks_cells_inside_the_box():
    from lib.train.distillation import box_mask

    mask = box_mask(torch.tensor([[0.25, 0.5, 0.5, 0.25]]), (4, 4))[0, 0]
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[2, 1:3] = True  # cell centres 0.375/0.625 in x, 0.625 in y lie inside x 0.25-0.75, y 0.5-0.75
    assert torch.equal(mask, expected)
