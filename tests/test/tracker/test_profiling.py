"""MAC counting: the published convention reproduces the paper numbers; the exact count adds attention."""
from __future__ import annotations

import pytest
import torch

from lib.config import load_config
from lib.models import build_model
from lib.utils.profiling import count_macs_exact, count_macs_published


@pytest.mark.parametrize("search, expected", [(256, 29.05), (192, 16.34), (128, 7.26), (96, 4.09)])
def test_loretrack_macs_match_published(search, expected):
    """LoReTrack-256/192/128/96 (ViT-B, no CE, template = search / 2): method.md §3.9."""
    cfg = load_config(overrides={"TEST.SEARCH_SIZE": search, "TEST.TEMPLATE_SIZE": search // 2})
    model = build_model(cfg).eval()
    inputs = (torch.randn(1, 3, search // 2, search // 2), torch.randn(1, 3, search, search))
    published = count_macs_published(model, *inputs) / 1e9
    exact = count_macs_exact(model, *inputs) / 1e9
    assert round(published, 2) == expected
    tokens = (search // 16) ** 2 * 5 // 4
    attention = 2 * tokens * tokens * 768 * 12 / 1e9
    assert exact == pytest.approx(published - 0.0265 * (search / 256) ** 2 + attention, abs=0.01)


def test_candidate_elimination_macs_match_ostrack():
    """OSTrack-256 CE: 21.5 G as published (21.52 with the exact token counts)."""
    cfg = load_config("vitb_256_mae_ce_32x4_ep300")
    model = build_model(cfg).eval()
    macs = count_macs_published(model, torch.randn(1, 3, 128, 128), torch.randn(1, 3, 256, 256)) / 1e9
    assert round(macs, 2) == 21.52


def test_profile_script_times_network_and_tracker(parity_dir, tmp_path, tracking_script, capsys):
    """profile_model.py on the tiny student: the network's share of each frame comes from the timed back-end."""
    import json

    from tests.model_configs import parity_student

    config, model = parity_student(tmp_path, parity_dir)
    script = tracking_script("profile_model")
    out = tmp_path / "profile.json"
    threads = torch.get_num_threads()
    try:
        code = script.main(["--config", str(config), "--threads", "1", "--warmup", "1", "--iterations", "3",
                            "--frame_size", "200x160", "--json", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    report = json.loads(out.read_text())
    assert list(report) == ["config", "opts", "backend", "template_size", "search_size", "device", "device_name",
                            "threads", "params_M", "macs_published_G", "macs_exact_G", "network_ms", "network_fps",
                            "tracker_ms", "tracker_fps", "tracker_overhead_ms", "tracker_overhead_share", "torch"]
    assert report["backend"] == "eager" and report["threads"] == 1 and report["template_size"] == 64
    assert report["network_ms"] > 0 and report["tracker_ms"] > 0
    assert 0 < report["tracker_overhead_share"] < 1
    assert "median of 3" in capsys.readouterr().out
