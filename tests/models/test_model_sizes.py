"""Crop sizes belong to the built model: read from the config once per mode, asked of the model everywhere else."""
from __future__ import annotations

import ast

import numpy as np
import pytest
import torch

from lib.models import build_model
from lib.test.tracker import OSTrackTracker
from lib.utils.paths import REPO_ROOT
from tests.model_configs import student_config, tiny_config

# The one read of each crop size per mode: TEST for tracking and export, DATA for training.
SIZE_READS = {("TEST", "TEMPLATE"): ["lib/models/ostrack.py:crop_sizes"],
              ("TEST", "SEARCH"): ["lib/models/ostrack.py:crop_sizes"],
              ("DATA", "TEMPLATE"): ["lib/models/ostrack.py:crop_sizes"],
              ("DATA", "SEARCH"): ["lib/models/ostrack.py:crop_sizes"]}


def test_builder_sizes_per_mode_and_example_inputs():
    cfg = tiny_config(64, 128, ce=False)
    cfg.DATA.TEMPLATE.SIZE, cfg.DATA.SEARCH.SIZE = 32, 64
    train, test = build_model(cfg, training=True), build_model(cfg, training=False).eval()
    assert (train.template_size, train.search_size) == (32, 64)
    assert (test.template_size, test.search_size) == (64, 128)

    template, search, mask = test.example_inputs(batch=2, dtype=torch.bfloat16)
    assert template.shape == (2, 3, 64, 64) and search.shape == (2, 3, 128, 128) and mask is None
    assert template.dtype == torch.bfloat16 and not template.any()
    with torch.no_grad():
        assert test(*test.example_inputs())["score_map"].shape == (1, 1, 8, 8)

    # seeded draws are the ones the ONNX export check and the speed benchmark always used
    drawn = test.example_inputs(generator=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(1)
    assert torch.equal(drawn.template, torch.randn(1, 3, 64, 64, generator=gen))
    assert torch.equal(drawn.search, torch.randn(1, 3, 128, 128, generator=gen))


@pytest.mark.parametrize("template_range, selected", [("CTR_POINT", 1), ("GT_BOX", 4)])
def test_example_inputs_carry_the_ce_mask_the_tracker_passes(template_range, selected):
    cfg = tiny_config(64, 128, ce=True)
    cfg.MODEL.BACKBONE.CE_TEMPLATE_RANGE = template_range
    model = build_model(cfg).eval()
    inputs = model.example_inputs(batch=3)
    assert inputs.ce_template_mask.shape == (3, 16) and inputs.ce_template_mask.dtype == torch.bool
    assert inputs.ce_template_mask.sum(dim=1).tolist() == [selected] * 3
    with torch.no_grad():
        assert model(*inputs)["pred_boxes"].shape == (3, 1, 4)


def test_tracker_crops_at_the_sizes_of_the_model_it_runs():
    """A model built at other sizes than the config's (a 32/64 student with a 64/128 config) is tracked at its
    own sizes; the crop factors still come from the config's TEST section."""
    cfg = student_config()
    model = build_model(tiny_config(32, 64, ce=False))
    tracker = OSTrackTracker.from_config(cfg, model=model)
    assert (tracker.template_size, tracker.search_size) == (32, 64)
    assert (tracker.template_factor, tracker.search_factor) == (cfg.TEST.TEMPLATE_FACTOR, cfg.TEST.SEARCH_FACTOR)
    frame = np.full((120, 160, 3), 90, dtype=np.uint8)
    frame[50:70, 60:90] = 200
    tracker.initialize(frame, {"init_bbox": [60, 50, 30, 20]})
    assert tracker.template.shape == (1, 3, 32, 32)
    box = tracker.track(frame)["target_bbox"]
    assert len(box) == 4 and all(np.isfinite(box))


class _SizeReads(ast.NodeVisitor):
    """Every config crop-size read in a module as ((mode, crop), qualified function): ``*.TEMPLATE_SIZE`` and
    ``*.SEARCH_SIZE`` read the TEST section, ``*.TEMPLATE.SIZE`` and ``*.SEARCH.SIZE`` the DATA section."""

    def __init__(self) -> None:
        self.scope: list[str] = []
        self.reads: list[tuple[tuple[str, str], str]] = []

    def _visit_scope(self, node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _visit_scope

    def visit_Attribute(self, node: ast.Attribute) -> None:
        crop = node.attr.removesuffix("_SIZE")
        if node.attr in ("TEMPLATE_SIZE", "SEARCH_SIZE"):
            self.reads.append((("TEST", crop), ".".join(self.scope)))
        elif node.attr == "SIZE" and isinstance(node.value, ast.Attribute) and node.value.attr in ("TEMPLATE",
                                                                                                      "SEARCH"):
            self.reads.append((("DATA", node.value.attr), ".".join(self.scope)))
        self.generic_visit(node)


def test_crop_sizes_are_read_from_the_config_in_one_place_per_mode():
    """Everything else (tracker, back-ends, actor, teacher crops, profilers, benchmarks) asks the built model."""
    found: dict[tuple[str, str], list[str]] = {key: [] for key in SIZE_READS}
    for folder in ("lib", "tracking"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            reads = _SizeReads()
            reads.visit(ast.parse(path.read_text(), filename=str(path)))
            for key, function in reads.reads:
                where = f"{path.relative_to(REPO_ROOT).as_posix()}:{function}"
                found[key].append(where)
    assert found == SIZE_READS
