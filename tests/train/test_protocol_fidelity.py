"""Fidelity to the official training code: the joint flip, ImageNet VID tracklets, the supported sampler settings."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lib.config import load_config
from lib.train.data.datasets import ImagenetVID
from lib.train.data.processing import CropSettings, PairProcessing, SampleRng
from lib.utils.errors import ConfigError, DatasetError

# ----------------------------------------------------------------------------------------------------- flip


def official_flip_box(box: torch.Tensor, width: int) -> torch.Tensor:
    """pytracking's RandomHorizontalFlip on an (x, y, w, h) float32 box, restated: the corners (x, y), (x + w, y + h)
    are moved, each x to (W - 1) - x (pixel centres), and the result is the bounding box of the moved corners."""
    xs = (width - 1) - torch.stack([box[0], box[0] + box[2]])
    ys = torch.stack([box[1], box[1] + box[3]])
    return torch.stack([xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()])


def always_flip() -> PairProcessing:
    crop = CropSettings(output_size=32, factor=2.0, center_jitter=0.0, scale_jitter=0.0)
    return PairProcessing(crop, crop, mean=[0.0] * 3, std=[1.0] * 3, grayscale_prob=0.0, flip_prob=1.0,
                          brightness_jitter=0.0)


def test_joint_flip_matches_the_official_transform():
    widths, boxes = (50, 64), [[10.25, 3.5, 20.5, 7.0], [0.0, 0.0, 64.0, 10.0]]
    frames = [np.zeros((12, w, 3), np.uint8) for w in widths]
    _, flipped = always_flip()._joint_augment(frames, [torch.tensor(b) for b in boxes], SampleRng.from_seed(0))
    for box, width, ours in zip(boxes, widths, flipped, strict=True):
        assert ours.tolist() == official_flip_box(torch.tensor(box), width).tolist()  # exact: dyadic values
    assert flipped[0].tolist() == [50 - 1 - 10.25 - 20.5, 3.5, 20.5, 7.0]  # not W - x - w = 19.25
    rng = np.random.default_rng(1)
    for _ in range(20):
        width = int(rng.integers(20, 400))
        box = torch.tensor([rng.uniform(-5, width), rng.uniform(0, 50), rng.uniform(0, 80), rng.uniform(1, 9)],
                           dtype=torch.float32)
        _, (ours, _) = always_flip()._joint_augment([np.zeros((4, width, 3), np.uint8)] * 2, [box] * 2,
                                                    SampleRng.from_seed(0))
        official = official_flip_box(box, width)
        assert ours[:2].tolist() == official[:2].tolist()  # the same float32 operations
        # the official transform re-derives w and h from the moved corners, ours keeps them: they differ by the
        # float32 rounding of those corner sums only (two roundings at the corners' magnitude)
        rounding = 2 * torch.finfo(torch.float32).eps * (width + box[0].abs() + box[2:].max())
        assert (ours[2:] - official[2:]).abs().max() <= rounding


def test_joint_flip_keeps_the_box_on_the_same_pixels():
    """With pixel-centre coordinates the box edge at column x must land where that column's pixels went."""
    frame = np.tile(np.arange(40, dtype=np.uint8)[None, :, None], (6, 1, 3))  # value = column index
    box = [7.0, 1.0, 12.0, 3.0]
    (image, _), (moved, _) = always_flip()._joint_augment([frame, frame], [torch.tensor(box)] * 2,
                                                          SampleRng.from_seed(0))
    left, right = int(moved[0]), int(moved[0] + moved[2])
    assert image[0, left, 0] == box[0] + box[2] and image[0, right, 0] == box[0]


def test_crop_flip_works_in_normalised_coordinates_as_the_official_one():
    """The per-crop flip (RandomHorizontalFlip_Norm) maps x to 1 - x: a normalised box goes to 1 - x - w."""
    crop = np.zeros((32, 32, 3), np.uint8)
    _, box, _ = always_flip()._to_tensor(crop, torch.tensor([0.25, 0.5, 0.125, 0.25]), np.zeros((32, 32), bool),
                                         SampleRng.from_seed(0))
    assert box.tolist() == [0.625, 0.5, 0.125, 0.25]

