"""Write the local path settings (data root, outputs, weights) used by training and testing.

    python tracking/create_default_local_file.py --workspace_dir . --data_dir ./data --save_dir ./output

Environment variables (LORETRACK_DATA_DIR, LORETRACK_<NAME>_DIR, ...) and command-line flags still take
precedence over this file, so nobody has to edit code or this file to run elsewhere.
"""
from __future__ import annotations

from pathlib import Path

import _init_paths  # noqa: F401
from lib.utils.cli import base_parser, run_main
from lib.utils.errors import SettingsError
from lib.utils.io import ensure_writable_file
from lib.utils.paths import settings_file, write_settings_file


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0], "save_dir",
                         save_dir={"default": "./output", "help": "checkpoints, logs and tracking results"})
    parser.add_argument("--workspace_dir", default=".", help="project workspace (default: current folder)")
    parser.add_argument("--data_dir", default="./data", help="root holding one sub-folder per dataset")
    parser.add_argument("--pretrained_dir", default=None,
                        help="weights folder (default: <workspace>/pretrained_models)")
    parser.add_argument("--output", default=None, help=f"settings file to write (default: {settings_file()})")
    args = parser.parse_args(argv)
    workspace = Path(args.workspace_dir)
    if not workspace.is_dir():
        raise SettingsError(f"--workspace_dir {workspace} is not a folder")
    target = ensure_writable_file(Path(args.output) if args.output else settings_file(), "the settings file")
    write_settings_file(target, workspace, Path(args.data_dir), Path(args.save_dir),
                        Path(args.pretrained_dir) if args.pretrained_dir else None)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
