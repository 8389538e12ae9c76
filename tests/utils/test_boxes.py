"""The box module: torch conversions and IoUs are torchvision's bit for bit (torchvision itself is not imported by
lib: see lib/utils/boxes.py), the analysis IoU keeps pytracking's formula, and the module loads without torch."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from lib.utils.boxes import (
    box_cxcywh_to_xyxy,
    box_xywh_to_xyxy,
    generalized_iou,
    paired_iou,
    pytracking_box_iou,
)
from lib.utils.paths import REPO_ROOT

tv_ops = pytest.importorskip("torchvision.ops")


def random_xywh(rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    boxes = rng.uniform(0.0, 500.0, (rows, 4))
    boxes[:, 2:] = rng.uniform(0.5, 200.0, (rows, 2))
    return boxes


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_conversions_match_torchvision_box_convert(dtype):
    boxes = torch.from_numpy(random_xywh(1000, 0)).to(dtype)
    assert torch.equal(box_cxcywh_to_xyxy(boxes), tv_ops.box_convert(boxes, "cxcywh", "xyxy"))
    assert torch.equal(box_xywh_to_xyxy(boxes), tv_ops.box_convert(boxes, "xywh", "xyxy"))


def test_paired_iou_and_giou_are_the_diagonal_of_torchvisions_all_pairs():
    first = box_xywh_to_xyxy(torch.from_numpy(random_xywh(500, 1)).float() / 500)
    second = box_xywh_to_xyxy(torch.from_numpy(random_xywh(500, 2)).float() / 500)
    second[::3] = first[::3] + 0.01  # overlapping pairs too, not only far-apart ones
    iou, _ = paired_iou(first, second)
    giou, giou_iou = generalized_iou(first, second)
    assert torch.equal(iou, tv_ops.box_iou(first, second).diagonal())
    assert torch.equal(giou, tv_ops.generalized_box_iou(first, second).diagonal())
    assert torch.equal(giou_iou, iou)


def test_pytracking_iou_is_the_continuous_iou_but_not_bit_for_bit():
    """Why the toolkit formula is kept rather than a generic IoU: the last bit differs on some pairs."""
    first, second = random_xywh(100_000, 3), random_xywh(100_000, 4)
    second[::2] = first[::2] + np.random.default_rng(5).normal(0.0, 5.0, first[::2].shape)
    second[:, 2:] = np.abs(second[:, 2:])
    right = np.minimum(first[:, :2] + first[:, 2:], second[:, :2] + second[:, 2:])
    size = np.clip(right - np.maximum(first[:, :2], second[:, :2]), 0.0, None)
    inter = size[:, 0] * size[:, 1]
    generic = inter / (first[:, 2] * first[:, 3] + second[:, 2] * second[:, 3] - inter)
    toolkit = pytracking_box_iou(first, second)
    np.testing.assert_allclose(toolkit, generic, rtol=0, atol=1e-15)
    assert (toolkit != generic).any()


def test_box_module_and_evaluation_readers_load_without_torch():
    code = ("import sys; import lib.utils.boxes, lib.test.evaluation.datasets, lib.test.analysis.analysis; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT).returncode == 0
