"""tracking/pack_lmdb.py with real processes: killed mid-way, re-run, --force, and temporaries of live writers;
LMDB packs made by the official STARK/OSTrack tools read as they are."""
from __future__ import annotations

import importlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

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


# ------------------------------------------------------------------------- official packs (STARK / OSTrack tools)

def pack_like_official(src: Path, dst: Path) -> int:
    """An LMDB as the official packing scripts write one: each file under ``src`` at its path relative to ``src``,
    the raw file bytes as the value, and nothing else (no folder index, no marker). Returns the number of keys."""
    import lmdb

    files = sorted(p for p in src.rglob("*") if p.is_file())
    dst.parent.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(dst), map_size=2 ** 28)
    with env.begin(write=True) as txn:
        for path in files:
            txn.put(path.relative_to(src).as_posix().encode(), path.read_bytes())
    env.close()
    return len(files)


class CountingCursor:
    """An LMDB cursor that counts its moves (a scan over every key would cost one move per key)."""

    MOVES = {"first", "last", "next", "prev", "set_key", "set_range", "next_nodup", "prev_nodup"}
    WALKS = {"iternext", "iterprev", "iternext_nodup", "iterprev_nodup", "iternext_dup"}

    def __init__(self, cursor, moves: list[int]) -> None:
        self._cursor, self._moves = cursor, moves

    def __getattr__(self, name: str):
        attr = getattr(self._cursor, name)
        if name in self.MOVES:
            def moved(*args, **kwargs):
                self._moves[0] += 1
                return attr(*args, **kwargs)
            return moved
        if name in self.WALKS:
            def walk(*args, **kwargs):
                for item in attr(*args, **kwargs):
                    self._moves[0] += 1
                    yield item
            return walk
        return attr

    def __iter__(self):
        return self.iternext()


class CountingTxn:
    def __init__(self, txn, moves: list[int]) -> None:
        self._txn, self._moves = txn, moves

    def __enter__(self):
        self._txn.__enter__()
        return self

    def __exit__(self, *exc):
        return self._txn.__exit__(*exc)

    def cursor(self, *args, **kwargs):
        return CountingCursor(self._txn.cursor(*args, **kwargs), self._moves)

    def __getattr__(self, name: str):
        return getattr(self._txn, name)


@pytest.fixture
def cursor_moves(monkeypatch) -> list[int]:
    """Counts every cursor move our storage makes in LMDBs opened from now on (``[count]``)."""
    from lib.train.data.datasets import storage

    moves, real = [0], storage._lmdb_env

    class CountingEnv:
        def __init__(self, env) -> None:
            self._env = env

        def begin(self, *args, **kwargs):
            return CountingTxn(self._env.begin(*args, **kwargs), moves)

        def __getattr__(self, name: str):
            return getattr(self._env, name)

    monkeypatch.setattr(storage, "_lmdb_env", lambda path: CountingEnv(real(path)))
    return moves


