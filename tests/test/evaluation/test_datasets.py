"""Benchmark readers, each on a small tree in the benchmark's real layout (real annotations where available)."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from lib.data import splits
from lib.test.evaluation.benchmarks.common import load_annotation_boxes, load_sequence_list
from lib.test.evaluation.datasets import dataset_names, get_dataset
from lib.utils.errors import DatasetError, SettingsError, UserError
from lib.utils.sorting import natural_sorted

MINI_OTB = ["Couple", "Crossing", "Football1"]


def write_frames(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        cv2.imwrite(str(folder / name), np.zeros((8, 8, 3), np.uint8))


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def as_comma_line(values: np.ndarray) -> str:
    return ",".join(str(int(v)) for v in values) + "\n"


# ---------------------------------------------------------------------------------------------- helpers

def test_load_annotation_boxes_accepts_comma_tab_space_and_mixed_lines(tmp_path):
    text = "1,2,3,4\r\n5\t6\t7\t8\r\n9 10 11 12\nNaN,NaN,NaN,NaN\n\n"
    boxes = load_annotation_boxes(write_text(tmp_path / "gt.txt", text))
    assert boxes.shape == (4, 4)
    assert boxes[:3].tolist() == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    assert np.isnan(boxes[3]).all()
    assert load_annotation_boxes(write_text(tmp_path / "one.txt", "1.5,2,3,4")).shape == (1, 4)


@pytest.mark.parametrize("text, problem", [("1,2,3\n", "3 values per line"), ("", "empty"), ("a,b,c,d\n", "numbers")])
def test_load_annotation_boxes_names_the_file_and_problem(tmp_path, text, problem):
    path = write_text(tmp_path / "bad.txt", text)
    with pytest.raises(DatasetError, match=problem) as info:
        load_annotation_boxes(path)
    assert str(path) in str(info.value)


def test_natural_sort_orders_numbers_by_value():
    assert natural_sorted(["10.jpg", "2.jpg", "1.jpg", "img11.png", "img9.png"]) == \
        ["1.jpg", "2.jpg", "10.jpg", "img9.png", "img11.png"]


def test_registry_names_and_errors(tmp_path, monkeypatch):
    assert {"lasot", "lasot_extension_subset", "got10k_test", "got10k_val", "got10k_ltrval", "trackingnet", "uav",
            "otb", "nfs", "tnl2k", "folder"} <= set(dataset_names())
    with pytest.raises(UserError, match="unknown dataset 'vot99'"):
        get_dataset("vot99")
    with pytest.raises(UserError, match="pass its folder"):
        get_dataset("folder")
    monkeypatch.setenv("LORETRACK_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(SettingsError, match="LORETRACK_LASOT_DIR"):
        get_dataset("lasot")
    with pytest.raises(SettingsError, match="not a folder"):
        get_dataset("otb", root=tmp_path / "missing")


# ------------------------------------------------------------------------------------------------ LaSOT

def make_lasot_sequence(root: Path, name: str, boxes_text: str, absent: np.ndarray) -> None:
    """Split the toolkit's single absent flag over full_occlusion / out_of_view to test that either hides."""
    seq_dir = root / name.split("-")[0] / name
    write_text(seq_dir / "groundtruth.txt", boxes_text)
    half = len(absent) // 2
    occlusion, out_of_view = absent.copy(), absent.copy()
    occlusion[half:], out_of_view[:half] = 0, 0
    write_text(seq_dir / "full_occlusion.txt", as_comma_line(occlusion))
    write_text(seq_dir / "out_of_view.txt", as_comma_line(out_of_view))


def test_lasot_reader_with_real_annotations(shared_data, tmp_path):
    annotations = shared_data / "lasot_test_annotations"
    test_names = annotations.joinpath("testing_set.txt").read_text().split()
    assert load_sequence_list("lasot_test.txt") == test_names
    assert len({name.split("-")[0] for name in test_names}) == 70
    absent = {name: np.loadtxt(annotations / "absent" / f"{name}.txt", dtype=np.int64) for name in test_names[:12]}
    chosen = ["airplane-1", next(name for name, flags in absent.items() if flags.sum() > 0)]
    for name in chosen:
        make_lasot_sequence(tmp_path, name, (annotations / f"{name}.txt").read_text(), absent[name])

    dataset = get_dataset("lasot", root=tmp_path, sequences=chosen)
    assert dataset.names() == [name for name in test_names if name in chosen]
    for name in chosen:
        seq, gt = dataset[name], np.loadtxt(annotations / f"{name}.txt", delimiter=",")
        assert seq.dataset == "lasot" and seq.object_class == name.split("-")[0]
        assert len(seq) == len(gt) and np.array_equal(seq.ground_truth_rect, gt)
        assert seq.frames[0] == str(tmp_path / seq.object_class / name / "img" / "00000001.jpg")
        assert seq.frames[-1].endswith(f"{len(gt):08d}.jpg")
        assert np.array_equal(seq.target_visible, absent[name] == 0)
    assert (~dataset[chosen[1]].target_visible).any()


