"""Fixtures of the tracker tests: one torch thread, the parity student, the real OTB sequence Couple, and a
private output root (so that ``auto``'s choice cache never lands in the checkout)."""
from __future__ import annotations

import pytest
import torch

from lib.models import build_model
from tests.model_configs import student_config


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread per test, restored afterwards (ONNX back-ends also set one for the process).

    The networks here are tiny, and with two OpenMP threads on a machine shared with other jobs torch
    became up to 50x slower (each barrier waits for a descheduled thread): one thread keeps the tests
    fast under load.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _private_save_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LORETRACK_SAVE_DIR", str(tmp_path_factory.mktemp("save_dir")))


@pytest.fixture(scope="module")
def student(parity_dir):
    cfg = student_config()
    model = build_model(cfg)
    model.load_state_dict(torch.load(parity_dir / "state_dict_student.pt", weights_only=True))
    return cfg, model.eval()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx_cache")


@pytest.fixture(scope="session")
def couple(shared_data):
    from lib.test.evaluation.datasets import get_dataset
    from lib.utils.image import read_rgb

    seq = get_dataset("otb", root=shared_data / "otb_mini_sequences", sequences=["Couple"])[0]
    return [read_rgb(f) for f in seq.frames], seq.init_bbox, seq.ground_truth_rect
