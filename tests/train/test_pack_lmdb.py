"""tracking/pack_lmdb.py with real processes: killed mid-way, re-run, --force, and temporaries of live writers."""
from __future__ import annotations

import importlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from lib.train.data.datasets import pack_folder
from lib.utils.cli import run_main
from lib.utils.io import PAUSE_ENV, PAUSE_MARKER, host_tag
from lib.utils.paths import REPO_ROOT

PACK_SCRIPT = REPO_ROOT / "tracking" / "pack_lmdb.py"


def make_tree(root: Path) -> None:
    """A few files in nested folders (packing copies bytes; they need not be images)."""
    for relpath, data in (("a/1.jpg", b"\xff\xd8one"), ("a/2.jpg", b"\xff\xd8two" * 100),
                          ("a/groundtruth.txt", b"1,2,3,4\n"), ("b/c/3.png", os.urandom(2048)), ("list.txt", b"a\n")):
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_bytes(data)
    (root / "empty").mkdir()


def lmdb_items(path: Path) -> dict[bytes, bytes]:
    """Every key-value pair of the LMDB folder ``path`` (read-only, without creating a lock file)."""
    import lmdb

    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return {bytes(key): bytes(value) for key, value in txn.cursor()}
    finally:
        env.close()


def hidden_entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)


@pytest.fixture
def pack_main(monkeypatch) -> Callable[[list[str] | None], int]:
    """``main`` of tracking/pack_lmdb.py, to run it in this process."""
    monkeypatch.syspath_prepend(str(REPO_ROOT / "tracking"))
    return importlib.import_module("pack_lmdb").main


def read_until_marker(proc: subprocess.Popen, timeout_s: float = 60.0) -> tuple[Path, list[str]]:
    """The temporary path the paused writer printed, and its stderr lines so far."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen = []
    while True:
        line = lines.get(timeout=timeout_s)
        if line is None:
            pytest.fail(f"pack_lmdb.py ended (exit {proc.wait()}) without pausing:\n{''.join(seen)}")
        seen.append(line)
        if line.startswith(PAUSE_MARKER):
            return Path(line[len(PAUSE_MARKER):].strip()), seen


@pytest.mark.e2e
def test_killed_pack_leaves_a_temporary_that_the_next_run_removes(tmp_path, capsys, pack_main):
    src, dst = tmp_path / "src", tmp_path / "out.lmdb"
    make_tree(src)
    pack_folder(src, tmp_path / "reference.lmdb")  # one uninterrupted run
    expected = lmdb_items(tmp_path / "reference.lmdb")

    proc = subprocess.Popen([sys.executable, str(PACK_SCRIPT), "--src", str(src), "--dst", str(dst)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, PAUSE_ENV: dst.name})
    try:
        tmp, _ = read_until_marker(proc)
        assert tmp.parent == tmp_path and tmp.name.startswith(f".{dst.name}.tmp-{host_tag()}-{proc.pid}-")
        assert tmp.is_dir() and not dst.exists()
        assert lmdb_items(tmp) == expected  # complete: only the rename was missing
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert hidden_entries(tmp_path) == [tmp.name] and not dst.exists()  # the leftover of the killed run

    assert run_main(pack_main, ["--src", str(src), "--dst", str(dst)]) == 0  # in-process: no second start-up
    assert f"removed {tmp}, left by a pack that was killed" in capsys.readouterr().err
    assert hidden_entries(tmp_path) == []
    assert lmdb_items(dst) == expected


def test_force_moves_the_old_pack_aside_and_no_force_refuses(tmp_path, capsys, pack_main):
    src, dst = tmp_path / "src", tmp_path / "out.lmdb"
    make_tree(src)
    pack_folder(src, dst)
    old = lmdb_items(dst)
    (src / "a" / "groundtruth.txt").write_bytes(b"9,9,9,9\n")

    assert run_main(pack_main, ["--src", str(src), "--dst", str(dst)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "already exists; pass --force" in err
    assert lmdb_items(dst) == old

    assert run_main(pack_main, ["--src", str(src), "--dst", str(dst), "--force"]) == 0
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("out.lmdb.moved-")]
    assert len(moved) == 1 and f"moved the old out.lmdb aside to {moved[0]}" in capsys.readouterr().err
    assert lmdb_items(moved[0]) == old  # kept, unchanged
    new = lmdb_items(dst)
    assert new[b"a/groundtruth.txt"] == b"9,9,9,9\n" and new.keys() == old.keys()
    assert hidden_entries(tmp_path) == []


def test_only_temporaries_of_dead_writers_on_this_host_are_removed(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "out.lmdb"
    make_tree(src)
    host, dead = host_tag(), dead_pid()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        names = {
            "dead_folder": f".out.lmdb.tmp-{host}-{dead}-deadbeef",
            "dead_file": f".out.lmdb.tmp-{host}-{dead}-0badf00d",
            "this_process": f".out.lmdb.tmp-{host}-{os.getpid()}-0123abcd",
            "running_child": f".out.lmdb.tmp-{host}-{sleeper.pid}-4567abcd",
            "other_host": f".out.lmdb.tmp-not{host}-{dead}-feedf00d",
            "other_target": f".other.lmdb.tmp-{host}-{dead}-cafef00d",
        }
        for key, name in names.items():
            if key == "dead_file":
                (tmp_path / name).write_bytes(b"partial")
            else:
                (tmp_path / name).mkdir()
                (tmp_path / name / "data.mdb").write_bytes(b"partial")
        messages: list[str] = []
        pack_folder(src, dst, progress=messages.append)
    finally:
        sleeper.kill()
        sleeper.wait()
    removed = {names["dead_folder"], names["dead_file"]}
    assert hidden_entries(tmp_path) == sorted(set(names.values()) - removed)
    assert sorted(m for m in messages if m.startswith("removed")) == sorted(
        f"removed {tmp_path / name}, left by a pack that was killed" for name in removed)
    assert lmdb_items(dst)[b"list.txt"] == b"a\n"
