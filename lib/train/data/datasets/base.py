"""The training-dataset interface of pytracking/OSTrack, and the parts every reader shares.

A dataset is a list of sequences (for image datasets such as COCO: one-frame sequences). The sampler asks for
``get_sequence_info(seq_id)`` (per-frame boxes and flags) and then ``get_frames(seq_id, frame_ids, info)``.
Frames with an empty box are ``valid == False``; frames where the target cannot be seen (absent, fully
occluded, out of view, or empty box) are ``visible == False``, so the sampler can skip them without reading
any image.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lib.train.data.annotations import ParsedRows, box_problems, parse_box_rows, parse_label_values, usable_boxes
from lib.train.data.datasets.storage import Storage
from lib.utils.boxes import TableFormatError
from lib.utils.errors import DatasetError

log = logging.getLogger(__name__)


class AnnotationFileError(DatasetError):
    """An annotation file of a sequence is missing or unparsable: the sequence cannot be used."""

    def __init__(self, dataset: str, source: str, relpath: str, reason: str, fix: str) -> None:
        super().__init__(f"{dataset}: {source}/{relpath} {reason}; {fix}")
        self.relpath = relpath
        self.reason = reason


@dataclass
class SequenceAnnotation:
    """A sequence's boxes and visibility flags as read, with the bad values found on the way."""

    boxes: np.ndarray
    visible: np.ndarray | None = None
    problems: Counter = field(default_factory=Counter)
    example: str | None = None  # the first problem, naming its file

    def note(self, relpath: str, parsed: ParsedRows) -> None:
        self.problems.update(parsed.problems)
        if parsed.example and self.example is None:
            self.example = f"{relpath}: {parsed.example}"

    def info(self) -> dict[str, torch.Tensor]:
        return sequence_info(self.boxes, self.visible)


def fit_length(values: np.ndarray, length: int, fill: float) -> np.ndarray:
    """``values`` cut or padded with ``fill`` to ``length`` (flag files that disagree with the box file)."""
    if len(values) >= length:
        return values[:length]
    return np.concatenate([values, np.full(length - len(values), fill, dtype=values.dtype)])


