"""The personal usage page, `/solaris/me/{signed-token}`, for end users.

No login: the link itself is the credential (HMAC-signed, with an expiry; web_signing),
reached from alert e-mails or handed out by an admin. It shows that one user's balance,
usage per day, renewal date and how to get more credits; nothing else. A tampered or
expired link gets a friendly page saying what to do.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from starlette.responses import Response

from solaris_hooks.admin import accounts, dashboard
from solaris_hooks.exceptions import DatabaseUnavailable, LinkExpired, LinkInvalid, SettingsError
from solaris_hooks.logs import log_event
from solaris_hooks.mail import links as web_signing
from solaris_hooks.messages import normalise_locale
from solaris_hooks.settings import Settings
from solaris_hooks.settings.refill import RefillSettings, next_refill_at
from solaris_hooks.web.context import Context
from solaris_hooks.web.pages.charts import tokens_per_day_chart
from solaris_hooks.web.pages.render import render_page

token_length_max = 2048


router = APIRouter(prefix="/solaris/me", include_in_schema=False)


def problem(status_code: int, reason: str, locale: str, settings: Settings) -> Response:
    return render_page("me_invalid.html", locale, status_code, reason=reason, settings=settings)


@router.get("/{token}")
async def usage_page(context: Context, request: Request, token: str, lang: str | None = None) -> Response:
    settings = context.settings
    chosen = normalise_locale(lang) if lang else None
    locale = chosen or settings.locale
    if len(token) > token_length_max:
        return problem(404, "invalid", locale, settings)
    try:
        user_id = web_signing.usage_user(token)
    except LinkExpired:
        return problem(410, "expired", locale, settings)
    except LinkInvalid:
        log_event("usage_link_invalid", logging.WARNING, client=request.client.host if request.client else None)
        return problem(404, "invalid", locale, settings)
    except SettingsError:
        return problem(503, "unavailable", locale, settings)
    now = datetime.now(UTC)
    try:
        async with context.database.connection() as connection:
            account = await accounts.get(connection, user_id)
            days = await dashboard.user_days(connection, user_id, now) if account else []
    except DatabaseUnavailable:
        return problem(503, "unavailable", locale, settings)
    if account is None:
        return problem(404, "invalid", locale, settings)
    locale = chosen or normalise_locale(account.get("locale") or settings.locale)
    chart = tokens_per_day_chart(days, locale, width=440, height=200)
    return render_page(
        "me.html",
        locale,
        account=account,
        chart=chart,
        settings=settings,
        renewal=_renewal(settings.for_group(account.get("group")).refill),
        used_share=min(1.0, account["used_tokens"] / account["credited_tokens"]) if account["credited_tokens"] else 1.0,
        path=request.url.path,
    )


def _renewal(refill: RefillSettings | None) -> datetime | None:
    """When the user's allowance renews: their group's rule, else the top-level one."""
    return next_refill_at(refill) if refill else None