# ------------------------------------------------------------------------------------------- ImageNet VID


VIDEO = "ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000"


def write_vid_frame(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((24, 32, 3), value * 20, np.uint8))


def vid_object(trackid: int, box: tuple[int, int, int, int], occluded: int = 0) -> str:
    return (f"<object><trackid>{trackid}</trackid><name>n0{trackid}</name><bndbox><xmin>{box[0]}</xmin>"
            f"<ymin>{box[1]}</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox>"
            f"<occluded>{occluded}</occluded></object>")


def make_vid_with_gaps(root: Path) -> None:
    """Track 0 is missing in frame 2 and comes back; track 1 starts in frame 1; track 2 is occluded in frame 3."""
    per_frame = [
        [vid_object(0, (1, 1, 5, 5))],
        [vid_object(0, (2, 1, 6, 5)), vid_object(1, (0, 0, 9, 9)), vid_object(2, (3, 3, 8, 8))],
        [vid_object(1, (1, 0, 9, 9)), vid_object(2, (3, 3, 8, 8))],
        [vid_object(0, (4, 1, 8, 5)), vid_object(2, (3, 3, 8, 8), occluded=1)],
        [vid_object(0, (5, 1, 9, 5)), vid_object(2, (4, 3, 9, 8))],
    ]
    for index, objects in enumerate(per_frame):
        xml = root / "Annotations/VID/train" / VIDEO / f"{index:06d}.xml"
        xml.parent.mkdir(parents=True, exist_ok=True)
        xml.write_text(f"<annotation><size><width>32</width><height>24</height></size>{''.join(objects)}</annotation>")
        write_vid_frame(root / "Data/VID/train" / VIDEO / f"{index:06d}.JPEG", index)


def tracklets(dataset: ImagenetVID) -> list[tuple[list[list[float]], list[bool], int]]:
    """(boxes, visible, first frame's colour) per sequence."""
    out = []
    for seq_id in range(len(dataset)):
        info = dataset.get_sequence_info(seq_id)
        frame = dataset.get_frames(seq_id, [0], info)[0][0]
        out.append((info["bbox"].tolist(), info["visible"].tolist(), round(float(frame[0, 0, 0]) / 20)))
    return out


# the official parser's tracklets: from the first appearance to the first frame without the object
OFFICIAL_TRACKLETS = [
    ([[1, 1, 4, 4], [2, 1, 4, 4]], [True, True], 0),  # track 0: frames 0-1, ends at the gap in frame 2
    ([[0, 0, 9, 9], [1, 0, 8, 9]], [True, True], 1),  # track 1: frames 1-2
    ([[3, 3, 5, 5], [3, 3, 5, 5], [3, 3, 5, 5], [4, 3, 5, 5]], [True, True, False, True], 1),  # track 2: 1-4
]


def test_vid_tracklets_end_at_the_first_missing_frame(tmp_path):
    make_vid_with_gaps(tmp_path / "vid")
    dataset = ImagenetVID(tmp_path / "vid", cache_file=tmp_path / "cache.json")
    assert dataset.sequence_names == [f"{VIDEO}#0", f"{VIDEO}#1", f"{VIDEO}#2"]
    assert tracklets(dataset) == OFFICIAL_TRACKLETS
    assert tracklets(ImagenetVID(tmp_path / "vid", cache_file=tmp_path / "cache.json")) == OFFICIAL_TRACKLETS


