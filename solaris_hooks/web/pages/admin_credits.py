"""The forms that give tokens: to many accounts at once (`/users/bulk-grant`) and to one
(`/users/add-tokens`). Each form carries a key of its own, so a double click or a
resubmitted page credits once."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request
from starlette.responses import Response

from solaris_hooks.admin import credits
from solaris_hooks.admin.form_grants import bulk_credit_once
from solaris_hooks.exceptions import AdminError
from solaris_hooks.formats import format_number
from solaris_hooks.logs import log_event
from solaris_hooks.web.context import Context
from solaris_hooks.web.pages.base import Notice, act, home, new_page_router, parse_int, posted, safe_next, tokens_max
from solaris_hooks.web.pages.render import translate

router = new_page_router()


@router.post("/users/bulk-grant")
async def bulk_grant(context: Context, request: Request) -> Response:
    session, form = await posted(request)

    async def grant() -> Notice:
        tokens = parse_int(form.get("tokens"), 0, 0, tokens_max)
        if tokens <= 0:
            raise AdminError(translate(session.locale, "notice.bad_tokens"), "invalid_request")
        reason = str(form.get("reason") or "").strip()[:500] or translate(session.locale, "users.default_reason")
        scope = form.get("scope")
        listed = [line.strip() for line in str(form.get("user_ids") or "").splitlines() if line.strip()]
        if scope not in ("all", "listed") or (scope == "listed" and not listed):
            raise AdminError(translate(session.locale, "notice.bulk_no_users"), "invalid_request")
        settings = context.settings
        async with context.database.connection() as connection:
            count = await bulk_credit_once(
                connection,
                form_key=str(form.get("idempotency_key") or "")[:200],
                scope=str(scope),
                listed=listed,
                tokens=tokens,
                reason=reason,
                actor=session.actor.name,
                thresholds=settings.alert_thresholds,
                local_part_case=settings.identity_local_part_case,
            )
        if count is None:
            return "notice.bulk_repeated", {}
        log_event("bulk_credited", users=count, tokens=tokens, actor=session.actor.name)
        return "notice.bulk_granted", {
            "tokens": format_number(tokens, session.locale),
            "users": format_number(count, session.locale),
        }

    return await act(request, f"{home}/users", session, grant)


@router.post("/users/add-tokens")
async def add_tokens(context: Context, request: Request) -> Response:
    session, form = await posted(request)
    user_id = str(form.get("user_id") or "")
    target = safe_next(form.get("next"), f"{home}/user?{urlencode({'id': user_id})}")

    async def credit() -> Notice:
        tokens = parse_int(form.get("tokens"), 0, 0, tokens_max)
        reason = str(form.get("reason") or "").strip()[:500] or translate(session.locale, "users.default_reason")
        if tokens <= 0:
            raise AdminError(translate(session.locale, "notice.bad_tokens"), "invalid_request")
        settings = context.settings
        async with context.database.connection() as connection:
            result = await credits.credit(
                connection,
                user_id=user_id,
                tokens=tokens,
                reason=reason,
                actor=session.actor.name,
                default_tokens=settings.default_tokens_per_user,
                thresholds=settings.alert_thresholds,
                local_part_case=settings.identity_local_part_case,
                # The form's own key: a double click or a resubmitted page credits once.
                idempotency_key=str(form.get("idempotency_key") or "")[:255] or None,
            )
        if result.replayed:  # the same form again: nothing was added, and the notice says so
            return "notice.bulk_repeated", {}
        return "notice.credited", {
            "tokens": format_number(tokens, session.locale),
            "user": user_id,
            "remaining": format_number(result.account["remaining_tokens"], session.locale),
        }

    return await act(request, target, session, credit)