def write_jpeg(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.zeros((24, 32, 3), np.uint8)
    image[..., 0], image[..., 1] = (value * 7) % 256, 90
    assert cv2.imwrite(str(path), image)


def write_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_got10k_tree(root: Path, frames: int = 20) -> None:
    for split, names in (("train", [f"GOT-10k_Train_{i:06d}" for i in (1, 2, 3)]), ("val", ["GOT-10k_Val_000001"])):
        write_file(root / split / "list.txt", "\n".join(names) + "\n")
        for k, name in enumerate(names):
            seq = root / split / name
            write_file(seq / "groundtruth.txt", "".join(f"{2 + i},{3 + k},10,8\n" for i in range(frames)))
            write_file(seq / "absence.label", "".join("1\n" if i == 4 else "0\n" for i in range(frames)))
            write_file(seq / "cover.label", "".join("3\n" for _ in range(frames)))
            write_file(seq / "meta_info.ini", f"[METAINFO]\nobject_class: class{k}\nmotion_class: m\n")
            for i in range(frames):
                write_jpeg(seq / f"{i + 1:08d}.jpg", i + 30 * k)


def same_sequences(folder, packed) -> None:
    """Identical sequence lists, annotations, frames and meta data."""
    assert packed.sequence_names == folder.sequence_names and len(folder) > 0
    for seq_id in range(len(folder)):
        expected, actual = folder.get_sequence_info(seq_id), packed.get_sequence_info(seq_id)
        assert expected.keys() == actual.keys() and all(torch.equal(expected[k], actual[k]) for k in expected)
        ids = [0, len(expected["bbox"]) - 1]
        frames_a, _, meta_a = folder.get_frames(seq_id, ids)
        frames_b, _, meta_b = packed.get_frames(seq_id, ids)
        assert all(np.array_equal(a, b) for a, b in zip(frames_a, frames_b, strict=True)) and meta_a == meta_b


def test_official_got10k_pack_reads_like_the_folder_without_a_key_scan(tmp_path, cursor_moves):
    from lib.train.data.datasets import LmdbStorage, build_dataset
    from lib.utils.paths import get_paths

    make_got10k_tree(tmp_path / "got10k")
    keys = pack_like_official(tmp_path / "got10k", tmp_path / "got10k_lmdb")
    paths = get_paths(datasets={"got10k": tmp_path / "got10k", "got10k_lmdb": tmp_path / "got10k_lmdb"})
    for name in ("GOT10K_train_full", "GOT10K_official_val"):  # the one-shot protocol's datasets
        cursor_moves[0] = 0
        packed = build_dataset(f"{name}_lmdb", paths=paths)
        assert isinstance(packed.storage, LmdbStorage) and not packed.storage.indexed
        # the sequences come from list.txt; each is checked with one seek, never by walking the frames' keys
        assert cursor_moves[0] <= len(packed) < keys // 10
        same_sequences(build_dataset(name, paths=paths), packed)
    storage = packed.storage
    cursor_moves[0] = 0
    assert storage.list_subdirs() == ["train", "val"] and cursor_moves[0] <= 3
    assert storage.list_subdirs("train") == [f"GOT-10k_Train_{i:06d}" for i in (1, 2, 3)]
    assert storage.list_files("train") == ["list.txt"]
    assert storage.list_files("val/GOT-10k_Val_000001")[:2] == ["00000001.jpg", "00000002.jpg"]
    assert storage.is_dir("train/GOT-10k_Train_000002") and not storage.is_dir("train/GOT-10k_Train_00000")
    assert not storage.exists("train/GOT-10k_Train_000009") and storage.exists("val/list.txt")


def test_official_lasot_coco_and_vid_packs_read_like_their_folders(tmp_path):
    from lib.data.splits import split_entries
    from lib.train.data.datasets import build_dataset
    from lib.utils.paths import get_paths

    lasot = tmp_path / "lasot"
    for k, name in enumerate([*split_entries("lasot_train")[:2], "airplane-1"]):  # airplane-1: a test sequence
        seq = lasot / name.rsplit("-", 1)[0] / name
        write_file(seq / "groundtruth.txt", "".join(f"{k + i},4,9,7\n" for i in range(3)))
        write_file(seq / "full_occlusion.txt", "0,1,0")
        write_file(seq / "out_of_view.txt", "0,0,1")
        for i in range(3):
            write_jpeg(seq / "img" / f"{i + 1:08d}.jpg", i + 10 * k)
    coco = tmp_path / "coco"
    for i in (1, 2):
        write_jpeg(coco / "images" / "train2017" / f"{i:012d}.jpg", i)
    write_file(coco / "annotations" / "instances_train2017.json", json.dumps({
        "images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in (1, 2)],
        "categories": [{"id": 5, "name": "dog", "supercategory": "animal"}],
        "annotations": [{"id": 10 + i, "image_id": i, "category_id": 5, "bbox": [1, 2, 8, 6], "iscrowd": 0}
                        for i in (1, 2)]}))
    vid = tmp_path / "vid"  # the official VID pack: the reader's cache.json and the frames, no XML
    video = "ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000007"
    for i in range(4):
        write_jpeg(vid / "Data/VID/train" / video / f"{i:06d}.JPEG", i)
    write_file(vid / "cache.json", json.dumps([
        {"set_id": 0, "vid_id": 7, "class_name": "n01", "start_frame": 1, "anno": [[1, 1, 5, 5], [2, 1, 5, 5]],
         "target_visible": [True, False], "image_size": [32, 24]}]))
    datasets = {}
    for key, folder in (("lasot", lasot), ("coco", coco), ("imagenetvid", vid)):
        pack_like_official(folder, tmp_path / f"{key}_lmdb")
        datasets.update({key: folder, f"{key}_lmdb": tmp_path / f"{key}_lmdb"})
    paths = get_paths(save_dir=tmp_path / "out", datasets=datasets)
    for name in ("LASOT", "COCO17", "VID"):
        same_sequences(build_dataset(name, paths=paths), build_dataset(f"{name}_lmdb", paths=paths))
    assert len(build_dataset("LASOT_lmdb", paths=paths)) == 2  # the split list names them; airplane-1 is not in it
    vid_frames, anno, _ = build_dataset("VID_lmdb", paths=paths).get_frames(0, [0, 1])
    assert anno["visible"] == [torch.tensor(True), torch.tensor(False)]
    assert int(vid_frames[0][0, 0, 2]) == pytest.approx(7, abs=3)  # frame 1 of the video: the tracklet starts there


def test_official_trackingnet_pack_one_lmdb_per_chunk(tmp_path):
    """The official TrackingNet pack: ``TRAIN_<k>_lmdb`` per chunk (keys relative to the chunk folder) beside
    ``seq_list.json``; it reads as the folder layout, and the chunks not packed are reported missing."""
    from lib.train.data.datasets import build_dataset
    from lib.train.data.datasets.storage import LmdbFolderStorage
    from lib.utils.errors import SettingsError
    from lib.utils.paths import get_paths

    folder, packed = tmp_path / "trackingnet", tmp_path / "trackingnet_lmdb"
    for chunk, names in ((0, ("a_0", "b_1")), (1, ("c_2",))):
        for k, name in enumerate(names):
            write_file(folder / f"TRAIN_{chunk}" / "anno" / f"{name}.txt", "".join(f"{k},1,6,5\n" for _ in range(3)))
            for i in range(3):
                write_jpeg(folder / f"TRAIN_{chunk}" / "frames" / name / f"{i}.jpg", i + 5 * k)
        pack_like_official(folder / f"TRAIN_{chunk}", packed / f"TRAIN_{chunk}_lmdb")
    write_file(packed / "seq_list.json", json.dumps([[0, "a_0"], [0, "b_1"], [1, "c_2"]]))
    paths = get_paths(datasets={"trackingnet": folder, "trackingnet_lmdb": packed})
    reader = build_dataset("TRACKINGNET_lmdb", paths=paths, chunks=[0, 1, 2])
    assert isinstance(reader.storage, LmdbFolderStorage) and reader.skipped["(not found)"] == ["TRAIN_2"]
    same_sequences(build_dataset("TRACKINGNET", paths=paths, chunks=[0, 1, 2]), reader)
    assert reader.storage.list_subdirs() == ["TRAIN_0", "TRAIN_1"] and reader.storage.list_files() == ["seq_list.json"]
    assert json.loads(reader.storage.read_text("seq_list.json"))[2] == [1, "c_2"]
    with pytest.raises(SettingsError, match="not an LMDB folder"):
        build_dataset("TRACKINGNET_lmdb", paths=get_paths(datasets={"trackingnet_lmdb": folder}))
