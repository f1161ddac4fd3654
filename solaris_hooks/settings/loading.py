"""Where the settings come from: the `solaris_settings:` block of the proxy's YAML, plus overrides.

Precedence, strongest first: the environment variables that the deployment guides name
(`DEFAULT_TOKENS_PER_USER`, `CONVERSION_FACTOR`, `CREDITS_EMAIL`, `SOLARIS_PUBLIC_URL`),
then the YAML block, then the defaults of Settings. A YAML value may be `os.environ/NAME`,
as in LiteLLM's own config. Anything invalid raises SettingsError naming the key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import ValidationError

from solaris_hooks.exceptions import SettingsError
from solaris_hooks.litellm_proxy import config_file_path
from solaris_hooks.settings.environment import Environment, env_overrides
from solaris_hooks.settings.model import Settings

settings_block = "solaris_settings"
env_prefix = "os.environ/"


def _resolve_env_refs(value: object, key: str, environ: Mapping[str, str]) -> object:
    if isinstance(value, str) and value.startswith(env_prefix):
        name = value[len(env_prefix) :]
        if name not in environ:
            raise SettingsError(f"{settings_block}.{key}: environment variable {name} is not set")
        return environ[name]
    if isinstance(value, dict):
        return {k: _resolve_env_refs(v, f"{key}.{k}", environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env_refs(item, f"{key}.{index}", environ) for index, item in enumerate(value)]
    return value


def settings_from_mapping(block: Mapping[str, object] | None, environ: Mapping[str, str] = os.environ) -> Settings:
    """Build Settings from a parsed `solaris_settings` block and the environment."""
    if block is None:
        block = {}
    if not isinstance(block, Mapping):
        raise SettingsError(f"{settings_block}: must be a mapping of settings, got {type(block).__name__}")
    values = {str(k): _resolve_env_refs(v, str(k), environ) for k, v in block.items()}
    overrides = Environment.read(environ).setting_overrides()
    for env_name, value in overrides.items():
        values[env_overrides[env_name]] = value
    try:
        return Settings.model_validate(values)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            where = ".".join(str(part) for part in item["loc"])
            origin = next((env for env, key in env_overrides.items() if key == item["loc"][0]), None)
            source = f" (from {origin})" if origin in overrides else ""
            problems.append(f"{settings_block}.{where}{source}: {item['msg']}, got {item.get('input')!r}")
        raise SettingsError("; ".join(problems)) from None


def find_config_path(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The YAML the proxy was started with, or None when none can be found."""
    environment = Environment.read(environ)
    candidates: list[str | None] = [environment.solaris_config]
    candidates.append(config_file_path())
    candidates += [environment.config_file_path, "litellm-config.yaml"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def read_block(path: Path | None) -> Mapping[str, object] | None:
    """The raw `solaris_settings` block of a config file (None when absent)."""
    if path is None:
        return None
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise SettingsError(f"cannot read {path}: {error}") from None
    if not isinstance(document, dict):
        raise SettingsError(f"{path}: the top level must be a mapping")
    return document.get(settings_block)


def load_settings(config_path: Path | None = None, environ: Mapping[str, str] = os.environ) -> Settings:
    """Read the `solaris_settings` block from the proxy's YAML (if any) and validate it."""
    return settings_from_mapping(read_block(config_path or find_config_path(environ)), environ)
