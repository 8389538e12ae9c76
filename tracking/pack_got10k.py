"""Pack GOT-10k test results into a submission zip for the evaluation server (the results are left untouched).

    python tracking/pack_got10k.py --tracker ostrack --param vitb_256_mae_ce_32x4_got10k_ep100
    python tracking/pack_got10k.py --result_dir output/test/tracking_results/ostrack/vitb/got10k --output sub.zip
"""
from __future__ import annotations

from collections.abc import Sequence

import _init_paths  # noqa: F401
from _pack_cli import pack_command
from lib.utils.cli import run_main


def main(argv: Sequence[str] | None = None) -> int:
    return pack_command(argv, "got10k", __doc__.splitlines()[0])


if __name__ == "__main__":
    raise SystemExit(run_main(main))
