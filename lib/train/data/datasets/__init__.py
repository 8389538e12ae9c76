"""Training dataset readers (pytracking/OSTrack API) on plain folders or LMDB, and the registry by config name."""
from lib.train.data.datasets.base import AnnotationFileError, SequenceAnnotation, TrackingDataset, sequence_info
from lib.train.data.datasets.coco import Coco17
from lib.train.data.datasets.custom import CustomFolder
from lib.train.data.datasets.got10k import Got10k
from lib.train.data.datasets.imagenetvid import ImagenetVID
from lib.train.data.datasets.lasot import Lasot
from lib.train.data.datasets.registry import DATASETS, build_dataset, dataset_names
from lib.train.data.datasets.storage import (
                                             CorruptFrameError,
                                             FolderStorage,
                                             LmdbStorage,
                                             Storage,
                                             decode_rgb,
                                             open_storage,
                                             pack_folder,
)
from lib.train.data.datasets.trackingnet import TrackingNet

#: a frame that cannot be read (the sampler redraws every data failure; this names the frame kind)
CORRUPT_FRAME_ERRORS: tuple[type[BaseException], ...] = (CorruptFrameError,)

__all__ = ["CORRUPT_FRAME_ERRORS", "DATASETS", "AnnotationFileError", "Coco17", "CorruptFrameError", "CustomFolder",
           "FolderStorage", "Got10k", "ImagenetVID", "Lasot", "LmdbStorage", "SequenceAnnotation", "Storage",
           "TrackingDataset", "TrackingNet", "build_dataset", "dataset_names", "decode_rgb", "open_storage",
           "pack_folder", "sequence_info"]
