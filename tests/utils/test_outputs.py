"""Outputs are checked before the work and a full disk is one line: real processes under a file-size limit (EFBIG is
what a full disk, ENOSPC, and a quota, EDQUOT, look like to the writer), outputs put under a regular file (CI runs
as root, so permissions cannot make a folder unwritable)."""
from __future__ import annotations

import logging
import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lib.utils import io
from lib.utils.io import DiskFullError, OutputError, ensure_writable, ensure_writable_file, is_disk_full
from lib.utils.paths import REPO_ROOT

FILE_SIZE_LIMIT = 256 * 1024


def _file_size_limited() -> None:
    """Writes past FILE_SIZE_LIMIT fail with EFBIG instead of killing the process with SIGXFSZ."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if ".tmp-" in p.name]


# ------------------------------------------------------------------------------------------- checked outputs

def test_probe_proves_a_folder_writable_and_leaves_nothing(tmp_path):
    folder = ensure_writable(tmp_path / "a" / "b", "results")
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_a_folder_under_a_regular_file_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=f"cannot write results in {blocker}/sub/dir: {blocker} is a file"):
        ensure_writable(blocker / "sub" / "dir", "results")
    with pytest.raises(OutputError, match="it is a folder"):
        ensure_writable_file(tmp_path, "the --json report")
    assert ensure_writable_file(None, "nothing") is None


def test_disk_full_errors_are_recognised():
    assert is_disk_full(OSError(28, "No space left on device"))
    assert is_disk_full(OSError(27, "File too large"))
    assert is_disk_full(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"))
    assert is_disk_full(Exception(f"mdb_put: {os.strerror(28)}"))
    assert not is_disk_full(OSError(13, "Permission denied")) and not is_disk_full(RuntimeError("shape mismatch"))


def test_free_space_is_checked_before_a_checkpoint_is_written(tmp_path, monkeypatch):
    import torch

    from lib.train.checkpointer import Checkpointer
    from lib.utils.paths import get_paths
    from lib.utils.run_layout import TrainingRun

    checkpointer = Checkpointer(TrainingRun(get_paths(save_dir=tmp_path), "ostrack", "tiny"), 1, 1, 5)
    checkpointer.start({"A": 1}, None)
    monkeypatch.setattr(io, "free_bytes", lambda folder: 500)
    with pytest.raises(DiskFullError, match=r"checkpoint of epoch 1 .*needs about 66.6 KB, 500 B free.*--resume"):
        checkpointer.save(torch.nn.Linear(16, 16), 1)
    assert checkpointer.run.checkpoints() == {}


# --------------------------------------------------------------------------------------- disk full, for real

CHECKPOINT_SAVE = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    from lib.utils.cli import run_main

    def main(argv):
        import torch
        from lib.train.checkpointer import Checkpointer
        from lib.utils.paths import get_paths
        from lib.utils.run_layout import TrainingRun

        checkpointer = Checkpointer(TrainingRun(get_paths(save_dir=argv[0]), "ostrack", "tiny"), 1, 1, 5)
        checkpointer.start({{"A": 1}}, None)
        checkpointer.save(torch.nn.Linear(16, 16), 1)  # small: fits
        checkpointer.save(torch.nn.Linear(512, 512), 2)  # 1 MB: over the file-size limit

    raise SystemExit(run_main(main))
""")


def test_checkpoint_save_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    script = tmp_path / "save.py"
    script.write_text(CHECKPOINT_SAVE.format(repo=str(REPO_ROOT)))
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "out")], capture_output=True, text=True,
                            timeout=120, preexec_fn=_file_size_limited)
    line = _one_line_error(result, "no space to write the checkpoint of epoch 2", "OSTrack_ep0002.pth.tar",
                           "needs about 1.1 MB", "--resume to continue from epoch 1")
    assert "unexpected pos" not in line
    folder = tmp_path / "out" / "checkpoints" / "train" / "ostrack" / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == ["OSTrack_ep0001.pth.tar", "manifest.json"]


def test_lmdb_pack_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    src = tmp_path / "src" / "seq"
    src.mkdir(parents=True)
    for index in range(3):
        (src / f"{index}.bin").write_bytes(os.urandom(200 * 1024))
    dst = tmp_path / "packs" / "seq_lmdb"
    result = subprocess.run([sys.executable, str(REPO_ROOT / "tracking" / "pack_lmdb.py"), "--src",
                             str(tmp_path / "src"), "--dst", str(dst)], capture_output=True, text=True, timeout=120,
                            preexec_fn=_file_size_limited)
    _one_line_error(result, "no space to write the LMDB pack", str(dst), "needs about 614.4 KB",
                    "run the same command again")
    assert not dst.exists() and _leftovers(tmp_path / "packs") == []


def test_like_warnings_collapse_into_one_line_with_a_count(tmp_path):
    code = textwrap.dedent(f"""
        import logging, sys
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from lib.utils.cli import setup_logging
        setup_logging(logging.INFO)
        log = logging.getLogger("lib.train.data.sampler")
        for index in range(1000):
            log.warning("skipping a training pair: unreadable frame in %s sequence %d", "GOT10K", index)
        log.info("epoch %d done", 1)
        log.info("epoch %d done", 2)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert lines == ["WARNING skipping a training pair: unreadable frame in GOT10K sequence 0",
                     "INFO epoch 1 done", "INFO epoch 2 done",
                     "WARNING 999 more warning(s) like 'skipping a training pair: unreadable frame in GOT10K "
                     "sequence 0' (shown once)"], result.stderr[-2000:]
    logging.getLogger("lib.train.data.sampler").handlers.clear()
