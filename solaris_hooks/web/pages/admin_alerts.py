"""`/solaris/admin/alerts`: the outbox (each alert's e-mail and webhook deliveries), and the form that
sends a dead alert again (its e-mail, its dead webhook deliveries, or both)."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from solaris_hooks.db.gauges import alerts_by_status
from solaris_hooks.exceptions import AdminError, Conflict, NotFound
from solaris_hooks.mail import outbox
from solaris_hooks.web.context import Context
from solaris_hooks.web.pages.base import (
    Notice,
    act,
    home,
    new_page_router,
    page_links,
    parse_int,
    posted,
    safe_next,
    show,
    signed_in,
    this_page,
)
from solaris_hooks.web.pages.render import translate

alerts_page_size = 50

router = new_page_router()


@router.get("/alerts")
async def alerts(context: Context, request: Request, status: str = "", page: str = "1") -> Response:
    session = signed_in(request)
    status = status if status in outbox.statuses else ""
    number = parse_int(page, 1, low=1)
    async with context.database.connection() as connection:
        rows, total = await outbox.list_alerts(
            connection,
            status=status or None,
            user_id=None,
            limit=alerts_page_size,
            offset=(number - 1) * alerts_page_size,
        )
        counts = await alerts_by_status(connection)
    return show(
        request,
        session,
        context.settings,
        "alerts.html",
        "alerts",
        rows=rows,
        status=status,
        counts=counts,
        statuses=outbox.statuses,
        pages=page_links(request, total, number, alerts_page_size),
        here=this_page(request),
    )


@router.post("/alerts/retry")
async def retry_alert(context: Context, request: Request) -> Response:
    session, form = await posted(request)
    alert_id = parse_int(form.get("alert_id"), 0, 0, 2**62)
    target = safe_next(form.get("next"), f"{home}/alerts")

    async def retry() -> Notice:
        try:
            async with context.database.connection() as connection:
                await outbox.requeue_dead(connection, alert_id, session.actor.name)
        except NotFound:
            raise AdminError(translate(session.locale, "notice.no_alert", id=alert_id), "alert_not_found") from None
        except Conflict:
            raise AdminError(translate(session.locale, "notice.not_dead", id=alert_id), "alert_not_dead") from None
        return "notice.requeued", {"id": alert_id}

    return await act(request, target, session, retry)
