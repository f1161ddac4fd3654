"""The admin pages at `/solaris/admin`: overview, users, one user, alerts, settings.

Server-rendered (web_render), readable without JavaScript. Every page needs a session
(web_session); every form carries the session's CSRF token and answers with a redirect
and a one-time notice (post/redirect/get), so a reload never submits twice. Viewer keys
see every page, without the forms.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.datastructures import FormData, UploadFile
from starlette.responses import RedirectResponse, Response

from solaris_hooks.admin import accounts, dashboard
from solaris_hooks.db import audit
from solaris_hooks.exceptions import AdminError, Conflict, DatabaseUnavailable, InvalidInput, NotFound, SettingsError
from solaris_hooks.logs import log_event
from solaris_hooks.mail import links as web_signing
from solaris_hooks.mail import outbox
from solaris_hooks.messages import normalise_locale
from solaris_hooks.quota.service import QuotaService
from solaris_hooks.refill import next_refill_at
from solaris_hooks.settings import describe_settings
from solaris_hooks.web.api.base import ApiError, read_body
from solaris_hooks.web.auth import identify
from solaris_hooks.web.pages import session as web_session
from solaris_hooks.web.pages.charts import tokens_per_day_chart
from solaris_hooks.web.pages.render import format_number, render_page, translate

home = "/solaris/admin"
users_page_size = 25
ledger_page_size = 25
alerts_page_size = 50
detail_list_size = 20
# A wrong key costs this long, so guessing keys through the form is slow.
login_failure_delay_s = 1.0
tokens_max = 10**12
import_bytes_max = 2 * 1024 * 1024  # as the API's CSV import
form_bytes_max = import_bytes_max + 64 * 1024  # the CSV and the form's other fields


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


def error_page(status_code: int, message_key: str, locale: str | None, session=None) -> Response:
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


def build_router(service: QuotaService) -> APIRouter:
    router = APIRouter(prefix=home, include_in_schema=False, route_class=PageRoute)

    def show(
        request: Request,
        session: web_session.AdminSession,
        template: str,
        active: str,
        status_code: int = 200,
        **values: object,
    ) -> Response:
        flash = web_session.read_flash(request)
        response = render_page(
            template,
            session.locale,
            status_code,
            session=session,
            flash=flash,
            active=active,
            settings=service.settings,
            **values,
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
        request: Request,
        target: str,
        session: web_session.AdminSession,
        action: Callable[[], Awaitable[tuple[str, dict]]],
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

    # -- login -----------------------------------------------------------------------

    @router.get("/login")
    async def login_form(request: Request, next: str = home, lang: str | None = None) -> Response:
        locale = normalise_locale(lang or service.settings.locale)
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
    async def login(request: Request) -> Response:
        form = await bounded_form(request)
        locale = normalise_locale(str(form.get("locale") or service.settings.locale))
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
        web_session.start(response, request, actor, key, locale, service.settings.admin_session_ttl_s)
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

    # -- overview --------------------------------------------------------------------

    @router.get("")
    async def overview(request: Request) -> Response:
        session = signed_in(request)
        settings = service.settings
        zone = ZoneInfo(settings.refill.timezone if settings.refill else "UTC")
        now = datetime.now(UTC)
        local_today = now.astimezone(zone).date()
        today_start = datetime.combine(local_today, time(0), tzinfo=zone)
        month_start = datetime.combine(local_today.replace(day=1), time(0), tzinfo=zone)
        async with service.connection() as connection:
            counts, stats, per_day = await dashboard.overview(connection, now, today_start, month_start)
        chart = tokens_per_day_chart(per_day, session.locale)
        return show(
            request, session, "overview.html", "overview", counts=counts, stats=stats, chart=chart, zone=str(zone)
        )

    # -- users -----------------------------------------------------------------------

    @router.get("/users")
    async def users(
        request: Request, q: str = "", status: str = "", sort: str = "created", order: str = "desc", page: str = "1"
    ) -> Response:
        session = signed_in(request)
        q = q.strip()[:320]
        status = status if status in accounts.statuses else ""
        sort = sort if sort in accounts.sort_orders else "created"
        order = "asc" if order == "asc" else "desc"
        number = parse_int(page, 1, low=1)
        async with service.connection() as connection:
            rows, total = await accounts.page(
                connection,
                search=q or None,
                status=status or None,
                sort=sort,
                order=order,
                limit=users_page_size,
                offset=(number - 1) * users_page_size,
            )

        def sort_link(column: str) -> str:
            flipped = "asc" if sort == column and order == "desc" else "desc"
            return f"{home}/users?{urlencode({'q': q, 'status': status, 'sort': column, 'order': flipped})}"

        return show(
            request,
            session,
            "users.html",
            "users",
            rows=rows,
            q=q,
            status=status,
            sort=sort,
            order=order,
            sort_link=sort_link,
            pages=page_links(request, total, number, users_page_size),
            here=this_page(request),
            new_idempotency_key=lambda: secrets.token_urlsafe(16),
            import_rows_max=accounts.import_rows_max,
        )

    @router.post("/users")
    async def create_user(request: Request) -> Response:
        session, form = await posted(request)
        user_id = str(form.get("user_id") or "").strip()

        async def create() -> tuple[str, dict]:
            tokens_text = str(form.get("tokens") or "").strip()
            tokens = (
                service.settings.default_tokens_per_user
                if not tokens_text
                else parse_int(tokens_text, -1, -1, tokens_max)
            )
            if tokens < 0:
                raise AdminError(translate(session.locale, "notice.bad_tokens"), "invalid_request")
            async with service.connection() as connection:
                await accounts.create(
                    connection,
                    user_id=user_id,
                    tokens=tokens,
                    email=str(form.get("email") or "").strip() or None,
                    name=str(form.get("name") or "").strip() or None,
                    locale=normalise_locale(str(form.get("locale"))) if form.get("locale") else None,
                    actor=session.actor.name,
                    local_part_case=service.settings.identity_local_part_case,
                )
            return "notice.created", {"user": user_id}

        return await act(request, f"{home}/users", session, create)

    @router.post("/users/bulk-grant")
    async def bulk_grant(request: Request) -> Response:
        session, form = await posted(request)

        async def grant() -> tuple[str, dict]:
            tokens = parse_int(form.get("tokens"), 0, 0, tokens_max)
            if tokens <= 0:
                raise AdminError(translate(session.locale, "notice.bad_tokens"), "invalid_request")
            reason = str(form.get("reason") or "").strip()[:500] or translate(session.locale, "users.default_reason")
            scope = form.get("scope")
            listed = [line.strip() for line in str(form.get("user_ids") or "").splitlines() if line.strip()]
            if scope not in ("all", "listed") or (scope == "listed" and not listed):
                raise AdminError(translate(session.locale, "notice.bulk_no_users"), "invalid_request")
            nonce = str(form.get("idempotency_key") or "")[:200]
            async with service.connection() as connection, connection.transaction():
                if nonce:
                    # The form's own key, stored with the grant in one transaction: a double
                    # click or a resubmitted page grants once.
                    cursor = await connection.execute(
                        "INSERT INTO solaris.idempotency_keys (key, request_hash) VALUES (%s, %s) "
                        "ON CONFLICT DO NOTHING RETURNING key",
                        ("page bulk-grant " + nonce, accounts.request_hash("bulk", tokens, reason, scope, *listed)),
                    )
                    if await cursor.fetchone() is None:
                        return "notice.bulk_repeated", {}
                count = await accounts.bulk_credit(
                    connection,
                    user_ids=listed if scope == "listed" else None,
                    tokens=tokens,
                    reason=reason,
                    actor=session.actor.name,
                    thresholds=service.settings.alert_thresholds,
                    local_part_case=service.settings.identity_local_part_case,
                )
            log_event("bulk_credited", users=count, tokens=tokens, actor=session.actor.name)
            return "notice.bulk_granted", {
                "tokens": format_number(tokens, session.locale),
                "users": format_number(count, session.locale),
            }

        return await act(request, f"{home}/users", session, grant)

    @router.post("/users/import")
    async def import_users(request: Request) -> Response:
        session, form = await posted(request)
        upload = form.get("file")

        async def load() -> tuple[str, dict]:
            if not isinstance(upload, UploadFile) or not upload.filename:
                raise AdminError(translate(session.locale, "notice.import_no_file"), "invalid_request")
            data = await upload.read(import_bytes_max + 1)
            if len(data) > import_bytes_max:
                raise AdminError(translate(session.locale, "notice.import_too_big"), "invalid_request")
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise AdminError(translate(session.locale, "notice.import_not_utf8"), "invalid_request") from None
            async with service.connection() as connection:
                report = await accounts.import_csv(
                    connection,
                    text,
                    actor=session.actor.name,
                    default_tokens=service.settings.default_tokens_per_user,
                    local_part_case=service.settings.identity_local_part_case,
                )
            return "notice.imported", {"created": report.created, "updated": report.updated}

        return await act(request, f"{home}/users", session, load)

    @router.post("/users/add-tokens")
    async def add_tokens(request: Request) -> Response:
        session, form = await posted(request)
        user_id = str(form.get("user_id") or "")
        target = safe_next(form.get("next"), f"{home}/user?{urlencode({'id': user_id})}")

        async def credit() -> tuple[str, dict]:
            tokens = parse_int(form.get("tokens"), 0, 0, tokens_max)
            reason = str(form.get("reason") or "").strip()[:500] or translate(session.locale, "users.default_reason")
            if tokens <= 0:
                raise AdminError(translate(session.locale, "notice.bad_tokens"), "invalid_request")
            settings = service.settings
            async with service.connection() as connection:
                result = await accounts.credit(
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
            return "notice.credited", {
                "tokens": format_number(tokens, session.locale),
                "user": user_id,
                "remaining": format_number(result.account["remaining_tokens"], session.locale),
            }

        return await act(request, target, session, credit)

    @router.post("/users/status")
    async def set_status(request: Request) -> Response:
        session, form = await posted(request)
        user_id = str(form.get("user_id") or "")
        status = str(form.get("status") or "")
        target = safe_next(form.get("next"), f"{home}/user?{urlencode({'id': user_id})}")

        async def change() -> tuple[str, dict]:
            async with service.connection() as connection:
                await accounts.update(
                    connection,
                    user_id,
                    {"status": status},
                    session.actor.name,
                    local_part_case=service.settings.identity_local_part_case,
                )
            return "notice.status", {"user": user_id, "status": translate(session.locale, f"status.{status}")}

        return await act(request, target, session, change)

    # -- one user --------------------------------------------------------------------

    @router.get("/user")
    async def user_detail(
        request: Request, id: str = "", kind: str = "", start: str = "", end: str = "", page: str = "1"
    ) -> Response:
        session = signed_in(request)
        kind = kind if kind in accounts.ledger_kinds else ""
        start_day, end_day = parse_day(start), parse_day(end)
        number = parse_int(page, 1, low=1)
        async with service.connection() as connection:
            try:
                # Typed as an admin types it: `Ana@Example.COM` finds `ana@example.com`.
                found = await accounts.resolve_user_id(connection, id, service.settings.identity_local_part_case)
            except InvalidInput:
                found = None
            account = await accounts.get(connection, found) if found else None
            if account is None:
                raise PageError(404, "error.no_user")
            id = account["user_id"]
            rows, total = await accounts.ledger_page(
                connection,
                id,
                kind=kind or None,
                local_part_case=service.settings.identity_local_part_case,
                start=datetime.combine(start_day, time(0), tzinfo=UTC) if start_day else None,
                end=datetime.combine(end_day + timedelta(days=1), time(0), tzinfo=UTC) if end_day else None,
                limit=ledger_page_size,
                offset=(number - 1) * ledger_page_size,
            )
            alerts, alerts_total = await outbox.list_alerts(
                connection, status=None, user_id=id, limit=detail_list_size, offset=0
            )
            actions, actions_total = await audit.page(
                connection, user_id=id, action=None, limit=detail_list_size, offset=0
            )
        settings = service.settings
        base = (settings.public_url or str(request.base_url)).rstrip("/")
        return show(
            request,
            session,
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
            next_refill=next_refill_at(settings.refill) if settings.refill else None,
            usage_link=base + web_signing.usage_path(id, settings),
            here=this_page(request),
            kinds=accounts.ledger_kinds,
            statuses=accounts.statuses,
            idempotency_key=secrets.token_urlsafe(16),
        )

    # -- alerts ----------------------------------------------------------------------

    @router.get("/alerts")
    async def alerts(request: Request, status: str = "", page: str = "1") -> Response:
        session = signed_in(request)
        status = status if status in outbox.statuses else ""
        number = parse_int(page, 1, low=1)
        async with service.connection() as connection:
            rows, total = await outbox.list_alerts(
                connection,
                status=status or None,
                user_id=None,
                limit=alerts_page_size,
                offset=(number - 1) * alerts_page_size,
            )
            cursor = await connection.execute("SELECT status, count(*) FROM solaris.alerts GROUP BY status")
            counts = dict(await cursor.fetchall())
        return show(
            request,
            session,
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
    async def retry_alert(request: Request) -> Response:
        session, form = await posted(request)
        alert_id = parse_int(form.get("alert_id"), 0, 0, 2**62)
        target = safe_next(form.get("next"), f"{home}/alerts")

        async def retry() -> tuple[str, dict]:
            try:
                async with service.connection() as connection:
                    await outbox.requeue_dead(connection, alert_id, session.actor.name)
            except NotFound:
                raise AdminError(translate(session.locale, "notice.no_alert", id=alert_id), "alert_not_found") from None
            except Conflict:
                raise AdminError(translate(session.locale, "notice.not_dead", id=alert_id), "alert_not_dead") from None
            return "notice.requeued", {"id": alert_id}

        return await act(request, target, session, retry)

    # -- settings --------------------------------------------------------------------

    @router.get("/settings")
    async def settings_page(request: Request) -> Response:
        session = signed_in(request)
        return show(request, session, "settings.html", "settings", described=describe_settings())

    return router
