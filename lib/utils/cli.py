"""Shared behaviour of the command-line scripts in ``tracking/``.

Every script calls :func:`run_main`: a :class:`~lib.utils.errors.UserError` becomes one line on stderr
and exit code 2 (the traceback only with ``--debug``); Ctrl-C exits with 130.
"""
from __future__ import annotations

import sys
import traceback
from typing import Callable, Sequence

from lib.utils.errors import UserError

EXIT_USER_ERROR = 2


def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)`` and map user errors to a one-line message and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        code = main(args)
    except UserError as err:
        if debug:
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