def test_lasot_extension_subset_list_and_tag(tmp_path):
    names = load_sequence_list("lasot_extension_subset.txt")
    assert len(names) == 150 == len(set(names))
    assert len({name.split("-")[0] for name in names}) == 15
    make_lasot_sequence(tmp_path, "wingsuit-3", "10,20,30,40\n11,21,31,41\n", np.array([0, 1]))
    seq = get_dataset("lasot_extension_subset", root=tmp_path, sequences="wingsuit-3")[0]
    assert seq.dataset == "lasot_extension_subset" and seq.target_visible.tolist() == [True, False]


def test_lasot_flag_length_mismatch_is_reported(tmp_path):
    make_lasot_sequence(tmp_path, "airplane-1", "1,2,3,4\n", np.array([0, 0]))
    with pytest.raises(DatasetError, match="2 flags for 1 ground-truth boxes"):
        get_dataset("lasot", root=tmp_path, sequences=["airplane-1"])


# -------------------------------------------------------------------------------------------------- OTB

def test_otb_mini_sequences(shared_data):
    dataset = get_dataset("otb", root=shared_data / "otb_mini_sequences", sequences=MINI_OTB)
    assert dataset.names() == MINI_OTB
    football = dataset["Football1"]
    assert len(football) == 74 == len(football.ground_truth_rect)  # 81 images, endFrame 74
    assert football.init_bbox == [153, 105, 26, 43]
    assert football.extras["attributes"]["IPR"] and not football.extras["attributes"]["SV"]
    couple = dataset["Couple"]  # tab-delimited, CRLF
    assert couple.ground_truth_rect.shape == (140, 4) and couple.init_bbox == [51, 47, 25, 62]
    assert all(Path(frame).is_file() for seq in dataset for frame in seq.frames)
    assert all(seq.dataset == "otb" for seq in dataset)


def test_incomplete_dataset_is_one_clear_error(shared_data):
    with pytest.raises(DatasetError, match="97 of 100 sequences") as info:
        get_dataset("otb", root=shared_data / "otb_mini_sequences")
    assert "sequences=[...]" in str(info.value)
    with pytest.raises(UserError, match="did you mean 'Couple'"):
        get_dataset("otb", root=shared_data / "otb_mini_sequences", sequences=["couple"])


def _otb_annotation(shared_data: Path, name: str) -> Path:
    stem = {"human4_2": "human4"}.get(name.lower(), name.lower().replace("_", "-"))
    files = {path.stem.lower(): path for path in (shared_data / "otb100_annotations").glob("*.txt")}
    return files[stem]


