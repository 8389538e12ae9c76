"""Path settings: flags > environment > settings file > defaults; missing data names the setting."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from lib.utils.errors import SettingsError
from lib.utils.paths import REPO_ROOT, get_paths

SCRIPT = REPO_ROOT / "tracking" / "create_default_local_file.py"


def test_defaults_are_inside_the_repository():
    paths = get_paths()
    assert paths.data_dir == REPO_ROOT / "data" and paths.save_dir == REPO_ROOT / "output"
    assert paths.pretrained_dir == REPO_ROOT / "pretrained_models"
    assert paths.dataset_dir("lasot", must_exist=False) == REPO_ROOT / "data" / "lasot"


@pytest.mark.e2e
def test_settings_file_written_by_the_script_is_used(tmp_path, monkeypatch):
    settings = tmp_path / "local_settings.yaml"
    monkeypatch.setenv("LORETRACK_SETTINGS", str(settings))
    result = subprocess.run([sys.executable, str(SCRIPT), "--workspace_dir", str(tmp_path), "--data_dir",
                             str(tmp_path / "d"), "--save_dir", str(tmp_path / "o")],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(settings.read_text())["data_dir"] == str(tmp_path / "d")
    paths = get_paths()
    assert paths.data_dir == tmp_path / "d" and paths.save_dir == tmp_path / "o"
    assert paths.pretrained_dir == tmp_path / "pretrained_models"


def test_environment_beats_file_and_flags_beat_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LORETRACK_DATA_DIR", str(tmp_path / "env_data"))
    monkeypatch.setenv("LORETRACK_LASOT_DIR", str(tmp_path / "LaSOTBenchmark"))
    paths = get_paths()
    assert paths.data_dir == tmp_path / "env_data"
    assert paths.dataset_dir("lasot", must_exist=False) == tmp_path / "LaSOTBenchmark"
    assert paths.dataset_dir("got10k", must_exist=False) == tmp_path / "env_data" / "got10k"
    assert get_paths(data_dir=tmp_path / "flag").data_dir == tmp_path / "flag"


def test_missing_dataset_names_the_setting(tmp_path):
    paths = get_paths(data_dir=tmp_path)
    with pytest.raises(SettingsError, match="dataset 'uav' not found at .*LORETRACK_UAV_DIR"):
        paths.dataset_dir("uav")
    (tmp_path / "uav").mkdir()
    assert paths.dataset_dir("uav") == tmp_path / "uav"


def test_bad_settings_file_is_a_clear_error(tmp_path, monkeypatch):
    settings = tmp_path / "local_settings.yaml"
    monkeypatch.setenv("LORETRACK_SETTINGS", str(settings))
    settings.write_text("data_dri: /x\n")
    with pytest.raises(SettingsError, match="unknown setting"):
        get_paths()
    settings.write_text("datasets: {lasott: /x}\n")
    with pytest.raises(SettingsError, match="unknown dataset"):
        get_paths()


@pytest.mark.e2e
def test_script_error_is_one_line_and_exit_code_2(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--workspace_dir", str(tmp_path / "missing")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "is not a folder" in result.stderr
