"""`/solaris/admin/users`: the list of accounts, and the forms that create, import and
block or unblock them."""

from __future__ import annotations

import secrets
from collections.abc import Collection
from typing import Literal
from urllib.parse import urlencode

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.responses import Response

from solaris_hooks.admin import accounts, csv_import
from solaris_hooks.admin.last_active import last_active
from solaris_hooks.exceptions import AdminError
from solaris_hooks.messages import normalise_locale
from solaris_hooks.settings.groups import group_name
from solaris_hooks.web.context import Context
from solaris_hooks.web.pages.base import (
    Notice,
    act,
    home,
    import_bytes_max,
    new_page_router,
    page_links,
    parse_int,
    posted,
    safe_next,
    show,
    signed_in,
    this_page,
    tokens_max,
)
from solaris_hooks.web.pages.render import translate

users_page_size = 25
# The group filter's choice for the users in no group: never a group's name (those start with a letter or digit).
no_group_choice = "-"

router = new_page_router()


def listed_group(typed: str, groups: Collection[str]) -> str | None:
    """The group filter as the list's URL writes it, for admin.accounts.page: a configured
    group, or no_group_choice for the users in none; anything else lists every user."""
    if typed == no_group_choice:
        return accounts.in_no_group
    name = group_name(typed)
    return name if name in groups else None


@router.get("/users")
async def users(
    context: Context,
    request: Request,
    q: str = "",
    status: str = "",
    group: str = "",
    sort: str = "created",
    order: str = "desc",
    page: str = "1",
) -> Response:
    session = signed_in(request)
    q = q.strip()[:320]
    status = status if status in accounts.statuses else ""
    chosen_group = listed_group(group, context.settings.groups)
    # As the URL writes it: the select shows it chosen, and the links keep it.
    group = "" if chosen_group is None else (chosen_group or no_group_choice)
    sort = sort if sort in accounts.sort_orders else "created"
    direction: Literal["asc", "desc"] = "asc" if order == "asc" else "desc"
    number = parse_int(page, 1, low=1)
    async with context.database.connection() as connection:
        rows, total = await accounts.page(
            connection,
            search=q or None,
            status=status or None,
            group=chosen_group,
            sort=sort,
            order=direction,
            limit=users_page_size,
            offset=(number - 1) * users_page_size,
        )
        last_calls = await last_active(connection, [row["user_id"] for row in rows])

    filters = {"q": q, "status": status, "group": group}

    def sort_link(column: str) -> str:
        flipped = "asc" if sort == column and direction == "desc" else "desc"
        return f"{home}/users?{urlencode({**filters, 'sort': column, 'order': flipped})}"

    return show(
        request,
        session,
        context.settings,
        "users.html",
        "users",
        rows=rows,
        last_calls=last_calls,
        users_csv=f"{home}/users.csv?{urlencode({**filters, 'sort': sort, 'order': direction})}",
        q=q,
        status=status,
        group=group,
        groups=sorted(context.settings.groups),
        no_group_choice=no_group_choice,
        # A group column while groups are configured, or while a listed user still has one.
        show_groups=bool(context.settings.groups) or any(row["group"] for row in rows),
        sort=sort,
        order=direction,
        sort_link=sort_link,
        pages=page_links(request, total, number, users_page_size),
        here=this_page(request),
        new_idempotency_key=lambda: secrets.token_urlsafe(16),
        import_rows_max=csv_import.import_rows_max,
    )


@router.post("/users")
async def create_user(context: Context, request: Request) -> Response:
    session, form = await posted(request)
    user_id = str(form.get("user_id") or "").strip()

    async def create() -> Notice:
        settings = context.settings
        tokens_text = str(form.get("tokens") or "").strip()
        tokens = settings.default_tokens_per_user if not tokens_text else parse_int(tokens_text, -1, -1, tokens_max)
        if tokens < 0:
            raise AdminError(translate(session.locale, "notice.bad_tokens"), "invalid_request")
        async with context.database.connection() as connection:
            await accounts.create(
                connection,
                user_id=user_id,
                tokens=tokens,
                email=str(form.get("email") or "").strip() or None,
                name=str(form.get("name") or "").strip() or None,
                locale=normalise_locale(str(form.get("locale"))) if form.get("locale") else None,
                actor=session.actor.name,
                local_part_case=settings.identity_local_part_case,
            )
        return "notice.created", {"user": user_id}

    return await act(request, f"{home}/users", session, create)


@router.post("/users/import")
async def import_users(context: Context, request: Request) -> Response:
    session, form = await posted(request)
    upload = form.get("file")

    async def load() -> Notice:
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise AdminError(translate(session.locale, "notice.import_no_file"), "invalid_request")
        data = await upload.read(import_bytes_max + 1)
        if len(data) > import_bytes_max:
            raise AdminError(translate(session.locale, "notice.import_too_big"), "invalid_request")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise AdminError(translate(session.locale, "notice.import_not_utf8"), "invalid_request") from None
        settings = context.settings
        async with context.database.connection() as connection:
            report = await csv_import.import_csv(
                connection,
                text,
                actor=session.actor.name,
                default_tokens=settings.default_tokens_per_user,
                local_part_case=settings.identity_local_part_case,
                group_default_tokens=settings.group_default_tokens(),
            )
        return "notice.imported", {"created": report.created, "updated": report.updated}

    return await act(request, f"{home}/users", session, load)


@router.post("/users/status")
async def set_status(context: Context, request: Request) -> Response:
    session, form = await posted(request)
    user_id = str(form.get("user_id") or "")
    status = str(form.get("status") or "")
    target = safe_next(form.get("next"), f"{home}/user?{urlencode({'id': user_id})}")

    async def change() -> Notice:
        async with context.database.connection() as connection:
            await accounts.update(
                connection,
                user_id,
                {"status": status},
                session.actor.name,
                local_part_case=context.settings.identity_local_part_case,
            )
        return "notice.status", {"user": user_id, "status": translate(session.locale, f"status.{status}")}

    return await act(request, target, session, change)