def sequence_info(boxes: np.ndarray, visible: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """The ``get_sequence_info`` dict: a frame is valid when its box is finite, of sane magnitude and has w > 0
    and h > 0, and visible when it is valid and ``visible`` (the dataset's own flags) allows it."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    bbox = torch.as_tensor(boxes.astype(np.float32))
    valid = torch.as_tensor(usable_boxes(boxes))
    if visible is None:
        return {"bbox": bbox, "valid": valid, "visible": valid.clone()}
    flags = torch.as_tensor(fit_length(np.asarray(visible, dtype=bool).ravel(), len(bbox), False))
    return {"bbox": bbox, "valid": valid, "visible": flags & valid}


class TrackingDataset:
    """Base of all training readers. Subclasses fill ``sequence_names`` and implement
    :meth:`get_sequence_info` and :meth:`frame_path`; class information is optional."""

    #: the folder layout the reader expects, quoted in error messages
    layout = ""
    #: whether sequences carry an object class (``get_class_name``)
    provides_classes = False

    def __init__(self, name: str, storage: Storage) -> None:
        self.name = name
        self.storage = storage
        self.sequence_names: list[str] = []
        #: reason -> names of the sequences left out when the dataset was opened
        self.skipped: dict[str, list[str]] = {}
        #: reason -> how many sequences the skipped names stand for (the skipped share of the start-up check)
        self.skipped_sequences: dict[str, float] = {}
        self.skipped_what: dict[str, str] = {}  # reason -> what the names are ('sequence(s)', 'chunk folder(s)')
        self._class_list: list[str] | None = None
        #: decoded frames shared across draws (``DATA.FRAME_CACHE_MB``); None reads every frame from storage
        self.frame_cache: Any | None = None

    # ----------------------------------------------------------------------------------------- sequences
    def get_name(self) -> str:
        return self.name

    def is_video_sequence(self) -> bool:
        return True

    def is_synthetic_video_dataset(self) -> bool:
        return False

    def get_num_sequences(self) -> int:
        return len(self.sequence_names)

    def __len__(self) -> int:
        return self.get_num_sequences()

    def get_sequence_name(self, seq_id: int) -> str:
        return self.sequence_names[seq_id]

    def get_sequence_info(self, seq_id: int) -> dict[str, torch.Tensor]:
        return self.read_annotation(seq_id).info()

    def read_annotation(self, seq_id: int) -> SequenceAnnotation:
        """The sequence's boxes and flags; :class:`AnnotationFileError` when a file it needs is missing or
        unparsable. Readers that hold their annotations in memory override ``get_sequence_info`` instead."""
        raise NotImplementedError

    def annotation_files(self, seq_id: int) -> list[str]:
        """Relative paths whose content decides ``read_annotation`` (the start-up check's cache key); empty for
        readers that hold their annotations in memory."""
        return []

    def check_sequence(self, seq_id: int) -> dict[str, Any]:
        """What the start-up check records for one sequence: its number of frames and bad values by cause, or
        the file that makes it unusable."""
        try:
            if type(self).read_annotation is TrackingDataset.read_annotation:
                boxes = self.get_sequence_info(seq_id)["bbox"].numpy()
                annotation = SequenceAnnotation(boxes)
                annotation.note(self.get_sequence_name(seq_id), box_problems(boxes))
            else:
                annotation = self.read_annotation(seq_id)
        except AnnotationFileError as err:
            return {"skip": {"file": err.relpath, "reason": err.reason}}
        return {"frames": len(annotation.boxes), "problems": dict(annotation.problems), "example": annotation.example}

    def keep_sequences(self, seq_ids: Sequence[int]) -> None:
        """Use only these sequences from now on (the start-up check drops the unusable ones); readers with
        per-sequence state indexed by ``seq_id`` extend this."""
        self.sequence_names = [self.sequence_names[i] for i in seq_ids]
        self._class_list = None

    def frame_path(self, seq_id: int, frame_id: int) -> str:
        """Relative path of frame ``frame_id`` (0-based) of sequence ``seq_id``."""
        raise NotImplementedError

    def get_frames(self, seq_id: int, frame_ids: Sequence[int], anno: dict[str, torch.Tensor] | None = None
                   ) -> tuple[list[np.ndarray], dict[str, list[torch.Tensor]], dict[str, Any]]:
        """RGB frames, the annotation of those frames, and the sequence's meta data.

        Pass the ``get_sequence_info`` result as ``anno`` to avoid reading the annotation twice. A frame that
        is missing or cannot be decoded raises :class:`~lib.train.data.datasets.storage.CorruptFrameError`.
        """
        if anno is None:
            anno = self.get_sequence_info(seq_id)
        num_frames = len(anno["bbox"])
        for frame_id in frame_ids:
            if not 0 <= frame_id < num_frames:
                raise IndexError(f"{self.name}: frame {frame_id} is out of range for sequence "
                                 f"{self.get_sequence_name(seq_id)} ({num_frames} frames)")
        decoded: dict[int, np.ndarray] = {}
        frames = []
        for frame_id in frame_ids:  # each distinct frame is decoded once; repeats get their own copy
            if frame_id in decoded:
                frames.append(decoded[frame_id].copy())
            else:
                decoded[frame_id] = self._read_frame(self.frame_path(seq_id, frame_id))
                frames.append(decoded[frame_id])
        anno_frames = {key: [value[f].clone() for f in frame_ids] for key, value in anno.items()}
        return frames, anno_frames, self.get_meta(seq_id)

    def _read_frame(self, relpath: str) -> np.ndarray:
        if self.frame_cache is None:
            return self.storage.read_image(relpath)
        return self.frame_cache.get((self.storage.describe(), relpath), lambda: self.storage.read_image(relpath))

    def get_meta(self, seq_id: int) -> dict[str, Any]:
        return {"object_class_name": self.get_class_name(seq_id), "motion_class": None, "major_class": None,
                "root_class": None, "motion_adverb": None}

    # ------------------------------------------------------------------------------------------- classes
    def has_class_info(self) -> bool:
        return self.provides_classes

    def get_class_name(self, seq_id: int) -> str | None:
        return None

    def get_class_list(self) -> list[str]:
        if self._class_list is None:
            names = {self.get_class_name(i) for i in range(self.get_num_sequences())}
            self._class_list = sorted(n for n in names if n)
        return list(self._class_list)

    def get_num_classes(self) -> int:
        return len(self.get_class_list())

    def get_sequences_in_class(self, class_name: str) -> list[int]:
        return [i for i in range(self.get_num_sequences()) if self.get_class_name(i) == class_name]

    # --------------------------------------------------------------------------- helpers for the readers
    def read_boxes(self, relpath: str, annotation: SequenceAnnotation | None = None) -> np.ndarray:
        """An x,y,w,h-per-line file as (N, 4) with bad rows as NaN (noted in ``annotation``); an empty file is an
        empty sequence, not an error."""
        try:
            text = self.storage.read_text(relpath)
        except FileNotFoundError:
            raise AnnotationFileError(self.name, self.storage.describe(), relpath, "is missing",
                                      "re-download the sequence") from None
        try:
            parsed = parse_box_rows(text)
        except TableFormatError as err:
            raise AnnotationFileError(self.name, self.storage.describe(), relpath, f"is unparsable: {err}",
                                      "fix or re-download it") from None
        if annotation is not None:
            annotation.note(relpath, parsed)
        return parsed.values

    def read_labels(self, relpath: str, length: int, annotation: SequenceAnnotation | None = None,
                    missing: float | None = None) -> np.ndarray:
        """Per-frame numbers (one per line or one comma-separated line) fitted to ``length`` frames; a value
        that is not a number, or absent, is NaN. A file that does not exist is an :class:`AnnotationFileError`
        (a partial download), unless ``missing`` gives the value for every frame (an optional file)."""
        try:
            text = self.storage.read_text(relpath)
        except FileNotFoundError:
            if missing is not None:
                return np.full(length, missing, dtype=np.float64)
            raise AnnotationFileError(self.name, self.storage.describe(), relpath, "is missing",
                                      "re-download the sequence (a partial download?)") from None
        try:
            parsed = parse_label_values(text, length)
        except TableFormatError as err:
            raise AnnotationFileError(self.name, self.storage.describe(), relpath, f"is unparsable: {err}",
                                      "fix or re-download it") from None
        if annotation is not None:
            annotation.note(relpath, parsed)
        return parsed.values

    def report_skipped(self, reason: str, names: Sequence[str], what: str = "sequence(s)",
                       sequences: float | None = None) -> None:
        """Record and log (once, with a count) sequences or folders that are left out; ``sequences`` estimates
        how many sequences they stand for (a missing TrackingNet chunk holds many), default one per name."""
        if not names:
            return
        self.skipped.setdefault(reason, []).extend(names)
        self.skipped_what[reason] = what
        self.skipped_sequences[reason] = self.skipped_sequences.get(reason, 0.0) + (
            len(names) if sequences is None else sequences)
        examples = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        log.warning("%s: skipped %d %s in %s (%s)", self.name, len(names), f"{what} {reason}".strip(),
                    self.storage.describe(), examples)

    def keep_complete(self, names: Iterable[str], folder_of: Callable[[str], str],
                      annotation_of: Callable[[str], str]) -> list[str]:
        """The sequences whose folder and annotation file exist; the others are reported as skipped.
        Raises when nothing is left, quoting the expected layout."""
        kept, no_folder, no_annotation = [], [], []
        for name in names:
            if not self.storage.is_dir(folder_of(name)):
                no_folder.append(name)
            elif not self.storage.exists(annotation_of(name)):
                no_annotation.append(name)
            else:
                kept.append(name)
        self.report_skipped("listed but not found on disk", no_folder)
        self.report_skipped("without an annotation file", no_annotation)
        self.require_sequences(kept)
        return kept

    def require_sequences(self, names: Sequence[Any]) -> None:
        if len(names) == 0:
            raise DatasetError(f"{self.name}: no usable sequences in {self.storage.describe()}; expected "
                               f"{self.layout}")
