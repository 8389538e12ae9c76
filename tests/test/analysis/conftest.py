"""Fixtures shared by the analysis tests."""
import pytest

from lib.test.analysis import workflow
from tests.test.analysis.test_analysis import otb_mini_sequences


@pytest.fixture
def analysis_cli(monkeypatch, shared_data, tracking_script):
    """``tracking/analysis_results.py`` in-process, reading the OTB mini sequences as dataset 'otb'."""
    module = tracking_script("analysis_results")
    sequences = otb_mini_sequences(shared_data)
    monkeypatch.setattr(workflow, "load_dataset", lambda name, paths, root, names: sequences)
    return module
