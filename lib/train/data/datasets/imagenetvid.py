"""ImageNet VID (ILSVRC2015) training videos, one sequence per tracked object.

Layout: ``<root>/Data/VID/train/<chunk>/<video>/000000.JPEG ...`` and one PASCAL-VOC style XML per frame in
``<root>/Annotations/VID/train/<chunk>/<video>/000000.xml`` listing the objects (``trackid``, ``name`` = WordNet
id, ``bndbox`` xmin/ymin/xmax/ymax, ``occluded``). A video folder directly under ``train/`` (no chunk level) is
accepted too.

Tracklets as the official (pytracking/OSTrack) reader builds them: a tracklet starts at the first frame its
``trackid`` appears in and ends at the first frame after it without that ``trackid`` (the frames after a gap are
dropped, not filled); occluded objects are not visible; box = (xmin, ymin, xmax - xmin, ymax - ymin); the class
name is the WordNet id. Parsing every XML of the full set takes minutes, so the parsed tracks can be cached in a
JSON file (``cache_file``), rebuilt when the dataset location changes.

A dataset (folder or LMDB) holding the official reader's own ``cache.json`` at its root (a list of tracklets with
``set_id``, ``vid_id``, ``start_frame``, ``anno``, ``target_visible``, ``class_name``) is read from that file, as
the official readers do; official LMDB packs of ImageNet VID carry only that file and the frames.
"""
from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lib.train.data.datasets.base import TrackingDataset, sequence_info
from lib.train.data.datasets.storage import Storage, open_storage
from lib.utils.errors import DatasetError
from lib.utils.io import atomic_write_text

log = logging.getLogger(__name__)

ANNOTATIONS = "Annotations/VID/train"
FRAMES = "Data/VID/train"
CACHE_FORMAT = "loretrack-vid-tracks-3"  # 2: tracklets end at the first gap; 3: image sizes kept
OFFICIAL_CACHE = "cache.json"


def covers_the_image(track: dict[str, Any]) -> bool:
    """Whether the tracklet's first box is as large as the image: the official reader drops those tracklets
    (``max_target_area=1`` on the square root of the box-to-image area ratio)."""
    size = track.get("image_size")
    if not size or not track["boxes"]:
        return False
    width, height = track["boxes"][0][2:4]
    return width * height >= size[0] * size[1]