def test_otb_special_cases(shared_data, tmp_path):
    layout = {"Tiger1": "Tiger1/groundtruth_rect.txt", "Human4_2": "Human4/groundtruth_rect.2.txt",
              "Jogging_1": "Jogging/groundtruth_rect.1.txt", "BlurCar1": "BlurCar1/groundtruth_rect.txt",
              "Board": "Board/groundtruth_rect.txt"}
    for name, target in layout.items():
        (tmp_path / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(_otb_annotation(shared_data, name), tmp_path / target)
    dataset = get_dataset("otb", root=tmp_path, sequences=list(layout))

    tiger = dataset["Tiger1"]  # initOmit = 5: frames 6..354 and GT rows 5..353
    full_gt = load_annotation_boxes(tmp_path / layout["Tiger1"])
    assert len(full_gt) == 354 and len(tiger) == 349 == len(tiger.ground_truth_rect)
    assert tiger.frames[0].endswith("Tiger1/img/0006.jpg") and np.array_equal(tiger.ground_truth_rect[0], full_gt[5])
    assert dataset["Human4_2"].frames[0].endswith("Human4/img/0001.jpg")
    assert dataset["Jogging_1"].frames[0].endswith("Jogging/img/0001.jpg")
    blurcar = dataset["BlurCar1"]
    assert blurcar.frames[0].endswith("0247.jpg") and blurcar.frames[-1].endswith("0988.jpg")
    assert len(blurcar) == len(blurcar.ground_truth_rect) == 742
    assert dataset["Board"].frames[0].endswith("Board/img/00001.jpg")


def test_otb_list_matches_the_real_annotations(shared_data):
    records = load_sequence_list("otb100.json")
    assert len(records) == 100 == len({record["name"] for record in records})
    for record in records:
        rows = len(load_annotation_boxes(_otb_annotation(shared_data, record["name"])))
        assert record["end"] - record["start"] + 1 == rows, record["name"]


# ------------------------------------------------------------------------------------------------ UAV123

def test_uav_reads_all_123_real_annotations(shared_data, tmp_path):
    (tmp_path / "anno").mkdir()
    (tmp_path / "anno" / "UAV123").symlink_to(shared_data / "uav123_annotations")
    dataset = get_dataset("uav", root=tmp_path)
    assert len(dataset) == 123 and all(name.startswith("uav_") for name in dataset.names())
    assert all(len(seq) == len(seq.ground_truth_rect) for seq in dataset)
    assert sum(not seq.frames[0].endswith("000001.jpg") for seq in dataset) == 32
    bird = dataset["uav_bird1_2"]
    assert bird.frames[0] == str(tmp_path / "data_seq" / "UAV123" / "bird1" / "000775.jpg") and len(bird) == 703
    assert bird.object_class == "bird" and bird.dataset == "uav"
    absent_rows = sum(int(np.isnan(seq.ground_truth_rect).any(axis=1).sum()) for seq in dataset)
    assert absent_rows == 2683  # NaN rows are kept for the 'uav' metric rules
    for seq in dataset:  # full occlusion is flagged exactly for the sequences with absent frames
        assert seq.extras["attributes"]["FOC"] == bool(np.isnan(seq.ground_truth_rect).any()), seq.name
    assert sum(seq.extras["attributes"]["SV"] for seq in dataset) == 109


# ----------------------------------------------------------------------------------------------- GOT-10k

def make_got10k_sequence(split_dir: Path, name: str, boxes: str, num_frames: int, labels: bool = True) -> None:
    write_frames(split_dir / name, [f"{index:08d}.jpg" for index in range(1, num_frames + 1)])
    write_text(split_dir / name / "groundtruth.txt", boxes)
    if labels:
        write_text(split_dir / name / "cover.label", "8\n0\n5\n")
        write_text(split_dir / name / "absence.label", "0\n1\n0\n")
        write_text(split_dir / name / "meta_info.ini",
                   "[METAINFO]\nurl: https://example.org/x\nobject_class: ferret\nresolution: (1280, 720)\n")


def test_got10k_val_test_and_ltrval(tmp_path, monkeypatch):
    boxes = "1,2,30,40\n2,3,30,40\n3,4,30,40\n"
    for name in ("GOT-10k_Val_000002", "GOT-10k_Val_000001"):
        make_got10k_sequence(tmp_path / "val", name, boxes, 3)
    write_text(tmp_path / "val" / "list.txt", "GOT-10k_Val_000002\nGOT-10k_Val_000001\n")
    val = get_dataset("got10k_val", root=tmp_path)
    assert val.names() == ["GOT-10k_Val_000002", "GOT-10k_Val_000001"]  # list.txt order
    seq = val[0]
    assert seq.dataset == "got10k" and seq.object_class == "ferret" and len(seq) == 3
    assert seq.frames[2].endswith("00000003.jpg")
    assert seq.extras["cover"].tolist() == [8, 0, 5] and seq.extras["absence"].tolist() == [False, True, False]
    assert seq.extras["resolution"] == (1280, 720)

    make_got10k_sequence(tmp_path / "test", "GOT-10k_Test_000001", "5,6,7,8\n", 4, labels=False)
    write_text(tmp_path / "test" / "list.txt", "GOT-10k_Test_000001\n")
    test_seq = get_dataset("got10k_test", root=tmp_path)[0]
    assert len(test_seq) == 4 and test_seq.ground_truth_rect.shape == (1, 4) and test_seq.extras == {}

    for name in ("GOT-10k_Train_000001", "GOT-10k_Train_000002", "GOT-10k_Train_000003"):
        make_got10k_sequence(tmp_path / "train", name, boxes, 3, labels=False)
    write_text(tmp_path / "train" / "list.txt", "GOT-10k_Train_000001\nGOT-10k_Train_000002\nGOT-10k_Train_000003\n")
    monkeypatch.setattr(splits, "LISTS_DIR", tmp_path)
    monkeypatch.setitem(splits.SPLIT_FILES, "got10k_val", write_text(tmp_path / "split.txt", "2\n0\n").name)
    assert get_dataset("got10k_ltrval", root=tmp_path).names() == ["GOT-10k_Train_000003", "GOT-10k_Train_000001"]
    monkeypatch.setitem(splits.SPLIT_FILES, "got10k_val", "absent.txt")
    with pytest.raises(DatasetError, match="absent.txt"):
        get_dataset("got10k_ltrval", root=tmp_path)
    with pytest.raises(DatasetError, match="'val/list.txt'"):
        get_dataset("got10k_val", root=tmp_path / "train")


# ------------------------------------------------------------------------------------ TrackingNet, NFS, TNL2K

def test_trackingnet_test_split(tmp_path):
    for name in ("zz_video_1", "Ab3_video_0"):
        write_text(tmp_path / "TEST" / "anno" / f"{name}.txt", "10.5,20,30,40\n")
        write_frames(tmp_path / "TEST" / "frames" / name, [f"{index}.jpg" for index in range(12)])
    dataset = get_dataset("trackingnet", root=tmp_path)
    assert dataset.names() == ["Ab3_video_0", "zz_video_1"]
    seq = dataset[0]
    assert seq.dataset == "trackingnet" and seq.init_bbox == [10.5, 20, 30, 40] and len(seq) == 12
    assert [Path(frame).name for frame in seq.frames[9:11]] == ["9.jpg", "10.jpg"]
    with pytest.raises(DatasetError, match="TEST/anno"):
        get_dataset("trackingnet", root=tmp_path / "TEST")


def test_nfs_reader(tmp_path):
    records = load_sequence_list("nfs.json")
    assert len(records) == 100 == len({record["name"] for record in records})
    write_text(tmp_path / "anno" / "nfs_bee.txt", "".join(f"{i}\t5\t20\t30\n" for i in range(45)))
    seq = get_dataset("nfs", root=tmp_path, sequences=["nfs_bee"])[0]
    assert seq.dataset == "nfs" and seq.object_class == "insect" and seq.extras == {"occlusion": False}
    assert len(seq) == 45 == len(seq.ground_truth_rect)
    assert seq.frames[0] == str(tmp_path / "sequences" / "bee" / "00001.jpg")


def test_tnl2k_reader(tmp_path):
    for name in ("Bike_video_2", "advSamp_Baseball_video_01"):
        write_frames(tmp_path / name / "imgs", ["00002.png", "00001.png", "00010.png"])
        write_text(tmp_path / name / "groundtruth.txt", "1,2,3,4\n2,3,4,5\n3,4,5,6\n")
        write_text(tmp_path / name / "language.txt", "The RED Bike on the left\n")
    dataset = get_dataset("tnl2k", root=tmp_path)
    assert dataset.names() == ["advSamp_Baseball_video_01", "Bike_video_2"]
    seq = dataset["Bike_video_2"]
    assert seq.dataset == "tnl2k" and seq.extras["language"] == "the red bike on the left"
    assert [Path(frame).name for frame in seq.frames] == ["00001.png", "00002.png", "00010.png"]


# ---------------------------------------------------------------------------------------- own videos

def test_folder_reader_for_own_videos(tmp_path):
    write_frames(tmp_path / "walk" / "img", ["1.jpg", "10.jpg", "2.jpg"])
    write_text(tmp_path / "walk" / "groundtruth.txt", "1,2,3,4\n2\t3\t4\t5\n3 4 5 6\n")
    write_frames(tmp_path / "drone", ["frame_0.png", "frame_1.png"])
    write_text(tmp_path / "drone" / "groundtruth.txt", "5,5,10,10\n")  # only the initial box
    (tmp_path / "notes").mkdir()  # no groundtruth.txt: not a sequence
    dataset = get_dataset("folder", root=tmp_path)
    assert dataset.names() == ["drone", "walk"]
    walk = dataset["walk"]
    assert [Path(frame).name for frame in walk.frames] == ["1.jpg", "2.jpg", "10.jpg"]
    assert walk.ground_truth_rect[2].tolist() == [3, 4, 5, 6] and walk.dataset == "folder"
    assert len(dataset["drone"]) == 2 and dataset["drone"].ground_truth_rect.shape == (1, 4)
    single = get_dataset("folder", root=tmp_path / "walk")  # a sequence folder itself
    assert single.names() == ["walk"] and len(single[0]) == 3
    with pytest.raises(DatasetError, match="expected sub-folders"):
        get_dataset("folder", root=tmp_path / "notes")
    write_text(tmp_path / "drone" / "groundtruth.txt", "1,1,1,1\n" * 3)
    with pytest.raises(DatasetError, match="3 boxes but only 2 frames"):
        get_dataset("folder", root=tmp_path, sequences=["drone"])

