"""Plumbing shared by the admin pages at `/solaris/admin`: errors as pages, sessions,
forms, paging.

Server-rendered (render), readable without JavaScript. Every page needs a session
(session); every form carries the session's CSRF token and answers with a redirect and a
one-time notice (post/redirect/get), so a reload never submits twice. Viewer keys see
every page, without the forms.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from solaris_hooks.exceptions import AdminError, DatabaseUnavailable, SettingsError
from solaris_hooks.logs import log_event
from solaris_hooks.settings import Settings
from solaris_hooks.web.api.base import ApiError, read_body
from solaris_hooks.web.pages import session as web_session
from solaris_hooks.web.pages.render import render_page, translate

home = "/solaris/admin"
tokens_max = 10**12
import_bytes_max = 2 * 1024 * 1024  # as the API's CSV import
form_bytes_max = import_bytes_max + 64 * 1024  # the CSV and the form's other fields

# What an action run from a form returns: the key of its notice and the notice's values.
Notice = tuple[str, dict[str, Any]]


class PageError(Exception):
    """Shown as an error page with this status and a translated message."""

    def __init__(self, status_code: int, message_key: str) -> None:
        super().__init__(message_key)
        self.status_code = status_code
        self.message_key = message_key


class LoginRequired(Exception):
    """A page asked for without a session: answered with a redirect to the login form."""


def signed_in(request: Request) -> web_session.AdminSession:
    session = web_session.current(request)
    if session is None:
        raise LoginRequired()
    return session


class PageRoute(APIRoute):
    """Pages answer errors with a page too: never a JSON dump or a traceback."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            session = web_session.current(request)
            locale = session.locale if session else None
            try:
                return await handler(request)
            except LoginRequired:
                return login_redirect(request)
            except PageError as error:
                return error_page(error.status_code, error.message_key, locale, session)
            except DatabaseUnavailable:
                return error_page(503, "error.database", locale, session)
            except SettingsError:
                return error_page(503, "error.no_secret", locale, session)
            except Exception as error:  # a page must never answer with a traceback
                log_event("page_failed", logging.ERROR, path=request.url.path, error=repr(error))
                return error_page(500, "error.unexpected", locale, session)

        return handle


def new_page_router() -> APIRouter:
    """A router under /solaris/admin whose pages answer errors with a page."""
    return APIRouter(prefix=home, include_in_schema=False, route_class=PageRoute)


def error_page(
    status_code: int, message_key: str, locale: str | None, session: web_session.AdminSession | None = None
) -> Response:
    return render_page(
        "error.html", locale, status_code, session=session, flash=None, active=None, message_key=message_key
    )


def safe_next(value: object, fallback: str = home) -> str:
    """Only our own admin pages are redirect targets: no open redirect through `next`."""
    if isinstance(value, str) and value.startswith(home) and "//" not in value and "\\" not in value:
        return value
    return fallback


def this_page(request: Request) -> str:
    """The path and query of the request, where a form sends the admin back to."""
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def login_redirect(request: Request) -> RedirectResponse:
    return RedirectResponse(f"{home}/login?next={quote(this_page(request), safe='')}", status_code=303)


async def bounded_form(request: Request) -> FormData:
    """The posted form, its body bounded before it is parsed (which would otherwise read
    or spool to disk whatever was sent)."""
    try:
        await read_body(request, form_bytes_max)
    except ApiError:
        raise PageError(413, "error.too_large") from None
    return await request.form()


def parse_int(value: object, default: int, low: int = 0, high: int = 10**9) -> int:
    try:
        return min(high, max(low, int(str(value))))
    except (TypeError, ValueError):
        return default


def parse_day(value: object) -> date | None:
    try:
        return date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def page_links(request: Request, total: int, page: int, size: int) -> dict:
    """Previous/next links that keep every other query parameter."""
    pages = max(1, -(-total // size))

    def link(number: int) -> str:
        params = {**request.query_params, "page": str(number)}
        return f"{request.url.path}?{urlencode(params)}"

    return {
        "page": page,
        "pages": pages,
        "total": total,
        "previous": link(page - 1) if page > 1 else None,
        "next": link(page + 1) if page < pages else None,
    }


def show(
    request: Request,
    session: web_session.AdminSession,
    settings: Settings,
    template: str,
    active: str,
    **values: object,
) -> Response:
    """A page for a signed-in admin, with the notice a form left for it (shown once)."""
    flash = web_session.read_flash(request)
    response = render_page(
        template, session.locale, session=session, flash=flash, active=active, settings=settings, **values
    )
    if flash is not None:
        web_session.clear_flash(response)
    return response


async def posted(request: Request) -> tuple[web_session.AdminSession, FormData]:
    """The session and form of a POST from one of our own forms, by a key that may write."""
    session = web_session.current(request)
    if session is None:
        raise PageError(401, "error.no_session")
    form = await bounded_form(request)
    if not web_session.csrf_valid(session, form.get("csrf")):
        raise PageError(403, "error.csrf")
    if not session.can_write:
        raise PageError(403, "error.read_only")
    return session, form


async def act(
    request: Request, target: str, session: web_session.AdminSession, action: Callable[[], Awaitable[Notice]]
) -> RedirectResponse:
    """Run a form's action and go back to `target` with a notice of what it did; an
    AdminError becomes an error notice there."""
    try:
        key, params = await action()
        kind, text = "ok", translate(session.locale, key, **params)
    except AdminError as error:
        kind, text = "error", translate(session.locale, "notice.failed", error=error.message)
    response = RedirectResponse(target, status_code=303)
    web_session.flash(response, request, kind, text)
    return response
