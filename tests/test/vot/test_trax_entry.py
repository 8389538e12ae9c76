"""The TraX entry (tracking/vot_tracker.py) driven by a TraX client, as the VOT toolkit drives it."""
from __future__ import annotations

import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest

from lib.models import build_model
from lib.test.vot.trax_server import TraxRequestError, polygon_to_box, region_to_box
from lib.test.vot.workspace import INITIALIZATION, read_trajectory, trackers_ini_entry, trajectory_boxes
from lib.utils.paths import REPO_ROOT
from lib.utils.synthetic import moving_square_clip
from tests.model_configs import student_config
from tests.test.vot.vot_fixtures import TRAX_TOLERANCE_PX, direct_boxes, save_tiny_tracker

ENTRY = REPO_ROOT / "tracking" / "vot_tracker.py"


def test_polygon_becomes_its_axis_aligned_bounding_box():
    rotated = [(10.0, 30.0), (40.0, 10.0), (60.0, 40.0), (30.0, 60.0)]
    assert polygon_to_box(rotated) == [10.0, 10.0, 50.0, 50.0]
    assert polygon_to_box([10, 30, 40, 10, 60, 40]) == [10.0, 10.0, 50.0, 30.0]  # flat x,y list too
    with pytest.raises(TraxRequestError, match="at least 3 points"):
        polygon_to_box([(1.0, 2.0), (3.0, 4.0)])


def test_trax_regions_to_boxes():
    from trax.region import Polygon, Rectangle

    assert region_to_box(Rectangle.create(1.5, 2.0, 30.0, 40.25)) == [1.5, 2.0, 30.0, 40.25]
    assert region_to_box(Polygon.create([(10.0, 30.0), (40.0, 10.0), (60.0, 40.0), (30.0, 60.0)])) == \
        [10.0, 10.0, 50.0, 50.0]


def test_read_trajectory_text_and_binary(tmp_path):
    """Both files the toolkit writes: text, and its binary format (version 1: count, then typed regions)."""
    text = tmp_path / "seq_001.txt"
    text.write_text("1\n10.5,20,30,40\n1,2,5,2,5,8,1,8\n0\n")
    binary = tmp_path / "seq_001.bin"
    binary.write_bytes(struct.pack("<hI", 1, 4) + struct.pack("<BI", 0, 1) + struct.pack("<Bffff", 1, 10.5, 20, 30, 40)
                       + struct.pack("<BH8f", 2, 4, 1, 2, 5, 2, 5, 8, 1, 8) + struct.pack("<BI", 0, 0))
    for path in (text, binary):
        regions = read_trajectory(path)
        assert regions == [INITIALIZATION, [10.5, 20.0, 30.0, 40.0], [1.0, 2.0, 5.0, 2.0, 5.0, 8.0, 1.0, 8.0], 0]
        boxes = trajectory_boxes(regions)
        assert np.isnan(boxes[0]).all() and np.isnan(boxes[3]).all()
        np.testing.assert_array_equal(boxes[1:3], [[10.5, 20, 30, 40], [1, 2, 4, 6]])


def test_trackers_ini_entry_runs_the_entry_with_this_python():
    entry = trackers_ini_entry("LoReTrack128", "loretrack_128", "/w/ck.pth.tar", script="loretrack",
                               backend="onnx", label="LoReTrack-128")
    assert entry.splitlines() == [
        "[LoReTrack128]", "label = LoReTrack-128", "protocol = trax",
        f"command = {sys.executable} {ENTRY} --script loretrack --config loretrack_128 --checkpoint /w/ck.pth.tar "
        "--backend onnx", "timeout = 120"]


@pytest.fixture(scope="module")
def tiny_tracker(tmp_path_factory):
    """A tiny random 64/128 student saved as config + checkpoint, and 8 frames of a moving square."""
    folder = tmp_path_factory.mktemp("trax")
    cfg = student_config()
    config, checkpoint = save_tiny_tracker(folder, build_model(cfg), cfg.to_yaml())
    frames, boxes = moving_square_clip(8, size=(120, 160), target=24, seed=3)
    paths = []
    for index, frame in enumerate(frames):
        paths.append(folder / f"{index:04d}.png")  # lossless: the entry reads back the very pixels
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return config, checkpoint, frames, paths, boxes


@pytest.mark.e2e
def test_trax_session_repeated_initialize_and_polygon(tiny_tracker):
    """One process: a rectangle run, then a re-initialisation with a polygon whose bounding box is the same
    rectangle. Both runs give our tracker's own boxes (a re-initialisation starts afresh)."""
    from trax.client import Client
    from trax.image import FileImage
    from trax.region import Polygon, Rectangle

    config, checkpoint, frames, paths, gt = tiny_tracker
    x, y, w, h = (float(v) for v in gt[0])
    diamond = [(x, y + h / 2), (x + w / 2, y), (x + w, y + h / 2), (x + w / 2, y + h)]
    process = subprocess.Popen([sys.executable, str(ENTRY), "--config", str(config), "--checkpoint", str(checkpoint),
                                "--threads", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    try:
        protocol_log: list[str] = []  # the client needs a logger; it gets the raw TraX lines
        client = Client(stream=(process.stdin.fileno(), process.stdout.fileno()), timeout=120,
                        log=protocol_log.append)
        assert client.region_formats == ["rectangle", "polygon"] and client.image_formats == ["path"]
        runs = []
        for region in (Rectangle.create(x, y, w, h), Polygon.create(diamond)):
            status, _ = client.initialize({"color": FileImage.create(str(paths[0]))}, [(region, {})], {})
            boxes = [status[0][0].bounds()]
            for path in paths[1:]:
                status, _ = client.frame({"color": FileImage.create(str(path))}, {}, [])
                assert status[0][0].type == "rectangle"
                boxes.append(status[0][0].bounds())
            runs.append(np.asarray(boxes))
        client.quit()
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    expected = direct_boxes(config, checkpoint, frames, [x, y, w, h])
    assert np.abs(expected[1:] - expected[0]).max() > 1.0, "the tracker did not move: the check would be empty"
    for boxes in runs:
        np.testing.assert_allclose(boxes, expected, rtol=0, atol=TRAX_TOLERANCE_PX)


@pytest.mark.e2e
def test_bad_config_is_one_line_error_before_the_handshake(tmp_path):
    result = subprocess.run([sys.executable, str(ENTRY), "--config", str(tmp_path / "missing.yaml"), "--checkpoint",
                             str(tmp_path / "missing.pth")], capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert result.stdout == ""  # stdout is the TraX channel
    assert result.stderr.startswith("error: ") and "missing.yaml" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
