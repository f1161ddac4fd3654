"""Every environment variable the package reads, in one typed place.

The values stay the strings the deployment wrote (blank is not unset, nothing is
stripped): each reader keeps its own rules for blanks and defaults, and the errors
about a bad value keep naming the variable (SettingsError from the reader, e.g.
`solaris_settings.conversion_factor (from CONVERSION_FACTOR)`). Anything that can hold a
secret is a SecretStr, so it never reaches a log line or a repr.

`Environment.read(environ)` reads a mapping instead of the process environment, so a
test passes a dict. `os.environ/NAME` references in the YAML name any variable; they are
resolved from the same mapping by solaris_hooks.settings.loading. LITELLM_MASTER_KEY is
also read by solaris_hooks.litellm_proxy (a layer below this one), as the fallback of
LiteLLM's own master key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Self

from pydantic import AliasGenerator, SecretStr
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

# Variables that override a setting of the YAML block, as documented in the README.
env_overrides: dict[str, str] = {
    "DEFAULT_TOKENS_PER_USER": "default_tokens_per_user",
    "CONVERSION_FACTOR": "conversion_factor",
    "CREDITS_EMAIL": "credits_email",
    "SOLARIS_PUBLIC_URL": "public_url",
}


class _MappingSource(EnvSettingsSource):
    """pydantic-settings' environment source, over a given mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Names are case-sensitive and blank values are kept: the mapping as it is.
        return dict(self._environ)


class Environment(BaseSettings):
    """Field `smtp_host` is the variable SMTP_HOST, and so on (exact case). Build it with
    `Environment.read()`: the constructor itself reads no variable, so that a mapping given
    to `read` is the whole environment."""

    model_config = SettingsConfigDict(
        case_sensitive=True, frozen=True, extra="ignore", alias_generator=AliasGenerator(validation_alias=str.upper)
    )

    # The ledger's Postgres; SOLARIS_DATABASE_URL wins (solaris_hooks.db.connection).
    solaris_database_url: SecretStr = SecretStr("")
    database_url: SecretStr = SecretStr("")
    # LiteLLM's master key; `solaris run` generates one when unset.
    litellm_master_key: SecretStr = SecretStr("")
    # Signs admin sessions and personal links; unset: derived from the master key.
    solaris_secret_key: SecretStr = SecretStr("")
    # Extra keys of the /solaris API: comma-separated `key` or `alias=key`.
    solaris_admin_keys: SecretStr = SecretStr("")
    solaris_viewer_keys: SecretStr = SecretStr("")
    # Alert e-mail (solaris_hooks.mail.smtp): SMTP_HOST unset means mail is off.
    smtp_host: str = ""
    smtp_port: str = ""
    smtp_security: str = ""
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_from: str = ""
    smtp_timeout_s: str = ""
    admin_emails: str = ""
    # Overrides of the YAML block (env_overrides): used when not blank.
    default_tokens_per_user: str = ""
    conversion_factor: str = ""
    credits_email: str = ""
    solaris_public_url: str = ""
    # The proxy's YAML: SOLARIS_CONFIG, else LiteLLM's --config, else CONFIG_FILE_PATH.
    solaris_config: str | None = None
    config_file_path: str | None = None
    # The embedded Postgres, the generated master key and, by default, the spool.
    solaris_data_dir: str = ".solaris"
    solaris_log_level: str = "INFO"
    # Where `solaris run` listens when --port and --host are not given.
    port: str = ""
    host: str = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)

    @classmethod
    def read(cls, environ: Mapping[str, str] = os.environ) -> Self:
        """The variables of `environ` (the process environment by default)."""
        return cls(**_MappingSource(cls, environ)())

    def setting_overrides(self) -> dict[str, str]:
        """{variable: stripped value} of each override in env_overrides that is not blank."""
        values = {name: str(getattr(self, name.lower())).strip() for name in env_overrides}
        return {name: value for name, value in values.items() if value}
