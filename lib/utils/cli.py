"""Shared behaviour of the command-line scripts in ``tracking/``.

Every script builds its parser with :func:`base_parser`, which declares the flags all scripts share once (as
detectron2's ``default_argument_parser`` does), and calls :func:`run_main`: a
:class:`~lib.utils.errors.UserError` becomes one line on stderr and exit code 2 (the traceback only with
``--debug``); Ctrl-C exits with 130.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from lib.utils.errors import UserError

EXIT_USER_ERROR = 2

# The flags several scripts share: name -> argparse keyword arguments. A script may override a default where
# its meaning differs (e.g. training picks the GPU when there is one).
COMMON_FLAGS: dict[str, dict[str, Any]] = {
    "save_dir": {"default": None, "help": "output root (default: settings / LORETRACK_SAVE_DIR)"},
    "opts": {"nargs": "*", "default": [], "metavar": "KEY=VALUE", "help": "config overrides, e.g. TRAIN.EPOCH=10"},
    "device": {"default": "cpu", "choices": ["cpu", "cuda"], "help": "where the network runs"},
    "threads": {"type": int, "default": None, "help": "torch intra-op threads (default: torch's choice)"},
    "json": {"default": None, "metavar": "PATH", "help": "also write every number to this JSON file"},
    "no_progress": {"action": "store_true", "help": "no progress bars (logs on clusters)"},
    "debug": {"action": "store_true", "help": "show tracebacks"},
}


def add_common_flags(parser: argparse.ArgumentParser | Any, *names: str, **overrides: Any) -> None:
    """Declare the shared flags ``names`` on ``parser`` (or an argument group).

    ``overrides`` maps a flag name to its default, or to a dict of argparse options (``default``, ``help``).
    """
    for name in names:
        options = dict(COMMON_FLAGS[name])
        if name in overrides:
            change = overrides[name]
            options.update(change if isinstance(change, dict) else {"default": change})
        parser.add_argument(f"--{name}", **options)


def base_parser(description: str, *names: str, epilog: str | None = None, **overrides: Any
                ) -> argparse.ArgumentParser:
    """A parser with the shared flags ``names`` and ``--debug`` (see :func:`add_common_flags` for ``overrides``)."""
    parser = argparse.ArgumentParser(description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, *[name for name in names if name != "debug"], **overrides)
    add_common_flags(parser, "debug", **overrides)
    return parser


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
