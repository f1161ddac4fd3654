"""Typed settings: the `solaris_settings:` block of litellm-config.yaml, and the environment.

One idea per module:
- model: Settings, the block's fields with their defaults and bounds;
- loading: reading the block from the proxy's YAML, `os.environ/NAME` references and the
  environment overrides (load_settings, settings_from_mapping, find_config_path);
- description: every effective setting with its source (describe_settings);
- environment: every environment variable the package reads (Environment);
- routes, input_part_bounds, model_prices, refill: the types of the nested settings.

Everything is importable from here, as `from solaris_hooks.settings import Settings`.
"""

from solaris_hooks.exceptions import SettingsError
from solaris_hooks.settings.description import describe_settings
from solaris_hooks.settings.environment import Environment, env_overrides
from solaris_hooks.settings.input_part_bounds import InputPartBounds
from solaris_hooks.settings.loading import (
    env_prefix,
    find_config_path,
    load_settings,
    read_block,
    settings_block,
    settings_from_mapping,
)
from solaris_hooks.settings.model import Factor, Settings, Threshold
from solaris_hooks.settings.model_prices import ModelPrice
from solaris_hooks.settings.refill import RefillSettings
from solaris_hooks.settings.routes import Rule, bounded_routes, validate_routes

__all__ = [
    "Environment",
    "Factor",
    "InputPartBounds",
    "ModelPrice",
    "RefillSettings",
    "Rule",
    "Settings",
    "SettingsError",
    "Threshold",
    "bounded_routes",
    "describe_settings",
    "env_overrides",
    "env_prefix",
    "find_config_path",
    "load_settings",
    "read_block",
    "settings_block",
    "settings_from_mapping",
    "validate_routes",
]
