"""The object LiteLLM loads: `litellm_settings: callbacks: solaris_hooks.callback.quota_callback`.

Importing this module validates the settings, migrates the `solaris` schema and mounts
the `/solaris` routes, so a proxy with bad settings or no database stops at start-up
with a message instead of serving calls it cannot meter. Kept tiny on purpose: LiteLLM
may execute it from a file path (a second module object), and only this module has
side effects on import.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from solaris_hooks.db.connection import database_url
from solaris_hooks.db.migrations import migrate
from solaris_hooks.db.refill import refill_forever
from solaris_hooks.hooks import SolarisCallback
from solaris_hooks.litellm_proxy import quiet_errors_raised_in
from solaris_hooks.logs import log_event, logger
from solaris_hooks.mail.outbox import Outbox
from solaris_hooks.mail.smtp import smtp_settings_from_env
from solaris_hooks.mail.webhook_outbox import WebhookOutbox
from solaris_hooks.quota.service import QuotaService
from solaris_hooks.settings import Environment, load_settings
from solaris_hooks.web.mount import mount_routes


def _configure_logging() -> None:
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(Environment.read().solaris_log_level.upper())
        logger.propagate = False


def build_callback() -> SolarisCallback:
    """Validate settings, migrate, mount the routes: everything the proxy needs from us."""
    _configure_logging()
    # A refusal is one `refused` line of ours, not also LiteLLM's ERROR line for the
    # exception the hook raises to refuse (see litellm_proxy.ErrorsRaisedIn).
    quiet_errors_raised_in(SolarisCallback.async_pre_call_hook)
    settings = load_settings()
    url = database_url()
    applied = migrate(url)
    smtp_settings = smtp_settings_from_env()
    service = QuotaService(settings, url)
    service.run_in_background(service.sweep_forever)
    service.run_in_background(service.replay_forever)
    service.run_in_background(partial(refill_forever, service.database.connection, lambda: service.settings))
    if smtp_settings is not None:
        outbox = Outbox(service.database.connection, settings, smtp_settings)
        service.on_reload(partial(setattr, outbox, "settings"))
        service.run_in_background(outbox.run_forever)
    else:
        # No SMTP: the e-mails wait in the outbox, but the webhooks go out, their sender on its
        # own. Started even with no webhook configured, so that a reload adding some reaches it.
        webhooks = WebhookOutbox(service.database.connection, settings)
        service.on_reload(partial(setattr, webhooks, "settings"))
        service.run_in_background(webhooks.run_forever)
    mount_routes(service)
    _start_soon(service)
    log_event(
        "started",
        migrations_applied=applied,
        factor=settings.conversion_factor,
        default_tokens_per_user=settings.default_tokens_per_user,
        fail_mode=settings.fail_mode,
        mail="on" if smtp_settings else "off (SMTP_HOST unset: e-mails wait in the outbox)",
        webhooks=len(settings.alert_webhooks),
    )
    return SolarisCallback(service)


def _start_soon(service: QuotaService) -> None:
    """Start the sweeper and mailer now if the proxy's loop runs (it does while LiteLLM
    loads its config); otherwise the first hook or route starts them."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    loop.create_task(service.start())


quota_callback = build_callback()
