"""Export a trained tracker's network as deployable files, verified against eager and tagged with its metadata.

    python tracking/export_model.py <script> <config> --checkpoint PATH [--format onnx onnx-int8 ...]
        [--output DIR] [--opts KEY=VALUE ...] [--calibration_dataset NAME --calibration_root DIR] [--json OUT]

Formats: onnx (fp32), onnx-int8 (static int8 calibrated on real crops if it passes the accuracy gate, else
dynamic int8), openvino (IR .xml + .bin, fp32), openvino-int8 (NNCF static int8, kept only if it passes the gate).
Every file has a dynamic batch axis and carries the crop sizes and factors, normalisation, feature size, CE-mask
recipe, model digests and versions as metadata; tracking/track_exported.py tracks a video with such an ONNX file
and nothing of this project. Details: lib/test/tracker/export.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import _init_paths  # noqa: F401
from lib.utils.cli import base_parser, run_main, setup_logging


def main(argv: list[str] | None = None) -> int:
    from lib.test.tracker.export import FORMATS, ExportSettings

    defaults = ExportSettings(config="", checkpoint="", output="")
    parser = base_parser(__doc__.splitlines()[0], "opts", "json", "debug")
    parser.add_argument("script", help="experiments/<script>/ to look the config up in (e.g. ostrack)")
    parser.add_argument("config", help="config name in experiments/<script>/ or a YAML path")
    parser.add_argument("--checkpoint", required=True, help="trained weights")
    parser.add_argument("--format", nargs="+", default=list(defaults.formats), choices=FORMATS, dest="formats",
                        help="one or more of: " + ", ".join(FORMATS))
    parser.add_argument("--output", default="exported",
                        help="folder for the files (<config name>.onnx, <config name>.xml + .bin, ...)")
    parser.add_argument("--calibration_dataset", default=defaults.calibration_dataset,
                        help="int8 only: the dataset whose crops calibrate (and, other sequences, verify) int8")
    parser.add_argument("--calibration_root", default=None, help="int8 only: that dataset's folder")
    parser.add_argument("--calibration_crops", type=int, default=defaults.calibration_crops)
    parser.add_argument("--held_out_crops", type=int, default=defaults.held_out_crops)
    args = parser.parse_args(argv)
    setup_logging()

    from lib.test.tracker.export import export_model, format_result
    from lib.utils.io import atomic_write_text

    result = export_model(ExportSettings(
        config=args.config, checkpoint=args.checkpoint, output=args.output, script=args.script,
        formats=tuple(args.formats), opts=tuple(args.opts), calibration_dataset=args.calibration_dataset,
        calibration_root=args.calibration_root, calibration_crops=args.calibration_crops,
        held_out_crops=args.held_out_crops))
    print(format_result(result))
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(result.to_dict(), indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
