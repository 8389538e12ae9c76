"""Training dataset readers on tiny trees in the official layouts, plain folders and LMDB."""
from __future__ import annotations

import importlib
import json
import logging
import pickle
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lib.data.splits import LISTS_DIR, split_entries
from lib.train.data.datasets import (
    CORRUPT_FRAME_ERRORS,
    Coco17,
    CorruptFrameError,
    CustomFolder,
    FolderStorage,
    Got10k,
    ImagenetVID,
    Lasot,
    LmdbStorage,
    TrackingNet,
    build_dataset,
    pack_folder,
)
from lib.utils.cli import run_main
from lib.utils.errors import DatasetError, SettingsError, UserError
from lib.utils.paths import REPO_ROOT, get_paths

PACK_SCRIPT = REPO_ROOT / "tracking" / "pack_lmdb.py"


# ------------------------------------------------------------------------------------------- tree builders

def write_frame(path: Path, value: int, size: tuple[int, int] = (24, 32)) -> None:
    """A small image whose colour encodes ``value`` (so frames can be told apart after decoding)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.zeros((*size, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = (value * 20) % 256, 50, 200  # BGR
    assert cv2.imwrite(str(path), image)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def boxes_text(boxes: list[list[float]], sep: str = ",") -> str:
    return "".join(sep.join(f"{v:g}" for v in box) + "\n" for box in boxes)


def make_lasot(root: Path) -> None:
    # airplane-1 is a test sequence (not in the train split); airplane-2/3, bear-1 are training sequences
    for name, n in (("airplane-1", 3), ("airplane-2", 4), ("bear-1", 3)):
        seq = root / name.rsplit("-", 1)[0] / name
        write_text(seq / "groundtruth.txt", boxes_text([[10 + i, 5, 8, 6] for i in range(n)]))
        for i in range(n):
            write_frame(seq / "img" / f"{i + 1:08d}.jpg", i)
    seq = root / "airplane" / "airplane-2"
    write_text(seq / "groundtruth.txt", "10,5,8,6\n11,5,0,6\n12,5,8,6\n13,5,8,6\n")  # frame 1: empty box
    write_text(seq / "full_occlusion.txt", "0,0,1,0")
    write_text(seq / "out_of_view.txt", "0,0,0,1")
    (root / "airplane" / "airplane-3" / "img").mkdir(parents=True)  # no groundtruth.txt -> skipped


def make_got10k(root: Path) -> list[str]:
    """train/ with the official 9335-line list.txt but only a few sequence folders; val/ with 2."""
    names = [f"GOT-10k_Train_{i:06d}" for i in range(1, 9336)]
    write_text(root / "train" / "list.txt", "\n".join(names) + "\n")
    present = [0, 1, 2, 3]
    for index in present:
        seq = root / "train" / names[index]
        n = 3 + index
        write_text(seq / "groundtruth.txt", boxes_text([[1 + i, 2, 10, 12] for i in range(n)]))
        write_text(seq / "absence.label", "".join("1\n" if i == 1 else "0\n" for i in range(n)))
        write_text(seq / "cover.label", "".join("0\n" if i == 2 else "8\n" for i in range(n)))
        write_text(seq / "meta_info.ini", "[METAINFO]\nurl: x\nobject_class: goose\nmotion_class: flying\n"
                                          "major_class: bird\nroot_class: animal\nmotion_adverb: slowly\n")
        for i in range(n):
            write_frame(seq / f"{i + 1:08d}.jpg", i + 10 * index)
    for name in ("GOT-10k_Val_000001", "GOT-10k_Val_000002"):
        seq = root / "val" / name
        write_text(seq / "groundtruth.txt", "1,1,5,5\n2,2,5,5\n")
        for i in range(2):
            write_frame(seq / f"{i + 1:08d}.jpg", i)
    write_text(root / "val" / "list.txt", "GOT-10k_Val_000001\nGOT-10k_Val_000002\n")
    return [names[i] for i in present]


def make_trackingnet(root: Path) -> None:
    for chunk, seqs in ((0, ("a_0", "b_1")), (1, ("c_0",))):
        for seq in seqs:
            write_text(root / f"TRAIN_{chunk}" / "anno" / f"{seq}.txt", "1,2,3,4\n0,0,0,0\n3,4,5,6\n")
            for i in range(3):
                write_frame(root / f"TRAIN_{chunk}" / "frames" / seq / f"{i}.jpg", i)
    write_text(root / "TRAIN_0" / "anno" / "no_frames_0.txt", "1,2,3,4\n")


def make_coco(root: Path, image_dir: str) -> None:
    write_frame(root / image_dir / "000000000001.jpg", 1)
    write_frame(root / image_dir / "000000000002.jpg", 2)
    content = {
        "images": [{"id": 1, "file_name": "000000000001.jpg"}, {"id": 2, "file_name": "000000000002.jpg"}],
        "categories": [{"id": 18, "name": "dog", "supercategory": "animal"},
                       {"id": 3, "name": "car", "supercategory": "vehicle"}],
        "annotations": [
            {"id": 101, "image_id": 1, "category_id": 18, "bbox": [1.0, 2.0, 10.0, 8.0], "iscrowd": 0},
            {"id": 102, "image_id": 1, "category_id": 3, "bbox": [0, 0, 30, 20], "iscrowd": 1},
            {"id": 103, "image_id": 2, "category_id": 3, "bbox": [4.0, 4.0, 0.0, 5.0], "iscrowd": 0},
        ],
    }
    write_text(root / "annotations" / "instances_train2017.json", json.dumps(content))


def vid_xml(objects: list[tuple[int, str, tuple[int, int, int, int], int]]) -> str:
    parts = [f"<object><trackid>{t}</trackid><name>{n}</name><bndbox><xmax>{b[2]}</xmax><xmin>{b[0]}</xmin>"
             f"<ymax>{b[3]}</ymax><ymin>{b[1]}</ymin></bndbox><occluded>{o}</occluded><generated>0</generated>"
             "</object>" for t, n, b, o in objects]
    return f"<annotation><folder>x</folder><filename>y</filename>{''.join(parts)}</annotation>"


def make_vid(root: Path) -> None:
    video = "ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000"
    frames = [
        [(0, "n02084071", (10, 10, 30, 20), 0), (1, "n02121808", (0, 0, 5, 5), 0)],
        [(1, "n02121808", (1, 1, 6, 6), 1)],  # track 0 absent, track 1 occluded
        [(0, "n02084071", (12, 10, 32, 20), 0)],
    ]
    for i, objects in enumerate(frames):
        write_text(root / "Annotations/VID/train" / video / f"{i:06d}.xml", vid_xml(objects))
        write_frame(root / "Data/VID/train" / video / f"{i:06d}.JPEG", i)


def make_custom(root: Path) -> None:
    for name, n in (("walk", 12), ("run", 2)):
        write_text(root / name / "groundtruth.txt", boxes_text([[i, i, 4, 4] for i in range(n)], sep="\t"))
        for i in range(n):
            write_frame(root / name / f"{i + 1}.png", i)
    write_text(root / "walk" / "absence.label", "0\n1\n" + "0\n" * 10)
    (root / "empty").mkdir()  # no groundtruth.txt -> skipped


# --------------------------------------------------------------------------------------------------- tests

def test_split_lists_match_the_official_sizes_and_partitions():
    lasot = split_entries("lasot_train")
    assert len(lasot) == len(set(lasot)) == 1120
    assert len({name.rsplit("-", 1)[0] for name in lasot}) == 70
    ids = {name: [int(x) for x in split_entries(f"got10k_{name}")]
           for name in ("train", "val", "vot_train", "vot_val")}
    assert {k: len(v) for k, v in ids.items()} == {"train": 7934, "val": 1401, "vot_train": 7086, "vot_val": 1249}
    assert set(ids["train"]) | set(ids["val"]) == set(range(9335)) and not set(ids["train"]) & set(ids["val"])
    assert set(ids["vot_val"]) <= set(ids["val"]) and set(ids["vot_train"]) <= set(ids["train"])
    assert not set(ids["vot_train"]) & set(ids["vot_val"])


def test_lasot_train_split_excludes_the_test_set(shared_data):
    test = set((shared_data / "lasot_test_annotations" / "testing_set.txt").read_text().split())
    assert len(test) == 280 and not test & set(split_entries("lasot_train"))


def test_lasot_reader(tmp_path, caplog):
    make_lasot(tmp_path)
    with caplog.at_level(logging.WARNING):
        dataset = Lasot(tmp_path)
    assert dataset.sequence_names == ["airplane-2", "bear-1"]  # split order; airplane-1 is a test sequence
    assert dataset.skipped["without an annotation file"] == ["airplane-3"]
    assert len(dataset.skipped["listed but not found on disk"]) == 1120 - 3
    assert "skipped 1 sequence(s) without an annotation file" in caplog.text
    info = dataset.get_sequence_info(0)
    assert info["bbox"].dtype == torch.float32 and info["bbox"].shape == (4, 4)
    assert info["valid"].tolist() == [True, False, True, True]
    assert info["visible"].tolist() == [True, False, False, False]  # empty box, occluded, out of view
    frames, anno, meta = dataset.get_frames(0, [0, 3], info)
    assert [f.shape for f in frames] == [(24, 32, 3)] * 2 and frames[0].dtype == np.uint8
    assert frames[0][0, 0].tolist() == pytest.approx([200, 50, 0], abs=3)  # RGB order
    assert anno["bbox"][1].tolist() == [13, 5, 8, 6] and meta["object_class_name"] == "airplane"
    assert dataset.has_class_info() and dataset.get_class_list() == ["airplane", "bear"]
    assert dataset.get_sequences_in_class("bear") == [1]
    assert Lasot(tmp_path, split=None).sequence_names == ["airplane-1", "airplane-2", "bear-1"]


def test_got10k_splits(tmp_path):
    present = make_got10k(tmp_path)
    full = Got10k(tmp_path, split="train_full")
    assert full.sequence_names == present and full.get_name() == "GOT10k_train_full"
    info = full.get_sequence_info(3)
    assert len(info["bbox"]) == 6 and info["visible"].tolist() == [True, False, False, True, True, True]
    frames, anno, meta = full.get_frames(3, [5, 5])
    assert len(frames) == 2 and frames[0] is not frames[1] and np.array_equal(frames[0], frames[1])
    assert meta == {"object_class_name": "goose", "motion_class": "flying", "major_class": "bird",
                    "root_class": "animal", "motion_adverb": "slowly"}
    for split, split_list in (("vottrain", "got10k_vot_train"), ("votval", "got10k_vot_val"),
                              ("train", "got10k_train"), ("val", "got10k_val")):
        indices = [int(x) for x in split_entries(split_list)]
        expected = [present[i] for i in indices if i < len(present)]  # in split-file order
        if expected:
            assert Got10k(tmp_path, split=split).sequence_names == expected, split
        else:
            with pytest.raises(DatasetError, match="no usable sequences"):
                Got10k(tmp_path, split=split)
    assert Got10k(tmp_path, split="official_val").sequence_names == ["GOT-10k_Val_000001", "GOT-10k_Val_000002"]
    assert Got10k(tmp_path, sequence_ids=[2, 0]).sequence_names == [present[2], present[0]]
    with pytest.raises(UserError, match="unknown GOT-10k split"):
        Got10k(tmp_path, split="test")


def test_got10k_index_split_needs_list_txt(tmp_path):
    make_got10k(tmp_path)
    (tmp_path / "train" / "list.txt").unlink()
    assert len(Got10k(tmp_path, split="train_full")) == 4  # sorted sub-folders
    with pytest.raises(DatasetError, match="list.txt is missing"):
        Got10k(tmp_path, split="vottrain")


def test_trackingnet_reader(tmp_path):
    make_trackingnet(tmp_path)
    dataset = TrackingNet(tmp_path)
    assert dataset.sequence_names == ["a_0", "b_1", "c_0"] and dataset.chunk_of == [0, 0, 1]
    assert dataset.skipped["without a frames folder"] == ["no_frames_0"]
    assert len(dataset.skipped["(not found)"]) == 10  # TRAIN_2 .. TRAIN_11 not downloaded
    info = dataset.get_sequence_info(2)
    assert info["valid"].tolist() == info["visible"].tolist() == [True, False, True]
    frames, anno, _ = dataset.get_frames(2, [0, 2], info)
    assert frames[1][0, 0].tolist() == pytest.approx([200, 50, 40], abs=3)
    assert TrackingNet(tmp_path, chunks=[1]).sequence_names == ["c_0"]
    assert not dataset.has_class_info()


@pytest.mark.parametrize("image_dir", ["images/train2017", "train2017"])
def test_coco_instances_are_one_frame_sequences(tmp_path, image_dir):
    make_coco(tmp_path, image_dir)
    dataset = Coco17(tmp_path)
    assert not dataset.is_video_sequence() and dataset.get_num_sequences() == 2  # the crowd box is dropped
    assert [dataset.get_sequence_name(i) for i in range(2)] == ["101", "103"]
    assert dataset.get_sequence_info(1)["valid"].tolist() == [False]  # zero width
    frames, anno, meta = dataset.get_frames(0, [0, 0])
    assert len(frames) == 2 and frames[0].shape == (24, 32, 3)
    assert anno["bbox"][0].tolist() == [1, 2, 10, 8]
    assert meta["object_class_name"] == "dog" and meta["major_class"] == "animal"
    assert dataset.get_class_list() == ["car", "dog"] and dataset.get_sequences_in_class("car") == [1]


def test_imagenet_vid_tracks_and_cache(tmp_path):
    make_vid(tmp_path / "vid")
    cache = tmp_path / "cache" / "vid.json"
    dataset = ImagenetVID(tmp_path / "vid", cache_file=cache)
    assert cache.is_file() and dataset.get_num_sequences() == 2
    info = dataset.get_sequence_info(0)
    assert info["bbox"].tolist() == [[10, 10, 20, 10]]  # absent in frame 1: the tracklet ends there (official)
    assert info["visible"].tolist() == [True]
    assert dataset.get_sequence_info(1)["visible"].tolist() == [True, False]  # occluded in frame 1
    frames, _, meta = dataset.get_frames(1, [1])
    assert frames[0][0, 0].tolist() == pytest.approx([200, 50, 20], abs=3) and meta["object_class_name"] == "n02121808"
    cached = ImagenetVID(tmp_path / "vid", cache_file=cache)
    assert cached.sequence_names == dataset.sequence_names


def test_custom_folder_dataset(tmp_path, caplog):
    make_custom(tmp_path)
    with caplog.at_level(logging.WARNING):
        dataset = build_dataset(f"CUSTOM:{tmp_path}")
    assert isinstance(dataset, CustomFolder) and dataset.sequence_names == ["run", "walk"]
    assert dataset.skipped["without an annotation file"] == ["empty"] and "empty" in caplog.text
    info = dataset.get_sequence_info(1)
    assert len(info["bbox"]) == 12 and info["visible"][:3].tolist() == [True, False, True]
    assert dataset.frames_of(1)[:3] == ["1.png", "2.png", "3.png"] and dataset.frames_of(1)[-1] == "12.png"
    frames, _, _ = dataset.get_frames(1, [10])
    assert frames[0][0, 0].tolist() == [200, 50, 200]  # lossless png: frame 11 has value 10
    write_text(tmp_path / "list.txt", "walk\n")
    assert CustomFolder(tmp_path).sequence_names == ["walk"]


def test_frame_cache_returns_identical_copies_within_its_budget(tmp_path):
    from lib.train.data.frame_cache import FrameCache

    make_custom(tmp_path)
    plain, cached = build_dataset(f"CUSTOM:{tmp_path}"), build_dataset(f"CUSTOM:{tmp_path}")
    frame_bytes = plain.get_frames(1, [0])[0][0].nbytes
    cached.frame_cache = FrameCache(3 * frame_bytes)  # room for three frames
    for ids in ([0, 5], [0, 5], [1, 2, 3], [0]):
        got, want = cached.get_frames(1, ids)[0], plain.get_frames(1, ids)[0]
        assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))
    assert cached.frame_cache.hits == 2 and len(cached.frame_cache) == 3
    assert cached.frame_cache.bytes <= 3 * frame_bytes
    first = cached.get_frames(1, [3])[0][0]
    first[:] = 0  # augmentation works in place: the cached frame must not change
    assert np.array_equal(cached.get_frames(1, [3])[0][0], plain.get_frames(1, [3])[0][0])


@pytest.mark.e2e
def test_lmdb_round_trip_gives_identical_frames_and_annotations(tmp_path):
    make_got10k(tmp_path / "got10k")
    result = subprocess.run([sys.executable, str(PACK_SCRIPT), "--src", str(tmp_path / "got10k"), "--dst",
                             str(tmp_path / "got10k_lmdb")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "packing" in result.stderr and "wrote" in result.stderr
    folder = Got10k(tmp_path / "got10k", split="vottrain")
    packed = build_dataset("GOT10K_vottrain_lmdb", paths=get_paths(datasets={"got10k_lmdb": tmp_path / "got10k_lmdb"}))
    assert isinstance(packed.storage, LmdbStorage) and packed.sequence_names == folder.sequence_names
    for seq_id in range(len(folder)):
        expected, actual = folder.get_sequence_info(seq_id), packed.get_sequence_info(seq_id)
        assert all(torch.equal(expected[k], actual[k]) for k in ("bbox", "valid", "visible"))
        ids = list(range(len(expected["bbox"])))
        frames_a, _, meta_a = folder.get_frames(seq_id, ids)
        frames_b, _, meta_b = packed.get_frames(seq_id, ids)
        assert all(np.array_equal(a, b) for a, b in zip(frames_a, frames_b, strict=True)) and meta_a == meta_b
    storage = packed.storage
    assert storage.list_subdirs("val") == ["GOT-10k_Val_000001", "GOT-10k_Val_000002"]
    assert storage.list_files("val/GOT-10k_Val_000001") == ["00000001.jpg", "00000002.jpg", "groundtruth.txt"]
    assert storage.is_dir("train") and not storage.exists("nothing/here")
    assert pickle.loads(pickle.dumps(storage)).read_text("val/list.txt").startswith("GOT-10k_Val_000001")


def test_pack_refuses_to_overwrite_without_force(tmp_path, capsys, monkeypatch):
    make_custom(tmp_path / "src")
    monkeypatch.syspath_prepend(str(REPO_ROOT / "tracking"))
    main = importlib.import_module("pack_lmdb").main

    dst = tmp_path / "out.lmdb"
    assert run_main(main, ["--src", str(tmp_path / "src"), "--dst", str(dst)]) == 0
    assert run_main(main, ["--src", str(tmp_path / "src"), "--dst", str(dst)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    (tmp_path / "src" / "walk" / "groundtruth.txt").write_text("0,0,9,9\n")
    assert run_main(main, ["--src", str(tmp_path / "src"), "--dst", str(dst), "--force"]) == 0
    assert LmdbStorage(dst).read_text("walk/groundtruth.txt") == "0,0,9,9\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.lmdb")]  # no temporary left behind
    assert run_main(main, ["--src", str(tmp_path / "missing"), "--dst", str(tmp_path / "x")]) == 2
    assert run_main(main, ["--src", str(tmp_path / "src"), "--dst", str(tmp_path), "--force"]) == 2
    assert "must not contain each other" in capsys.readouterr().err
    (tmp_path / "precious").mkdir()
    assert run_main(main, ["--src", str(tmp_path / "src"), "--dst", str(tmp_path / "precious"), "--force"]) == 2
    assert "is not an LMDB folder; refusing" in capsys.readouterr().err and (tmp_path / "precious").is_dir()
    custom = build_dataset(f"CUSTOM:{dst}")  # an LMDB folder is recognised by its data.mdb
    assert isinstance(custom.storage, LmdbStorage) and len(custom.get_sequence_info(1)["bbox"]) == 1


def test_corrupt_or_missing_frame_raises_corrupt_frame_error(tmp_path):
    make_trackingnet(tmp_path)
    (tmp_path / "TRAIN_0" / "frames" / "a_0" / "1.jpg").write_bytes(b"definitely not a jpeg")
    (tmp_path / "TRAIN_0" / "frames" / "a_0" / "2.jpg").unlink()
    dataset = TrackingNet(tmp_path, chunks=[0])
    with pytest.raises(CorruptFrameError, match="TRAIN_0/frames/a_0/1.jpg") as err:
        dataset.get_frames(0, [0, 1])
    assert err.value.relpath == "TRAIN_0/frames/a_0/1.jpg" and isinstance(err.value, CORRUPT_FRAME_ERRORS)
    with pytest.raises(CORRUPT_FRAME_ERRORS, match="file not found"):
        dataset.get_frames(0, [2])
    with pytest.raises(IndexError, match="out of range"):
        dataset.get_frames(0, [3])


def test_bad_annotation_and_empty_sequence(tmp_path):
    make_custom(tmp_path)
    write_text(tmp_path / "run" / "groundtruth.txt", "1,2,3\n")
    dataset = CustomFolder(tmp_path)
    with pytest.raises(DatasetError, match="run/groundtruth.txt is unparsable: .*3 values"):
        dataset.get_sequence_info(0)
    write_text(tmp_path / "run" / "groundtruth.txt", "")
    assert len(dataset.get_sequence_info(0)["visible"]) == 0


def test_missing_root_names_the_setting(tmp_path):
    paths = get_paths(data_dir=tmp_path / "nothing")
    with pytest.raises(SettingsError, match="LORETRACK_LASOT_DIR"):
        build_dataset("LASOT", paths=paths)
    with pytest.raises(SettingsError, match="LORETRACK_GOT10K_LMDB_DIR"):
        build_dataset("GOT10K_vottrain", paths=paths, storage="lmdb")
    with pytest.raises(SettingsError, match="not an LMDB folder"):
        LmdbStorage(tmp_path)
    with pytest.raises(SettingsError):
        FolderStorage(tmp_path / "nothing")


def test_registry_names(tmp_path):
    with pytest.raises(UserError, match="unknown training dataset 'LASOT2'.*GOT10K_vottrain_lmdb"):
        build_dataset("LASOT2")
    with pytest.raises(UserError, match="storage"):
        build_dataset("LASOT", storage="zip")
    make_got10k(tmp_path)
    dataset = build_dataset("got10k_official_val", paths=get_paths(datasets={"got10k": tmp_path}))
    assert dataset.get_name() == "GOT10k_official_val" and len(dataset) == 2
    assert (LISTS_DIR / "README.md").is_file()


class _FirstFrames(torch.utils.data.Dataset):
    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return torch.from_numpy(self.dataset.get_frames(index, [0])[0][0])


def test_lmdb_dataset_works_in_forked_loader_workers(tmp_path):
    make_custom(tmp_path / "src")
    pack_folder(tmp_path / "src", tmp_path / "custom.lmdb")
    dataset = CustomFolder(tmp_path / "custom.lmdb", storage="lmdb")  # the parent opens the database first
    expected = [torch.from_numpy(dataset.get_frames(i, [0])[0][0]) for i in range(len(dataset))]
    loader = torch.utils.data.DataLoader(_FirstFrames(dataset), batch_size=None, num_workers=2,
                                         multiprocessing_context="fork")
    assert all(torch.equal(a, b) for a, b in zip(loader, expected, strict=True))
