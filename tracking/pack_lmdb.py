"""Pack a dataset folder into an LMDB that the training readers can use instead of the folder.

    python tracking/pack_lmdb.py --src data/got10k --dst data/got10k_lmdb
    python tracking/pack_lmdb.py --src data/lasot --dst data/lasot_lmdb --force   # move the old pack aside

Every file is stored under its path relative to --src, with a folder index so readers can list folders.
Point the settings at the result (LORETRACK_<NAME>_LMDB_DIR, e.g. LORETRACK_GOT10K_LMDB_DIR, or the default
<data_dir>/<name>_lmdb) and use the '<NAME>_lmdb' dataset names, e.g. GOT10K_vottrain_lmdb.
The output is written to a hidden temporary folder beside --dst and renamed at the end, so --dst is never
half-written; the temporary folder of a run killed outright is removed by the next run. --force never deletes:
it renames the old pack to '<dst>.moved-<UTC time>' (delete that yourself once the new pack works).
"""
from __future__ import annotations

import sys
from pathlib import Path

import _init_paths  # noqa: F401
from lib.train.data.datasets.storage import pack_folder
from lib.utils.cli import base_parser, run_main
from lib.utils.io import ensure_writable, folder_bytes, reporting_disk_full


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--src", required=True, help="dataset folder to pack (e.g. the GOT-10k root)")
    parser.add_argument("--dst", required=True, help="LMDB folder to create (e.g. data/got10k_lmdb)")
    parser.add_argument("--force", action="store_true",
                        help="if --dst exists, rename it to <dst>.moved-<UTC time> (never deleted) and pack anew")
    args = parser.parse_args(argv)
    dst = Path(args.dst).resolve()
    ensure_writable(dst.parent, "--dst")
    with reporting_disk_full("the LMDB pack", dst, lambda: folder_bytes(args.src), "run the same command again"):
        pack_folder(args.src, dst, force=args.force, progress=lambda line: print(line, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
