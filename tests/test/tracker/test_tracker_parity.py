"""The tracker reproduces the official per-frame boxes on the real OTB sequence Couple."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from lib.models import build_model
from lib.test.tracker import InvalidBoxError, OSTrackTracker, hann2d
from lib.utils.crop import box_to_crop, sample_target
from lib.utils.image import read_rgb
from tests.model_configs import main_config, student_config

TRACKERS = {"main_ce": (main_config(ce=True, factor=4.0), "state_dict_main.pt"),
            "student_noce": (student_config(), "state_dict_student.pt")}


@pytest.fixture(scope="module")
def tracker_fixture(parity_dir):
    return json.loads((parity_dir / "tracker.json").read_text())


def test_hann_windows(tracker_fixture):
    for size in (16, 8):
        expected = torch.tensor(tracker_fixture["hann_windows"][f"F{size}"])
        assert torch.equal(hann2d(size)[0, 0], expected)


def test_crops_match_official(parity_dir):
    crops = torch.load(parity_dir / "crops.pt", weights_only=True)
    image = crops["frame_rgb"].numpy()
    for setting in crops["settings"]:
        size = setting["crop"].shape[1]
        for i, box in enumerate(crops["box_extract_xywh"]):
            crop = sample_target(image, box.tolist(), setting["factor"], size)
            assert np.array_equal(crop.image, setting["crop"][i].numpy())
            assert np.array_equal(crop.padding_mask, setting["att_mask"][i].numpy())
            assert crop.resize_factor == setting["resize_factor"][i].item()
            assert crop.crop_size == setting["crop_sz_px"][i].item()
            gt = box_to_crop(crops["box_gt_xywh"][i], box, crop.resize_factor, size, normalize=True)
            torch.testing.assert_close(gt, setting["gt_in_crop_norm"][i], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", list(TRACKERS))
def test_tracker_boxes_match_official(name, parity_dir, shared_data, tracker_fixture):
    cfg, weights = TRACKERS[name]
    expected = tracker_fixture["trackers"][name]["sequences"]["Couple"]
    model = build_model(cfg)
    model.load_state_dict(torch.load(parity_dir / weights, weights_only=True), strict=True)
    tracker = OSTrackTracker.from_config(cfg, model=model)
    frames = [read_rgb(shared_data / "otb_mini_sequences" / f) for f in expected["frame_files"]]
    for frame, md5 in zip(frames, expected["frame_rgb_md5"], strict=True):
        assert hashlib.md5(frame.tobytes()).hexdigest() == md5, "JPEG decoding differs from the fixtures' OpenCV"
    boxes = [tracker.initialize(frames[0], {"init_bbox": expected["init_bbox"]})["target_bbox"]]
    boxes += [tracker.track(frame)["target_bbox"] for frame in frames[1:]]
    np.testing.assert_allclose(np.array(boxes), np.array(expected["boxes"]), rtol=0, atol=1e-2)


@pytest.mark.parametrize("box", [[10, 10, 0, 20], [10, 10, -5, 20], [float("nan"), 1, 2, 3], [500, 10, 20, 20],
                                 [10, 10, 20]])
def test_invalid_init_box_is_a_clear_error(box):
    cfg = student_config()
    tracker = OSTrackTracker.from_config(cfg, model=build_model(cfg))
    with pytest.raises(InvalidBoxError, match="initial box"):
        tracker.initialize(np.zeros((240, 320, 3), np.uint8), {"init_bbox": box})
