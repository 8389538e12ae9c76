"""Shared behaviour of the command-line scripts in ``tracking/``.

Every script builds its parser with :func:`base_parser`, which declares the flags all scripts share once (as
detectron2's ``default_argument_parser`` does), and calls :func:`run_main`: a
:class:`~lib.utils.errors.UserError` becomes one line on stderr and exit code 2 (the traceback only with
``--debug``); Ctrl-C exits with 130. A flag argparse rejects is a user error too (one line, not the usage text).
"""
from __future__ import annotations

import argparse
import atexit
import logging
import sys
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from lib.utils.errors import UserError

EXIT_USER_ERROR = 2


def json_report_path(text: str) -> str:
    """``--json PATH``, proved writable while the flags are parsed: before any work, not after it."""
    from lib.utils.io import ensure_writable_file

    ensure_writable_file(text, "the --json report")
    return text


# The flags several scripts share: name -> argparse keyword arguments. A script may override a default where
# its meaning differs (e.g. training picks the GPU when there is one).
COMMON_FLAGS: dict[str, dict[str, Any]] = {
    "save_dir": {"default": None, "help": "output root (default: settings / LORETRACK_SAVE_DIR)"},
    "opts": {"nargs": "*", "default": [], "metavar": "KEY=VALUE", "help": "config overrides, e.g. TRAIN.EPOCH=10"},
    "device": {"default": "cpu", "choices": ["cpu", "cuda"], "help": "where the network runs"},
    "threads": {"type": int, "default": None, "help": "torch intra-op threads (default: torch's choice)"},
    "json": {"type": json_report_path, "default": None, "metavar": "PATH",
             "help": "also write every number to this JSON file"},
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


class OneLineErrorParser(argparse.ArgumentParser):
    """Bad arguments become a UserError: one line on stderr and exit code 2, like every other user mistake."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see --help)")


def base_parser(description: str, *names: str, epilog: str | None = None, **overrides: Any
                ) -> argparse.ArgumentParser:
    """A parser with the shared flags ``names`` and ``--debug`` (see :func:`add_common_flags` for ``overrides``)."""
    parser = OneLineErrorParser(description=description, epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, *[name for name in names if name != "debug"], **overrides)
    add_common_flags(parser, "debug", **overrides)
    return parser


class RepeatedWarningFilter(logging.Filter):
    """Let the first of a series of like warnings through and count the rest (same logger and message template):
    1000 "unreadable frame" warnings become that warning once plus one line with the count (:meth:`summary`)."""

    def __init__(self) -> None:
        super().__init__()
        self.first: dict[tuple[str, str], logging.LogRecord] = {}
        self.repeats: Counter = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        if key not in self.first:
            self.first[key] = record
            return True
        self.repeats[key] += 1
        return False

    def summary(self) -> list[str]:
        return [f"{count} more warning(s) like '{self.first[key].getMessage()}' (shown once)"
                for key, count in self.repeats.items()]


def setup_logging(level: int = logging.INFO, fmt: str = "%(levelname)s %(message)s") -> RepeatedWarningFilter:
    """Configure the root logger for a script, with like warnings collapsed into one line with a count,
    printed when the process ends.

    Where the host already configured logging (a test runner, a program that calls ``main``), its handlers are
    left as they are: a filter on them would hide its later warnings.
    """
    repeated = RepeatedWarningFilter()
    root = logging.getLogger()
    if root.handlers:
        return repeated
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(repeated)
    root.addHandler(handler)
    root.setLevel(level)

    def report() -> None:
        for line in repeated.summary():
            logging.getLogger(__name__).warning(line)  # each summary is its own template: never collapsed

    atexit.register(report)
    return repeated


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