class ImagenetVID(TrackingDataset):
    layout = f"<root>/{FRAMES}/<chunk>/<video>/%06d.JPEG and <root>/{ANNOTATIONS}/<chunk>/<video>/%06d.xml"
    provides_classes = True

    def __init__(self, root: str | Path | Storage, storage: str = "folder",
                 cache_file: str | Path | None = None) -> None:
        super().__init__("ImageNetVID", open_storage(root, storage))
        content = self._read_official_cache()
        if content is None:
            content = self._read_cache(cache_file)
        if content is None:
            content = self._parse_annotations()
            if cache_file is not None:
                atomic_write_text(cache_file, json.dumps(content))
        self.videos: list[str] = content["videos"]
        self.video_frames: list[list[str]] = content["frames"]
        self.tracks: list[dict[str, Any]] = [t for t in content["tracks"] if not covers_the_image(t)]
        self.sequence_names = [f"{self.videos[t['video']]}#{t['trackid']}" for t in self.tracks]
        self.require_sequences(self.sequence_names)

    def _read_cache(self, cache_file: str | Path | None) -> dict[str, Any] | None:
        if cache_file is None or not Path(cache_file).is_file():
            return None
        try:
            content = json.loads(Path(cache_file).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if content.get("format") != CACHE_FORMAT or content.get("source") != self.storage.describe():
            log.info("%s: cache %s is for another dataset location; re-parsing the annotations", self.name, cache_file)
            return None
        return content

    def _read_official_cache(self) -> dict[str, Any] | None:
        """The tracklets of the official reader's ``cache.json`` (kept in our cache layout), if the dataset has one.

        Its tracklets carry no track id: a sequence is named ``<video>#<k>``, the k-th tracklet of the video in
        the file's order (first appearance, as the official parser lists them).
        """
        if not self.storage.exists(OFFICIAL_CACHE):
            return None
        where = f"{self.storage.describe()}/{OFFICIAL_CACHE}"
        try:
            entries = json.loads(self.storage.read_bytes(OFFICIAL_CACHE))
            videos: dict[str, int] = {}
            per_video: Counter = Counter()
            tracks = []
            for entry in entries:
                video = f"ILSVRC2015_VID_train_{entry['set_id']:04d}/ILSVRC2015_train_{entry['vid_id']:08d}"
                index = videos.setdefault(video, len(videos))
                tracks.append({"video": index, "trackid": str(per_video[index]),
                               "class": entry["class_name"], "start": int(entry["start_frame"]),
                               "boxes": [[float(v) for v in box] for box in entry["anno"]],
                               "visible": [bool(v) for v in entry["target_visible"]],
                               "image_size": [int(v) for v in entry["image_size"]]})
                per_video[index] += 1
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as err:
            raise DatasetError(f"{self.name}: {where} is not the official tracklet cache ({type(err).__name__}: "
                               f"{err}); remove it to parse the XML annotations instead") from None
        log.info("%s: %d tracklets from the official %s", self.name, len(tracks), where)
        # frame file names are the frame numbers (%06d): no per-video file list is needed
        return {"videos": list(videos), "frames": [[] for _ in videos], "tracks": tracks}

    def _video_folders(self) -> list[str]:
        videos = []
        for entry in self.storage.list_subdirs(ANNOTATIONS):
            inner = self.storage.list_subdirs(f"{ANNOTATIONS}/{entry}")
            if inner:  # <chunk>/<video>
                videos.extend(f"{entry}/{video}" for video in inner)
            else:  # <video> directly under train/
                videos.append(entry)
        return videos

    def _parse_annotations(self) -> dict[str, Any]:
        videos, frames, tracks = [], [], []
        for video in self._video_folders():
            xml_files = [f for f in self.storage.list_files(f"{ANNOTATIONS}/{video}") if f.endswith(".xml")]
            if not xml_files:
                continue
            per_track: dict[str, dict[str, Any]] = {}
            image_size = None
            for index, xml_file in enumerate(xml_files):
                size, objects = self._objects(f"{ANNOTATIONS}/{video}/{xml_file}")
                image_size = image_size or size  # the official parser takes the first frame's size
                for trackid, wnid, box, occluded in objects:
                    track = per_track.setdefault(trackid, {"class": wnid, "frames": {}})
                    track["frames"].setdefault(index, (box, occluded))  # a repeated trackid: the first one
            video_index = len(videos)
            videos.append(video)
            frames.append([f[:-4] for f in xml_files])
            for trackid, track in per_track.items():  # in order of first appearance, as the official parser
                start = end = min(track["frames"])
                while end + 1 in track["frames"]:  # the tracklet ends at its first missing frame
                    end += 1
                span = [track["frames"][index] for index in range(start, end + 1)]
                tracks.append({"video": video_index, "trackid": trackid, "class": track["class"], "start": start,
                               "boxes": [box for box, _ in span], "visible": [not occluded for _, occluded in span],
                               "image_size": image_size})
        if not videos:
            raise DatasetError(f"{self.name}: no annotated videos in {self.storage.describe()}; expected {self.layout}")
        return {"format": CACHE_FORMAT, "source": self.storage.describe(), "videos": videos, "frames": frames,
                "tracks": tracks}

    def _objects(self, relpath: str) -> tuple[list[int] | None, list[tuple[str, str, list[float], bool]]]:
        """The frame's image size (None when the file has none) and its objects."""
        try:
            root = ElementTree.fromstring(self.storage.read_bytes(relpath))
        except ElementTree.ParseError as err:
            raise DatasetError(f"{self.name}: {self.storage.describe()}/{relpath} is not valid XML ({err})") from None
        objects = []
        for obj in root.iter("object"):
            corners = {key: float(obj.findtext(f"bndbox/{key}", "0")) for key in ("xmin", "ymin", "xmax", "ymax")}
            box = [corners["xmin"], corners["ymin"], corners["xmax"] - corners["xmin"],
                   corners["ymax"] - corners["ymin"]]
            occluded = obj.findtext("occluded", "0").strip() == "1"
            objects.append((obj.findtext("trackid", "0").strip(), obj.findtext("name", "").strip(), box, occluded))
        width, height = root.findtext("size/width"), root.findtext("size/height")
        return ([int(width), int(height)] if width and height else None), objects

    def get_sequence_info(self, seq_id: int) -> dict[str, torch.Tensor]:
        track = self.tracks[seq_id]
        return sequence_info(np.asarray(track["boxes"], dtype=np.float32), np.asarray(track["visible"], dtype=bool))

    def frame_path(self, seq_id: int, frame_id: int) -> str:
        track = self.tracks[seq_id]
        stems, index = self.video_frames[track["video"]], track["start"] + frame_id
        stem = stems[index] if stems else f"{index:06d}"
        return f"{FRAMES}/{self.videos[track['video']]}/{stem}.JPEG"

    def get_class_name(self, seq_id: int) -> str:
        return self.tracks[seq_id]["class"]
