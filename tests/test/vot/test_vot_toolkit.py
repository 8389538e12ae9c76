"""The VOT toolkit end to end: `vot evaluate` on a local workspace of a real OTB sequence runs our TraX entry,
and the trajectory it records is our tracker's own, box for box.

The toolkit lives in its own environment (`bash install.sh --tools vot`, which .ci/run builds). Without it the
test is skipped on a developer's machine and FAILS in CI (CI=true), so CI never passes without running it.
"""
from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from lib.test.vot import workspace as vot
from lib.utils.errors import UserError
from lib.utils.image import read_rgb
from tests.model_configs import parity_student
from tests.test.vot.vot_fixtures import TRAX_TOLERANCE_PX, direct_boxes, save_tiny_tracker

SEQUENCE = "Crossing"  # 120 frames, 360x240


def vot_executable():
    try:
        return vot.vot_command()
    except UserError as err:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{err} (.ci/run builds it: in CI this test must run, not skip)")
        pytest.skip(str(err))


@pytest.mark.slow
@pytest.mark.e2e
def test_vot_evaluate_records_our_trackers_boxes(shared_data, parity_dir, tmp_path):
    executable = vot_executable()
    from lib.test.evaluation.datasets import get_dataset

    sequence = get_dataset("otb", root=shared_data / "otb_mini_sequences", sequences=[SEQUENCE])[0]
    folder = tmp_path / "tracker"
    folder.mkdir()
    student_yaml, model = parity_student(folder, parity_dir)
    config, checkpoint = save_tiny_tracker(folder, model, student_yaml.read_text())
    workspace = vot.write_workspace(tmp_path / "workspace",
                                    {SEQUENCE: (sequence.frames, sequence.ground_truth_rect)},
                                    vot.trackers_ini_entry("LoReTrackTiny", str(config), str(checkpoint),
                                                           extra_args=["--threads", "1"]))

    result = subprocess.run([str(executable), "evaluate", "--workspace", str(workspace), "LoReTrackTiny"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Evaluation concluded" in output, output  # the toolkit exits 0 after a tracker error too

    recorded = vot.read_trajectory(vot.result_file(workspace, "LoReTrackTiny", SEQUENCE))
    assert len(recorded) == len(sequence.frames) == 120
    assert recorded[0] == vot.INITIALIZATION
    assert all(isinstance(region, list) and len(region) == 4 for region in recorded[1:])
    ours = direct_boxes(config, checkpoint, [read_rgb(f) for f in sequence.frames], sequence.init_bbox)
    np.testing.assert_allclose(vot.trajectory_boxes(recorded)[1:], ours[1:], rtol=0, atol=TRAX_TOLERANCE_PX)
