"""The object LiteLLM loads: `litellm_settings: callbacks: solaris_hooks.callback.quota_callback`.

Importing this module validates the settings, migrates the `solaris` schema and mounts
the `/solaris` routes, so a proxy with bad settings or no database stops at start-up
with a message instead of serving calls it cannot meter. Kept tiny on purpose: LiteLLM
may execute it from a file path (a second module object), and only this module has
side effects on import.
"""

from __future__ import annotations

import logging
import os

from solaris_hooks.database import database_url
from solaris_hooks.hooks import SolarisCallback
from solaris_hooks.logs import log_event, logger
from solaris_hooks.migrations import migrate
from solaris_hooks.quota import QuotaService
from solaris_hooks.routes import mount_routes
from solaris_hooks.settings import load_settings


def _configure_logging() -> None:
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(os.environ.get("SOLARIS_LOG_LEVEL", "INFO").upper())
        logger.propagate = False


def build_callback() -> SolarisCallback:
    """Validate settings, migrate, mount the routes: everything the proxy needs from us."""
    _configure_logging()
    settings = load_settings()
    url = database_url()
    applied = migrate(url)
    service = QuotaService(settings, url)
    mount_routes(service)
    log_event("started", migrations_applied=applied, factor=settings.conversion_factor,
              default_tokens_per_user=settings.default_tokens_per_user, fail_mode=settings.fail_mode)
    return SolarisCallback(service)


quota_callback = build_callback()