def test_vid_drops_tracklets_whose_first_box_covers_the_image(tmp_path):
    """As the official reader (``max_target_area=1``): a first box of the image's whole area removes the tracklet."""
    make_vid_with_gaps(tmp_path / "vid")
    first = tmp_path / "vid/Annotations/VID/train" / VIDEO / "000000.xml"
    first.write_text(first.read_text().replace("</annotation>", f"{vid_object(7, (0, 0, 32, 24))}</annotation>"))
    assert tracklets(ImagenetVID(tmp_path / "vid")) == OFFICIAL_TRACKLETS
    first.write_text(first.read_text().replace("<xmax>32</xmax>", "<xmax>31</xmax>"))
    assert len(ImagenetVID(tmp_path / "vid")) == len(OFFICIAL_TRACKLETS) + 1  # one pixel less: kept


def test_vid_cache_of_the_gap_filling_format_is_not_reused(tmp_path):
    make_vid_with_gaps(tmp_path / "vid")
    cache = tmp_path / "cache.json"
    filled = ImagenetVID(tmp_path / "vid", cache_file=cache)
    stale = json.loads(cache.read_text())
    stale["format"] = "loretrack-vid-tracks-1"
    stale["tracks"][0]["boxes"] += [[0, 0, 0, 0], [4, 1, 4, 4]]  # what the old parser stored for track 0
    cache.write_text(json.dumps(stale))
    assert tracklets(ImagenetVID(tmp_path / "vid", cache_file=cache)) == tracklets(filled) == OFFICIAL_TRACKLETS


def official_vid_cache(tracks: list[tuple[list[list[float]], list[bool], int]]) -> str:
    """The official reader's ``cache.json`` for the tracklets above (set 0, video 0)."""
    return json.dumps([{"set_id": 0, "vid_id": 0, "class_name": f"n0{k}", "start_frame": start, "anno": boxes,
                        "target_visible": visible, "image_size": [32, 24]}
                       for k, ((boxes, visible, _), start) in enumerate(zip(tracks, (0, 1, 1), strict=True))])


def test_vid_reads_the_official_cache_without_annotations(tmp_path):
    """Official VID packs carry ``cache.json`` and the frames only; the official reader takes the tracklets from it."""
    make_vid_with_gaps(tmp_path / "vid")
    for xml in (tmp_path / "vid" / "Annotations").rglob("*.xml"):
        xml.unlink()
    (tmp_path / "vid" / "cache.json").write_text(official_vid_cache(OFFICIAL_TRACKLETS))
    dataset = ImagenetVID(tmp_path / "vid")
    assert tracklets(dataset) == OFFICIAL_TRACKLETS
    assert [dataset.get_class_name(i) for i in range(3)] == ["n00", "n01", "n02"]
    (tmp_path / "vid" / "cache.json").write_text('{"not": "a list of tracklets"}')
    with pytest.raises(DatasetError, match="is not the official tracklet cache"):
        ImagenetVID(tmp_path / "vid")

# ----------------------------------------------------------------------------------------- sampler settings


@pytest.mark.parametrize(("key", "value", "supported"), [
    ("DATA.SAMPLER_MODE", "trident_pro", "'causal'"),
    ("DATA.SAMPLER_MODE", "stark", "'causal'"),
    ("DATA.TEMPLATE.NUMBER", 2, "1"),
    ("DATA.SEARCH.NUMBER", 3, "1"),
])
def test_unsupported_sampler_settings_are_errors_naming_the_supported_ones(key, value, supported):
    with pytest.raises(ConfigError, match=rf"{key} {value!r} is not supported \(supported: {supported}\)"):
        load_config("vitb_256_mae_ce_32x4_got10k_ep100", script="ostrack", overrides={key: value})


def test_official_sampler_settings_load(tmp_path):
    path = tmp_path / "official.yaml"
    path.write_text("DATA:\n  SAMPLER_MODE: causal\n  SEARCH: {NUMBER: 1}\n  TEMPLATE: {NUMBER: 1}\n")
    cfg = load_config(path)
    assert (cfg.DATA.SAMPLER_MODE, cfg.DATA.SEARCH.NUMBER, cfg.DATA.TEMPLATE.NUMBER) == ("causal", 1, 1)
