"""`/solaris/admin/login` and `/logout`: a key typed once opens a session (session.py)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import Request
from starlette.responses import RedirectResponse, Response

from solaris_hooks.logs import log_event
from solaris_hooks.messages import normalise_locale
from solaris_hooks.web.auth import identify
from solaris_hooks.web.context import Context
from solaris_hooks.web.pages import session as web_session
from solaris_hooks.web.pages.base import PageError, bounded_form, home, new_page_router, safe_next
from solaris_hooks.web.pages.render import render_page

# A wrong key costs this long, so guessing keys through the form is slow.
login_failure_delay_s = 1.0

router = new_page_router()


@router.get("/login")
async def login_form(context: Context, request: Request, next: str = home, lang: str | None = None) -> Response:
    locale = normalise_locale(lang or context.settings.locale)
    return render_page(
        "login.html",
        locale,
        session=None,
        flash=None,
        active=None,
        failed=False,
        form_token=web_session.login_form_token(),
        next=safe_next(next),
    )


@router.post("/login")
async def login(context: Context, request: Request) -> Response:
    form = await bounded_form(request)
    locale = normalise_locale(str(form.get("locale") or context.settings.locale))
    target = safe_next(form.get("next"))
    if not web_session.login_form_token_valid(form.get("form_token")):
        raise PageError(403, "error.csrf")
    key = str(form.get("key") or "").strip()
    actor = identify(key) if key else None
    if actor is None:
        await asyncio.sleep(login_failure_delay_s)
        log_event("admin_login_failed", logging.WARNING, client=request.client.host if request.client else None)
        # 200, as most login forms answer: the form again, with the message.
        return render_page(
            "login.html",
            locale,
            200,
            session=None,
            flash=None,
            active=None,
            failed=True,
            form_token=web_session.login_form_token(),
            next=target,
        )
    response = RedirectResponse(target, status_code=303)
    web_session.start(response, request, actor, key, locale, context.settings.admin_session_ttl_s)
    log_event("admin_login", actor=actor.name, role=actor.role)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = web_session.current(request)
    form = await bounded_form(request)
    if session is not None and not web_session.csrf_valid(session, form.get("csrf")):
        raise PageError(403, "error.csrf")
    response = RedirectResponse(f"{home}/login", status_code=303)
    web_session.end(response)
    return response
