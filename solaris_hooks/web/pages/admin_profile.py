"""The user page's forms that edit an account, through the use case `PATCH /solaris/users/{id}`
uses (admin.accounts.update: the same rules, one audit row `user.update` with before and
after): `POST /solaris/admin/users/profile` changes e-mail, name and language,
`POST /solaris/admin/users/group` the user's group (one of solaris_settings.groups, or none).

Each field is checked here first, so a mistake is explained in the admin's language.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from urllib.parse import urlencode

from fastapi import Request
from starlette.responses import Response

from solaris_hooks.admin import accounts
from solaris_hooks.exceptions import AdminError
from solaris_hooks.mail.emails import is_email_address
from solaris_hooks.messages import locales
from solaris_hooks.settings.groups import group_name
from solaris_hooks.web.api.base import line_pattern
from solaris_hooks.web.context import Context
from solaris_hooks.web.pages.base import Notice, act, home, new_page_router, posted, safe_next
from solaris_hooks.web.pages.render import translate

router = new_page_router()
# As the API's Text fields (web.api.user_fields): one line, at most 320 characters.
text_chars_max = 320
_one_line = re.compile(line_pattern)
# The field names as the form posts them, and as admin.accounts.update takes them.
_fields = ("email", "name", "locale")


def profile_changes(form: dict[str, str], locale: str) -> dict[str, str]:
    """The changes the form asks for, checked; an AdminError in the admin's language otherwise.
    An empty e-mail or name clears it; an empty language leaves it as it is."""
    changes: dict[str, str] = {}
    for field in _fields:
        value = form.get(field, "").strip()
        if len(value) > text_chars_max or not _one_line.match(value):
            raise AdminError(translate(locale, f"notice.bad_{field}", chars=text_chars_max), "invalid_request")
        if field == "email" and value and not is_email_address(value):
            raise AdminError(translate(locale, "notice.bad_email", chars=text_chars_max), "invalid_request")
        if field == "locale":
            if not value:
                continue
            if value not in locales:
                raise AdminError(translate(locale, "notice.bad_locale", chars=text_chars_max), "invalid_request")
        changes[field] = value
    return changes


@router.post("/users/profile")
async def edit_profile(context: Context, request: Request) -> Response:
    session, form = await posted(request)
    user_id = str(form.get("user_id") or "")
    target = safe_next(form.get("next"), f"{home}/user?{urlencode({'id': user_id})}")

    async def change() -> Notice:
        # A file posted in a text field's place is no text: "\x00" fails the one-line rule.
        fields = {field: value if isinstance(value := form.get(field) or "", str) else "\x00" for field in _fields}
        changes = profile_changes(fields, session.locale)
        async with context.database.connection() as connection:
            await accounts.update(
                connection,
                user_id,
                changes,
                session.actor.name,
                local_part_case=context.settings.identity_local_part_case,
            )
        return "notice.profile_saved", {"user": user_id}

    return await act(request, target, session, change)


def chosen_group(typed: object, groups: Collection[str], locale: str) -> str | None:
    """The group the form names (None: no group, an empty choice), if it is configured; an
    AdminError in the admin's language otherwise."""
    if not isinstance(typed, str):  # no choice at all, or a file in its place
        raise AdminError(translate(locale, "notice.choose_group"), "invalid_request")
    if typed == "":
        return None
    name = group_name(typed)
    if name is None or name not in groups:
        shown = typed[:64]
        if not groups:
            raise AdminError(translate(locale, "notice.no_groups", group=shown), "invalid_request")
        configured = ", ".join(sorted(groups))
        raise AdminError(translate(locale, "notice.bad_group", group=shown, groups=configured), "invalid_request")
    return name


@router.post("/users/group")
async def set_group(context: Context, request: Request) -> Response:
    session, form = await posted(request)
    user_id = str(form.get("user_id") or "")
    target = safe_next(form.get("next"), f"{home}/user?{urlencode({'id': user_id})}")

    async def change() -> Notice:
        groups = context.settings.groups
        group = chosen_group(form.get("group"), groups, session.locale)
        async with context.database.connection() as connection:
            await accounts.update(
                connection,
                user_id,
                {"group": group},
                session.actor.name,
                local_part_case=context.settings.identity_local_part_case,
                groups=groups,
            )
        if group is None:
            return "notice.group_cleared", {"user": user_id}
        return "notice.group_set", {"user": user_id, "group": group}

    return await act(request, target, session, change)
