"""Pack TrackingNet test results into a submission zip for the evaluation server (the results are left untouched).

    python tracking/pack_trackingnet.py --tracker ostrack --param vitb_256_mae_ce_32x4_ep300
    python tracking/pack_trackingnet.py --result_dir path/to/trackingnet_results --output sub.zip
"""
from __future__ import annotations

from collections.abc import Sequence

import _init_paths  # noqa: F401
from _pack_cli import pack_command
from lib.utils.cli import run_main


def main(argv: Sequence[str] | None = None) -> int:
    return pack_command(argv, "trackingnet", __doc__.splitlines()[0])


if __name__ == "__main__":
    raise SystemExit(run_main(main))
