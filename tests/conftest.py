"""Test-wide settings: offline, quiet, thread-safe; the shared reference material as a fixture."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # must precede any timm / huggingface_hub import
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("MPLBACKEND", "Agg")

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def _shared_dir() -> Path:
    env = os.environ.get("LORETRACK_SHARED_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the checkout (reference docs, real benchmark data, parity fixtures)."""
    path = _shared_dir()
    if not path.is_dir():
        pytest.skip(f"reference material not found at {path} (set LORETRACK_SHARED_DIR to run these tests)")
    return path


@pytest.fixture(scope="session")
def shared_data(shared_dir: Path) -> Path:
    return shared_dir / "data"


@pytest.fixture(scope="session")
def parity_dir(shared_dir: Path) -> Path:
    path = shared_dir / "fixtures" / "parity"
    if not path.is_dir():
        pytest.skip(f"parity fixtures not found at {path}")
    return path


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, monkeypatch):
    """Tests never read the developer's local_settings.yaml or LORETRACK_* path variables."""
    for key in list(os.environ):
        if key.startswith("LORETRACK_") and key != "LORETRACK_SHARED_DIR":
            monkeypatch.delenv(key)
    monkeypatch.setenv("LORETRACK_SETTINGS", str(tmp_path_factory.getbasetemp() / "no_local_settings.yaml"))


@pytest.fixture(scope="session")
def _default_torch_threads() -> int:
    import torch

    return torch.get_num_threads()


@pytest.fixture(autouse=True)
def _torch_threads_restored(_default_torch_threads: int) -> Iterator[None]:
    """Every test starts with torch's default thread count: the ONNX and OpenVINO back-ends leave torch one thread
    for the tracker's small tensor work, and a training run compared bit for bit with a subprocess's (which starts
    with the default) must use the same count."""
    import torch

    torch.set_num_threads(_default_torch_threads)
    yield


SHARED_FIXTURES = {"shared_dir", "shared_data", "parity_dir"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that reads ../shared, from the fixtures it uses (so the mark cannot drift)."""
    for item in items:
        if SHARED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.needs_shared)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread for the test: tiny networks run faster on one than on two fighting for a shared core, and
    the runs a test compares use the same thread count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tracking_script(monkeypatch) -> Callable[[str], ModuleType]:
    """Load ``tracking/<name>.py`` afresh in this process, so a test can call its ``main`` with arguments."""
    monkeypatch.syspath_prepend(str(REPO_ROOT / "tracking"))

    def load(name: str) -> ModuleType:
        sys.modules.pop(name, None)
        return importlib.import_module(name)

    return load
