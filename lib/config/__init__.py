"""Experiment configuration: one schema with defaults, YAML files override it."""
from lib.config.config import Config, load_config, resolve_config_path
from lib.config.defaults import default_config_dict

__all__ = ["Config", "load_config", "resolve_config_path", "default_config_dict"]
