"""Run a tracker on a benchmark; finished sequences are skipped, so an interrupted run just continues.

    python tracking/test.py ostrack vitb_256_mae_ce_32x4_ep300 --dataset lasot --threads 2 [--num_gpus 1]
        [--checkpoint PATH] [--device cpu|cuda] [--sequence NAME|INDEX] [--runid N] [--force]
        [--backend eager|bf16|bf16-autocast|bf16-compile|onnx|onnx-int8]

Results go to ``<save_dir>/test/tracking_results/<script>/<config>[_<runid:03d>][_<backend>]/`` in the official
raw format (``<seq>.txt`` boxes, ``<seq>_time.txt`` seconds) with a ``manifest.json`` naming the config digest,
checkpoint SHA-256, back-end, code and library versions; analyse them with ``tracking/analysis_results.py``.
Stored results are reused only when that manifest matches this run; otherwise the run stops, and ``--force``
moves them aside (never deletes) or ``--runid N`` tracks into a separate folder.
"""
from __future__ import annotations

import argparse

import _init_paths  # noqa: F401

from lib.utils.cli import run_main
from lib.utils.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("script", help="tracker family: experiments/<script>/ (ostrack, loretrack)")
    parser.add_argument("config", help="config name in experiments/<script>/ or a YAML path")
    parser.add_argument("--dataset", "--dataset_name", dest="dataset", default="otb",
                        help="lasot, lasot_extension_subset, got10k_test, got10k_val, trackingnet, uav, otb, nfs, "
                             "tnl2k, folder")
    parser.add_argument("--dataset_root", default=None, help="benchmark folder (default: the data settings)")
    parser.add_argument("--sequence", default=None, help="one sequence, by name or index")
    parser.add_argument("--sequences", nargs="+", default=None, help="only these sequences (names)")
    parser.add_argument("--threads", type=int, default=0, help="parallel worker processes (0: run in this one)")
    parser.add_argument("--num_gpus", type=int, default=0, help="spread workers over this many GPUs")
    parser.add_argument("--checkpoint", default=None,
                        help="weights (default: the TEST.EPOCH checkpoint of this config's training run)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--runid", type=int, default=None, help="store as <config>_<runid:03d>")
    parser.add_argument("--backend", default="eager",
                        help="network back-end: eager (fp32, default), bf16, bf16-autocast, bf16-compile, onnx, "
                             "onnx-int8 (CPU only); results go to <config>_<backend>")
    parser.add_argument("--save_dir", default=None, help="output root (default: settings / LORETRACK_SAVE_DIR)")
    parser.add_argument("--force", action="store_true",
                        help="results of another run in the folder are moved aside (never deleted), then tracked")
    parser.add_argument("--opts", nargs="*", default=[], help="config overrides KEY=VALUE")
    parser.add_argument("--no_progress", action="store_true")
    parser.add_argument("--debug", action="store_true", help="stop at the first error, with its traceback")
    args = parser.parse_args(argv)

    import torch

    from lib.config import resolve_config_path
    from lib.test.evaluation.datasets import get_dataset
    from lib.test.evaluation.running import checkpoint_identity, run_dataset
    from lib.test.tracker.backends import BACKENDS
    from lib.test.tracker.factory import TrackerFactory, default_checkpoint
    from lib.utils.paths import get_paths
    from lib.utils.run_layout import onnx_cache_dir, results_folder

    if args.threads < 0 or args.num_gpus < 0:
        raise UserError("--threads and --num_gpus must be >= 0")
    if args.backend not in BACKENDS:
        raise UserError(f"unknown --backend '{args.backend}'; choose one of {list(BACKENDS)}")
    if args.backend != "eager" and (args.device == "cuda" or args.num_gpus):
        raise UserError(f"--backend {args.backend} runs on the CPU only; use --backend eager on the GPU")
    if (args.device == "cuda" or args.num_gpus) and not torch.cuda.is_available():
        raise UserError("a GPU run was asked for (--device cuda / --num_gpus), but CUDA is not available; "
                        "use --device cpu")
    paths = get_paths(save_dir=args.save_dir)
    config_file = resolve_config_path(args.config, args.script)
    config_name = config_file.stem
    factory = TrackerFactory(args.config, args.script, args.checkpoint, tuple(args.opts))
    cfg = factory.load_config()  # fail early on a bad config, before any worker starts
    checkpoint = args.checkpoint or str(default_checkpoint(paths, args.script, config_name, cfg.TEST.EPOCH))
    options = {}
    if args.backend != "eager":
        options = {"backend": args.backend, "backend_options": {"cache_dir": str(onnx_cache_dir(paths))}}
    factory = TrackerFactory(args.config, args.script, checkpoint, tuple(args.opts), tracker_options=options)
    factory(args.device)  # fail early on a checkpoint that does not fit the config (and export ONNX once, here)

    sequences = get_dataset(args.dataset, paths=paths, root=args.dataset_root, sequences=args.sequences)
    if args.sequence is not None:
        sequences = [_select(sequences, args.sequence, args.dataset)]
    results_dir = results_folder(paths, args.script, config_name, args.runid, args.backend)
    identity = checkpoint_identity(cfg.to_dict(), checkpoint, args.backend, config_file=str(config_file.resolve()),
                                   overrides=list(args.opts), script=args.script, run_id=args.runid)
    num_gpus = max(args.num_gpus, 1) if args.device == "cuda" else args.num_gpus
    report = run_dataset(factory, sequences, results_dir, threads=args.threads, num_gpus=num_gpus,
                         debug=args.debug, show_progress=not args.no_progress, identity=identity,
                         dataset=args.dataset, force=args.force)
    return 0 if report.ok else 1


def _select(sequences, key: str, dataset: str):
    """One sequence by index or by name."""
    if key.isdigit() and int(key) < len(sequences):
        return sequences[int(key)]
    if key in sequences.names():
        return sequences[key]
    raise UserError(f"sequence '{key}' is not in dataset '{dataset}' ({len(sequences)} sequences; give a name "
                    "or an index)")


if __name__ == "__main__":
    raise SystemExit(run_main(main))
