"""Track one object with an exported network file alone: onnxruntime, numpy and OpenCV, nothing of this project.

    python tracking/track_exported.py MODEL.onnx VIDEO --init_bbox x,y,w,h [--output boxes.txt] [--threads N]

MODEL.onnx comes from tracking/export_model.py, whose metadata gives the crop sizes and factors, the normalisation
and the CE mask. VIDEO is a video file or a folder of frames (sorted by name). One box per frame, x,y,w,h in
pixels, goes to --output (default: the screen). The steps are those of OSTrack's tracker: a template cut once
from the first frame; per frame a search crop around the previous box, the network, a Hann window on the score
map, the box at its maximum, mapped back to the image and kept inside it.
"""
import argparse
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def sample_target(image, box, factor, size):
    """Square crop of side ceil(sqrt(w*h) * factor) centred on the box, zero-padded outside the image (the last
    image row/column is dropped at the far borders, as in OSTrack), resized to size x size; also size / side."""
    x, y, w, h = box
    side = math.ceil(math.sqrt(w * h) * factor)
    x1, y1 = round(x + 0.5 * w - side * 0.5), round(y + 0.5 * h - side * 0.5)
    height, width = image.shape[:2]
    pad_left, pad_top = max(0, -x1), max(0, -y1)
    pad_right, pad_bottom = max(x1 + side - width + 1, 0), max(y1 + side - height + 1, 0)
    region = image[y1 + pad_top:y1 + side - pad_bottom, x1 + pad_left:x1 + side - pad_right]
    padded = np.zeros((side, side, 3), dtype=np.uint8)
    padded[pad_top:pad_top + region.shape[0], pad_left:pad_left + region.shape[1]] = region
    return cv2.resize(padded, (size, size)), size / side


def hann2d(size):
    window = 0.5 * (1 - np.cos((2 * math.pi / (size + 1)) * np.arange(1, size + 1, dtype=np.float32)))
    return np.outer(window, window).astype(np.float32)


class ExportedTracker:
    def __init__(self, model_path, threads=0):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: ONNX Runtime's choice (one per core)
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        meta = {key: json.loads(value) for key, value in self.session.get_modelmeta().custom_metadata_map.items()}
        if "search_size" not in meta:
            fail(f"{model_path} has no tracker metadata; export it with tracking/export_model.py")
        self.meta = meta
        self.mean = np.array(meta["mean"], dtype=np.float32)
        self.std = np.array(meta["std"], dtype=np.float32)
        self.window = hann2d(meta["feature_size"])
        self.margin = meta["postprocess"]["clip_margin"]
        self.feed = {}
        mask = meta["ce_template_mask"]
        if mask is not None:
            if mask["true_indices"] is None:
                fail(f"this example makes fixed CE masks only, not {mask['range']} ({mask.get('rule')})")
            self.feed["ce_template_mask"] = np.zeros((1, mask["shape"][1]), dtype=bool)
            self.feed["ce_template_mask"][0, mask["true_indices"]] = True

    def normalise(self, crop):
        """uint8 (S, S, 3) RGB -> float32 (1, 3, S, S), (x / 255 - mean) / std."""
        return ((crop.astype(np.float32) / np.float32(255) - self.mean) / self.std).transpose(2, 0, 1)[None].copy()

    def initialize(self, image, box):
        crop, _ = sample_target(image, box, self.meta["template_factor"], self.meta["template_size"])
        self.feed["template"] = self.normalise(crop)
        self.state = list(box)

    def track(self, image):
        size = self.meta["search_size"]
        crop, resize_factor = sample_target(image, self.state, self.meta["search_factor"], size)
        self.feed["search"] = self.normalise(crop)
        score, box_size, offset = (out[0] for out in self.session.run(None, self.feed))  # maps of sample 0
        feat = score.shape[-1]
        row, col = divmod(int(np.argmax(self.window * score[0])), feat)
        # (cx, cy, w, h) normalised in the crop -> image pixels relative to the crop's corner
        box = np.array([(col + offset[0, row, col]) / feat, (row + offset[1, row, col]) / feat,
                        box_size[0, row, col], box_size[1, row, col]], dtype=np.float32)
        cx, cy, w, h = (float(v) for v in box * size / resize_factor)
        # the crop was centred on the previous box: shift back to image coordinates
        half = 0.5 * size / resize_factor
        x_prev, y_prev, w_prev, h_prev = self.state
        cx, cy = cx + x_prev + 0.5 * w_prev - half, cy + y_prev + 0.5 * h_prev - half
        self.state = clip_box([cx - 0.5 * w, cy - 0.5 * h, w, h], *image.shape[:2], self.margin)
        return self.state


def clip_box(box, height, width, margin):
    """Keep at least ``margin`` pixels of the box's size inside the image."""
    x1, y1, w, h = (float(v) for v in box)
    x2, y2 = x1 + w, y1 + h
    x1, x2 = min(max(0, x1), width - margin), min(max(margin, x2), width)
    y1, y2 = min(max(0, y1), height - margin), min(max(margin, y2), height)
    return [x1, y1, max(margin, x2 - x1), max(margin, y2 - y1)]


def frames(source):
    """RGB frames of a video file or of the images in a folder (sorted by name)."""
    source = Path(source)
    if source.is_dir():
        for path in sorted(p for p in source.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp")):
            yield cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        return
    capture = cv2.VideoCapture(str(source))
    ok, frame = capture.read()
    while ok:
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        ok, frame = capture.read()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an .onnx file written by tracking/export_model.py")
    parser.add_argument("video", help="a video file or a folder of frames")
    parser.add_argument("--init_bbox", required=True, help="x,y,w,h of the target in the first frame")
    parser.add_argument("--output", default=None, help="text file for the boxes (default: the screen)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads of the network (default: all cores)")
    args = parser.parse_args()
    try:
        box = [float(v) for v in args.init_bbox.split(",")]
    except ValueError:
        box = []
    if len(box) != 4 or not (box[2] > 0 and box[3] > 0):
        fail(f"--init_bbox must be x,y,w,h with w, h > 0, got {args.init_bbox}")
    if not Path(args.model).is_file():
        fail(f"model file not found: {args.model}")
    tracker = ExportedTracker(args.model, args.threads)
    boxes = []
    for index, image in enumerate(frames(args.video)):
        if index == 0:
            tracker.initialize(image, box)
            boxes.append(box)
        else:
            boxes.append(tracker.track(image))
    if not boxes:
        fail(f"no frames could be read from {args.video}")
    text = "".join(",".join(f"{v:.6f}" for v in b) + "\n" for b in boxes)
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
