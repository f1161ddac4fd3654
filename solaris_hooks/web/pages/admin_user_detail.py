"""`/solaris/admin/user?id=…`: one account, its ledger, its alerts, what admins did to it,
and its personal usage link."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, time, timedelta
from urllib.parse import urlencode

from fastapi import Request
from starlette.responses import Response

from solaris_hooks.admin import accounts, user_ledger
from solaris_hooks.db import audit
from solaris_hooks.exceptions import InvalidInput
from solaris_hooks.mail import links as web_signing
from solaris_hooks.mail import outbox
from solaris_hooks.messages import locales
from solaris_hooks.settings.refill import next_refill_at
from solaris_hooks.web.context import Context
from solaris_hooks.web.pages.base import (
    PageError,
    home,
    new_page_router,
    page_links,
    parse_day,
    parse_int,
    show,
    signed_in,
    this_page,
)

ledger_page_size = 25
detail_list_size = 20

router = new_page_router()


@router.get("/user")
async def user_detail(
    context: Context, request: Request, id: str = "", kind: str = "", start: str = "", end: str = "", page: str = "1"
) -> Response:
    session = signed_in(request)
    settings = context.settings
    kind = kind if kind in user_ledger.ledger_kinds else ""
    start_day, end_day = parse_day(start), parse_day(end)
    number = parse_int(page, 1, low=1)
    async with context.database.connection() as connection:
        try:
            # Typed as an admin types it: `Ana@Example.COM` finds `ana@example.com`.
            found = await accounts.resolve_user_id(connection, id, settings.identity_local_part_case)
        except InvalidInput:
            found = None
        account = await accounts.get(connection, found) if found else None
        if account is None:
            raise PageError(404, "error.no_user")
        id = account["user_id"]
        rows, total = await user_ledger.ledger_page(
            connection,
            id,
            kind=kind or None,
            local_part_case=settings.identity_local_part_case,
            start=datetime.combine(start_day, time(0), tzinfo=UTC) if start_day else None,
            end=datetime.combine(end_day + timedelta(days=1), time(0), tzinfo=UTC) if end_day else None,
            limit=ledger_page_size,
            offset=(number - 1) * ledger_page_size,
        )
        alerts, alerts_total = await outbox.list_alerts(
            connection, status=None, user_id=id, limit=detail_list_size, offset=0
        )
        actions, actions_total = await audit.page(connection, user_id=id, action=None, limit=detail_list_size, offset=0)
    base = (settings.public_url or str(request.base_url)).rstrip("/")
    csv_filters = {"id": id, "kind": kind, "start": start_day or "", "end": end_day or ""}
    return show(
        request,
        session,
        settings,
        "user.html",
        "users",
        account=account,
        rows=rows,
        kind=kind,
        start=start_day.isoformat() if start_day else "",
        end=end_day.isoformat() if end_day else "",
        pages=page_links(request, total, number, ledger_page_size),
        alerts=alerts,
        alerts_total=alerts_total,
        actions=actions,
        actions_total=actions_total,
        next_refill=next_refill_at(refill) if (refill := settings.for_group(account.get("group")).refill) else None,
        usage_link=base + web_signing.usage_path(id, settings),
        here=this_page(request),
        ledger_csv=f"{home}/user/ledger.csv?{urlencode(csv_filters)}",
        locales=locales,
        kinds=user_ledger.ledger_kinds,
        statuses=accounts.statuses,
        groups=sorted(settings.groups),
        idempotency_key=secrets.token_urlsafe(16),
    )
