"""Every effective setting with where it came from, for `GET /solaris/settings` and the pages."""

from __future__ import annotations

import os
from collections.abc import Mapping

from solaris_hooks.settings.environment import Environment, env_overrides
from solaris_hooks.settings.loading import env_prefix, find_config_path, read_block, settings_from_mapping

masked = "********"


def _mail_variables(environment: Environment) -> dict[str, str]:
    """The mail settings of the environment as written, the password masked when set."""
    return {
        "SMTP_HOST": environment.smtp_host,
        "SMTP_PORT": environment.smtp_port,
        "SMTP_SECURITY": environment.smtp_security,
        "SMTP_USERNAME": environment.smtp_username,
        "SMTP_PASSWORD": masked if environment.smtp_password.get_secret_value() else "",
        "SMTP_FROM": environment.smtp_from,
        "ADMIN_EMAILS": environment.admin_emails,
    }


def describe_settings(environ: Mapping[str, str] = os.environ) -> dict[str, dict[str, object]]:
    """Every effective setting with its source: `env NAME`, `yaml`, `yaml (os.environ/NAME)`
    or `default`. Mail settings come from the environment; the password is masked."""
    path = find_config_path(environ)
    block = read_block(path) or {}
    settings = settings_from_mapping(block, environ)
    environment = Environment.read(environ)
    overrides = environment.setting_overrides()
    described: dict[str, dict[str, object]] = {}
    values = settings.model_dump(mode="json")
    if values.get("trusted_keys"):
        # Raw keys are secrets: show aliases and `master_key` only.
        raw = block.get("trusted_keys")
        written = list(raw) if isinstance(raw, list) else []
        values["trusted_keys"] = [
            entry
            if entry == "master_key" or not (str(entry).startswith("sk-") or str(source).startswith(env_prefix))
            else masked
            for entry, source in zip(values["trusted_keys"], written + [""] * len(values["trusted_keys"]), strict=False)
        ]
    for key, value in values.items():
        override = next((env for env, target in env_overrides.items() if target == key and env in overrides), None)
        if override:
            source = f"env {override}"
        elif key in block:
            raw = block[key]
            source = f"yaml ({raw})" if isinstance(raw, str) and raw.startswith(env_prefix) else "yaml"
        else:
            source = "default"
        described[key] = {"value": value, "source": source}
    for name, value in _mail_variables(environment).items():
        if value:
            described[name.lower()] = {"value": value, "source": f"env {name}"}
    if path is not None:
        described["config_file"] = {"value": str(path), "source": "SOLARIS_CONFIG or the proxy's --config"}
    return described
