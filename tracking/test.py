"""Run a tracker on a benchmark; finished sequences are skipped, so an interrupted run just continues.

    python tracking/test.py ostrack vitb_256_mae_ce_32x4_ep300 --dataset lasot --threads 2 [--num_gpus 1]
        [--checkpoint PATH] [--device cpu|cuda] [--sequence NAME|INDEX] [--runid N] [--force] [--batch N]
        [--backend eager|auto|onnx-int8|openvino-int8|...]

Results go to ``<save_dir>/test/tracking_results/<script>/<config>[_<runid:03d>][_<backend>]/`` in the official
raw format (``<seq>.txt`` boxes, ``<seq>_time.txt`` seconds) with a ``manifest.json`` naming the config digest,
checkpoint SHA-256, back-end, code and library versions; analyse them with ``tracking/analysis_results.py``.
Stored results are reused only when that manifest matches this run; otherwise the run stops, and ``--force``
moves them aside (never deletes) or ``--runid N`` tracks into a separate folder.

``--batch N`` tracks N sequences at once in one process, one network call per frame step (a sequence that ends
or fails leaves, the next one joins). The boxes are those of ``--batch 1`` (eager fp32: identical; other back-ends
within their accuracy gate; ``onnx-int8`` runs the samples one by one, since its dynamic quantisation would make
a frame depend on its batch mates), so the results folder is the same; each frame's time is an equal share of its
step. With ``--threads W`` each of the W workers tracks its own lockstep batch of N.

Many processes, one results folder: under ``torchrun --nproc_per_node K [--nnodes N ...] tracking/test.py ...``
each rank tracks its shard of the sequences (on ``cuda:LOCAL_RANK`` with ``--device cuda``), then helps with the
other ranks' unclaimed ones; no process group is needed. Commands started by hand, on this or other machines
sharing the folder, cooperate the same way: each sequence is claimed before it is tracked, so none is tracked
twice, and the claims of a runner that died are taken over (on another machine after ``--claim_lease`` minutes
without its heartbeat).
"""
from __future__ import annotations

import _init_paths  # noqa: F401
from lib.utils.cli import base_parser, run_main


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], "save_dir", "device", "opts", "no_progress", epilog=__doc__,
                         debug={"help": "stop at the first error, with its traceback"})
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
    parser.add_argument("--batch", type=int, default=1,
                        help="track this many sequences at once in lockstep, one network call per frame step "
                             "(same boxes and result files as 1; with --threads, per worker)")
    parser.add_argument("--checkpoint", default=None,
                        help="weights (default: the TEST.EPOCH checkpoint of this config's training run)")
    parser.add_argument("--runid", type=int, default=None, help="store as <config>_<runid:03d>")
    parser.add_argument("--backend", default="eager",
                        help="network back-end: eager (fp32, default), auto (the fastest that passes the accuracy "
                             "gate here) or a name of lib/test/tracker/backends (CPU only; an unknown name lists "
                             "them); results go to <config>_<backend>")
    parser.add_argument("--claim_lease", type=float, default=None, metavar="MINUTES",
                        help="a sequence claimed by a runner on another machine that gave no sign of life for this "
                             "long is tracked again by the next runner (default: 10)")
    parser.add_argument("--force", action="store_true",
                        help="results of another run in the folder are moved aside (never deleted), then tracked")
    args = parser.parse_args(argv)

    from lib.test.evaluation.tester import TestRun, track_benchmark

    report = track_benchmark(TestRun(
        args.script, args.config, dataset=args.dataset, dataset_root=args.dataset_root, sequence=args.sequence,
        sequences=args.sequences, workers=args.threads, batch=args.batch, num_gpus=args.num_gpus,
        checkpoint=args.checkpoint,
        device=args.device, run_id=args.runid, backend=args.backend, save_dir=args.save_dir, overrides=args.opts,
        force=args.force, progress=not args.no_progress, debug=args.debug, claim_lease_min=args.claim_lease))
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(run_main(main))
