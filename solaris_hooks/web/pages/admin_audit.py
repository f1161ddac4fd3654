"""`/solaris/admin/audit`: every admin action (API, CLI, pages), newest first, filtered by
actor, action, user and days (UTC), in pages."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from fastapi import Request
from starlette.responses import Response

from solaris_hooks.admin import accounts, audit_log
from solaris_hooks.admin.overview_range import utc_start
from solaris_hooks.exceptions import InvalidInput
from solaris_hooks.web.context import Context
from solaris_hooks.web.pages.base import new_page_router, page_links, parse_int, show, signed_in
from solaris_hooks.web.pages.day_range import checked, typed_day

audit_page_size = 50
filter_chars_max = 320

router = new_page_router()


@router.get("/audit")
async def audit_page(
    context: Context,
    request: Request,
    actor: str = "",
    action: str = "",
    user: str = "",
    start: str = "",
    end: str = "",
    page: str = "1",
) -> Response:
    session = signed_in(request)
    actor, action, user = (value.strip()[:filter_chars_max] for value in (actor, action, user))
    first, last = typed_day(start), typed_day(end)
    checked(first, last)
    number = parse_int(page, 1, low=1)
    async with context.database.connection() as connection:
        user_ids = None
        if user:
            # The id as typed, and the account it names (`Ana@Example.COM` is `ana@example.com`).
            user_ids = [user]
            with contextlib.suppress(InvalidInput):
                user_ids.append(
                    await accounts.resolve_user_id(connection, user, context.settings.identity_local_part_case)
                )
        rows, total = await audit_log.audit_page(
            connection,
            user_ids=user_ids,
            actor=actor or None,
            action=action or None,
            start=utc_start(first) if first else None,
            end=utc_start(last + timedelta(days=1)) if last else None,
            limit=audit_page_size,
            offset=(number - 1) * audit_page_size,
        )
    return show(
        request,
        session,
        context.settings,
        "audit.html",
        "audit",
        rows=rows,
        actor=actor,
        action=action,
        user=user,
        start=first.isoformat() if first else "",
        end=last.isoformat() if last else "",
        actions=audit_log.known_actions,
        pages=page_links(request, total, number, audit_page_size),
    )
