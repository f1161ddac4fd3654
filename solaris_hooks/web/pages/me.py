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
from solaris_hooks.quota.service import QuotaService
from solaris_hooks.refill import next_refill_at
from solaris_hooks.web.pages.charts import tokens_per_day_chart
from solaris_hooks.web.pages.render import render_page

token_length_max = 2048


def build_router(service: QuotaService) -> APIRouter:
    router = APIRouter(prefix="/solaris/me", include_in_schema=False)

    def problem(status_code: int, reason: str, locale: str) -> Response:
        return render_page("me_invalid.html", locale, status_code, reason=reason, settings=service.settings)

    @router.get("/{token}")
    async def usage_page(request: Request, token: str, lang: str | None = None) -> Response:
        settings = service.settings
        chosen = normalise_locale(lang) if lang else None
        locale = chosen or settings.locale
        if len(token) > token_length_max:
            return problem(404, "invalid", locale)
        try:
            user_id = web_signing.usage_user(token)
        except LinkExpired:
            return problem(410, "expired", locale)
        except LinkInvalid:
            log_event("usage_link_invalid", logging.WARNING, client=request.client.host if request.client else None)
            return problem(404, "invalid", locale)
        except SettingsError:
            return problem(503, "unavailable", locale)
        now = datetime.now(UTC)
        try:
            async with service.connection() as connection:
                account = await accounts.get(connection, user_id)
                days = await dashboard.user_days(connection, user_id, now) if account else []
        except DatabaseUnavailable:
            return problem(503, "unavailable", locale)
        if account is None:
            return problem(404, "invalid", locale)
        locale = chosen or normalise_locale(account.get("locale") or settings.locale)
        chart = tokens_per_day_chart(days, locale, width=440, height=200)
        return render_page(
            "me.html",
            locale,
            account=account,
            chart=chart,
            settings=settings,
            renewal=next_refill_at(settings.refill) if settings.refill else None,
            used_share=min(1.0, account["used_tokens"] / account["credited_tokens"])
            if account["credited_tokens"]
            else 1.0,
            path=request.url.path,
        )

    return router
