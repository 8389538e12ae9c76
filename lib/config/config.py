"""Load an experiment YAML on top of the defaults, strictly.

An unknown key, a wrong type or malformed YAML is a :class:`~lib.utils.errors.ConfigError` naming the
key and the file: a typo in a config must never silently fall back to a default. A file may inherit another
with ``_BASE_: <path relative to it>`` (as in detectron2) and state only what differs.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from lib.config.defaults import CHOICES, NULLABLE_KEYS, RANGES, default_config_dict
from lib.utils.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS_DIR = REPO_ROOT / "experiments"


class Config(dict):
    """A nested dict with attribute access (``cfg.MODEL.BACKBONE.TYPE``), as OSTrack code expects."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key '{name}'") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __deepcopy__(self, memo: dict) -> Config:
        return _to_config(copy.deepcopy(self.to_dict(), memo))

    def to_dict(self) -> dict[str, Any]:
        return {k: v.to_dict() if isinstance(v, Config) else copy.deepcopy(v) for k, v in self.items()}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _to_config(d: Mapping[str, Any]) -> Config:
    return Config({k: _to_config(v) if isinstance(v, Mapping) else v for k, v in d.items()})


def _check_type(key: str, default: Any, value: Any, source: str) -> Any:
    """Return ``value`` coerced to the default's type, or raise naming key and source."""
    if default is None:
        if value is None or isinstance(value, str):
            return value
    elif isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads '1e-3' (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, list):
        if isinstance(value, (list, tuple)):
            return list(value)
    else:  # pragma: no cover - schema only holds the types above
        return value
    expected = "a string or null" if default is None else type(default).__name__
    raise ConfigError(f"{source}: key '{key}' must be {expected}, got {value!r} ({type(value).__name__})")


def merge_into(base: dict[str, Any], update: Mapping[str, Any], source: str, prefix: str = "") -> None:
    """Merge ``update`` into ``base`` in place; every key must already exist in ``base``."""
    if not isinstance(update, Mapping):
        where = f"section '{prefix.rstrip('.')}'" if prefix else "top level"
        raise ConfigError(f"{source}: {where} must be a mapping, got {type(update).__name__}")
    for key, value in update.items():
        full_key = f"{prefix}{key}"
        if key not in base:
            known = ", ".join(sorted(base)) if base else "none"
            raise ConfigError(f"{source}: unknown key '{full_key}' (known keys here: {known})")
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: key '{full_key}' is a section and must be a mapping, got {value!r}")
            merge_into(base[key], value, source, prefix=f"{full_key}.")
        elif full_key in NULLABLE_KEYS:
            base[key] = None if value is None else _check_type(full_key, NULLABLE_KEYS[full_key](), value, source)
        else:
            base[key] = _check_type(full_key, base[key], value, source)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of sections, got {type(content).__name__}")
    return content


BASE_KEY = "_BASE_"


def read_yaml_chain(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
    """``path``'s content preceded by its bases' (``_BASE_``), each with its source: merged in this order."""
    resolved = path.resolve()
    if resolved in seen:
        cycle = " -> ".join(str(p) for p in (*seen, resolved))
        raise ConfigError(f"{path}: {BASE_KEY} forms a cycle ({cycle}); remove one of the {BASE_KEY} entries")
    content = read_yaml(path)
    base = content.pop(BASE_KEY, None)
    if base is None:
        return [(str(path), content)]
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: {BASE_KEY} must be the path of another YAML file, got {base!r}")
    base_path = Path(base) if Path(base).is_absolute() else path.parent / base
    if not base_path.is_file():
        raise ConfigError(f"{path}: its {BASE_KEY} file {base_path} does not exist; fix the path (relative to "
                          f"{path.parent})")
    return [*read_yaml_chain(base_path, (*seen, resolved)), (str(path), content)]


def _dotted_to_nested(overrides: Mapping[str, Any] | Iterable[str]) -> dict[str, Any]:
    """Accept ``{'MODEL.BACKBONE.DEPTH': 4}``, nested dicts, or ``['MODEL.BACKBONE.DEPTH=4', ...]``."""
    items: list[tuple[str, Any]] = []
    if isinstance(overrides, Mapping):
        items = list(overrides.items())
    else:
        for entry in overrides:
            if "=" not in entry:
                raise ConfigError(f"override '{entry}' must look like KEY=VALUE, e.g. MODEL.BACKBONE.DEPTH=4")
            key, raw = entry.split("=", 1)
            try:
                items.append((key.strip(), yaml.safe_load(raw)))
            except yaml.YAMLError:
                raise ConfigError(f"override '{entry}': value is not valid YAML") from None
    nested: dict[str, Any] = {}
    for key, value in items:
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{key}' conflicts with another override")
        if isinstance(value, Mapping) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]].update(value)
        else:
            node[parts[-1]] = value
    return nested


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'TRAIN': {'LR': 1}}`` -> ``{'TRAIN.LR': 1}``: the dotted keys ranges, digests and diffs speak of."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _check_value(key: str, value: Any, source: str) -> None:
    """Finite floats everywhere; the range of :data:`RANGES` where one is given (lists element-wise)."""
    values = value if isinstance(value, list) else [value]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
        raise ConfigError(f"{source}: key '{key}' must be a finite number, got {value!r}")
    if key not in RANGES:
        return
    low, high, low_allowed = RANGES[key]
    for number in numbers:
        too_low = low is not None and (number < low or (number == low and not low_allowed))
        if too_low or (high is not None and number > high):
            bound = (f"at least {low}" if low_allowed else f"above {low}") if low is not None else ""
            bound += (" and " if bound and high is not None else "") + (f"at most {high}" if high is not None else "")
            raise ConfigError(f"{source}: key '{key}' must be {bound}, got {value!r}")


def validate(cfg: Config, source: str) -> None:
    """Value ranges, then cross-key checks that a per-key type check cannot express."""
    flat = flatten(cfg)
    for key, value in flat.items():
        _check_value(key, value, source)
    for key, supported in CHOICES.items():
        if flat[key] not in supported:
            listed = " or ".join(repr(v) for v in supported)
            raise ConfigError(f"{source}: {key} {flat[key]!r} is not supported (supported: {listed}); set "
                              f"{key}: {supported[0]!r}")
    for split in ("TRAIN", "VAL"):
        section = cfg.DATA[split]
        if len(section.DATASETS_RATIO) != len(section.DATASETS_NAME):
            raise ConfigError(f"{source}: DATA.{split}.DATASETS_RATIO has {len(section.DATASETS_RATIO)} entries for "
                              f"{len(section.DATASETS_NAME)} datasets in DATASETS_NAME; give one ratio per dataset")
        if section.DATASETS_NAME and sum(section.DATASETS_RATIO) <= 0:
            raise ConfigError(f"{source}: DATA.{split}.DATASETS_RATIO {section.DATASETS_RATIO} must have a positive "
                              "sum (ratios are sampling weights)")
    if not cfg.DATA.TRAIN.DATASETS_NAME:
        raise ConfigError(f"{source}: DATA.TRAIN.DATASETS_NAME is empty; name at least one training dataset")
    bb = cfg.MODEL.BACKBONE
    if bb.STRIDE != bb.PATCH_SIZE:
        raise ConfigError(f"{source}: MODEL.BACKBONE.STRIDE ({bb.STRIDE}) must equal MODEL.BACKBONE.PATCH_SIZE "
                          f"({bb.PATCH_SIZE}): the one-stream ViT's stride is its patch size")
    if bb.EMBED_DIM % bb.NUM_HEADS:
        raise ConfigError(f"{source}: MODEL.BACKBONE.EMBED_DIM ({bb.EMBED_DIM}) must be divisible by "
                          f"MODEL.BACKBONE.NUM_HEADS ({bb.NUM_HEADS})")
    if len(bb.CE_LOC) != len(bb.CE_KEEP_RATIO):
        raise ConfigError(f"{source}: MODEL.BACKBONE.CE_LOC {bb.CE_LOC} and CE_KEEP_RATIO {bb.CE_KEEP_RATIO} "
                          "must have the same length")
    bad = [i for i in bb.CE_LOC if not 0 <= i < bb.DEPTH]
    if bad:
        raise ConfigError(f"{source}: MODEL.BACKBONE.CE_LOC has block indices {bad} outside 0..{bb.DEPTH - 1}")
    if bb.CE_TEMPLATE_RANGE not in ("ALL", "CTR_POINT", "CTR_REC", "GT_BOX"):
        raise ConfigError(f"{source}: MODEL.BACKBONE.CE_TEMPLATE_RANGE must be ALL, CTR_POINT, CTR_REC or GT_BOX, "
                          f"got '{bb.CE_TEMPLATE_RANGE}'")
    for section, keys in (("DATA.SEARCH", ("SIZE",)), ("DATA.TEMPLATE", ("SIZE",)),
                          ("TEST", ("SEARCH_SIZE", "TEMPLATE_SIZE"))):
        node = cfg
        for part in section.split("."):
            node = node[part]
        for key in keys:
            if node[key] is not None and node[key] % bb.PATCH_SIZE:
                raise ConfigError(f"{source}: {section}.{key} ({node[key]}) must be a multiple of the patch size "
                                  f"({bb.PATCH_SIZE})")


def known_scripts() -> list[str]:
    """Tracker families: the folders of ``experiments/`` (output trees are named after them)."""
    return sorted(entry.name for entry in EXPERIMENTS_DIR.iterdir()
                  if entry.is_dir() and not entry.name.startswith(("_", ".")))


def resolve_config_path(name_or_path: str | Path, script: str | None = None) -> Path:
    """A YAML path, or a config name looked up in ``experiments/<script>/<name>.yaml``.

    ``script`` must be one of :func:`known_scripts` even with a YAML path: it names the output folders.
    """
    if script is not None and script not in known_scripts():
        raise ConfigError(f"unknown script '{script}'; known: {known_scripts()} (the folders of experiments/)")
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidates = []
    if script:
        candidates.append(EXPERIMENTS_DIR / script / f"{name_or_path}.yaml")
    candidates += sorted(EXPERIMENTS_DIR.glob(f"*/{name_or_path}.yaml"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = f"experiments/{script}/" if script else "experiments/*/"
    raise ConfigError(f"config '{name_or_path}' not found (looked for {where}{name_or_path}.yaml); "
                      "pass a YAML path or one of the names under experiments/")


def load_config(path: str | Path | None = None,
                overrides: Mapping[str, Any] | Iterable[str] | None = None,
                script: str | None = None) -> Config:
    """Defaults, then the YAML file at ``path`` (or a config name), then ``overrides``; validated."""
    merged = default_config_dict()
    source = "defaults"
    if path is not None:
        yaml_path = resolve_config_path(path, script)
        source = str(yaml_path)
        for part_source, content in read_yaml_chain(yaml_path):
            merge_into(merged, content, part_source)
    if overrides:
        merge_into(merged, _dotted_to_nested(overrides), "overrides")
        source = f"{source} + overrides"
    cfg = _to_config(merged)
    validate(cfg, source)
    return cfg
