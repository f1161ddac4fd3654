"""Plumbing shared by every `/solaris` route: errors as readable JSON, and authorization.

Every error is `{"error": {"message", "code"}}` with a 4xx/5xx status, never a
traceback: FastAPI's own validation and parsing errors, a method a path does not have,
a body over its size limit and an unexpected bug included, through ApiRoute.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from solaris_hooks.exceptions import AdminError, DatabaseUnavailable
from solaris_hooks.logs import log_event
from solaris_hooks.web.auth import Actor, identify, read_methods

prefix = "/solaris"

# The largest legitimate JSON body is a bulk grant to 10,000 users of up to 255 characters
# (about 2.6 MB); anything bigger is refused before it is read into memory.
body_bytes_max = 4 * 1024 * 1024
# A route may lower its own limit with `openapi_extra=body_limit(n)`; the schema then shows it.
body_limit_key = "x-body-bytes-max"
# Text a person typed may hold tabs and newlines but no NUL (Postgres text cannot store it)
# or other C0 control characters; e-mails and names hold no control characters at all.
text_pattern = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
line_pattern = r"^[^\x00-\x1f\x7f]*$"


pattern_rules = {
    text_pattern: "must not contain NUL or control characters (tabs and new lines are fine)",
    line_pattern: "must not contain NUL, new lines or other control characters",
}


def body_limit(bytes_max: int) -> dict[str, Any]:
    return {body_limit_key: bytes_max}


class ApiError(AdminError):
    """An AdminError with its status given where it is raised (401, 403, …)."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(message, code)
        self.status_code = status_code


def error_response(status_code: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "code": code}}, status_code=status_code, headers=headers)


async def read_body(request: Request, bytes_max: int) -> None:
    """Read the body once, refusing it past bytes_max (ApiError 413); FastAPI's parsing and
    Request.form() then reuse what was read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > bytes_max:
        raise ApiError(413, "body_too_large", f"the request body is larger than {_size(bytes_max)}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > bytes_max:
            raise ApiError(413, "body_too_large", f"the request body is larger than {_size(bytes_max)}")
        chunks.append(chunk)
    request._body = b"".join(chunks)  # what Request.body() caches; FastAPI reads it from there


def _size(bytes_count: int) -> str:
    return f"{bytes_count // (1024 * 1024)} MiB" if bytes_count >= 1024 * 1024 else f"{bytes_count} bytes"


def _where(error: BaseException) -> str:
    """The innermost frames of an unexpected error, for the log line (never for the client)."""
    frames = traceback.extract_tb(error.__traceback__)[-3:]
    return " < ".join(f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.name}" for frame in reversed(frames))


# Every method of every /solaris path, so a 405 can name them all: each method is its own
# route, and Starlette's 405 only knows the first route whose path matched.
allowed_methods: dict[str, set[str]] = {}


def _describe(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ()) if part not in ("body",)) or "body"
        message = item.get("msg", "invalid")
        if item.get("type") == "extra_forbidden":
            message = "unknown field"
        elif item.get("type") == "string_pattern_mismatch" and (item.get("ctx") or {}).get("pattern") in pattern_rules:
            message = pattern_rules[item["ctx"]["pattern"]]
        parts.append(f"{where}: {message}")
    return "invalid request: " + "; ".join(parts)


class ApiRoute(APIRoute):
    """Turns our errors, FastAPI's validation errors and anything unexpected into readable JSON answers."""

    def __init__(self, path: str, endpoint: Callable, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        allowed_methods.setdefault(self.path, set()).update(self.methods or ())

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            allowed = ", ".join(sorted(allowed_methods.get(self.path, self.methods)))
            response = error_response(
                405,
                "method_not_allowed",
                f"{scope['method']} is not allowed here; use {allowed}",
                headers={"Allow": allowed},
            )
            await response(scope, receive, send)
            return
        await super().handle(scope, receive, send)

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()
        bytes_max = (self.openapi_extra or {}).get(body_limit_key, body_bytes_max)
        reads_body = self.body_field is not None

        async def handle(request: Request) -> Response:
            try:
                if reads_body:
                    await read_body(request, bytes_max)
                return await handler(request)
            except RequestValidationError as error:
                return error_response(422, "invalid_request", _describe(error))
            except AdminError as error:
                return error_response(error.status_code, error.code, error.message)
            except DatabaseUnavailable:
                return error_response(
                    503, "database_unavailable", "the ledger database is unreachable; try again shortly"
                )
            except StarletteHTTPException as error:
                # FastAPI's own: a JSON body too deep or with a number too long to parse (400).
                detail = error.detail if isinstance(error.detail, str) else "the request could not be read"
                code = "invalid_body" if error.status_code == 400 else "http_error"
                return error_response(error.status_code, code, detail, headers=error.headers)
            except psycopg.DataError as error:
                # A value that got past validation but that Postgres cannot take, such as a NUL.
                log_event(
                    "api_refused_data",
                    logging.WARNING,
                    method=request.method,
                    route=self.path,
                    error=type(error).__name__,
                )
                return error_response(
                    422,
                    "invalid_request",
                    "the request holds a value the database cannot store (such as a NUL character)",
                )
            except Exception as error:  # a bug: logged with where it happened, answered without a traceback
                log_event(
                    "api_error",
                    logging.ERROR,
                    method=request.method,
                    route=self.path,
                    error=type(error).__name__,
                    where=_where(error),
                )
                return error_response(500, "internal_error", "something went wrong on our side; it was logged")

        return handle


def authorize(request: Request) -> Actor:
    """401 without a known key; 403 when a viewer key tries anything but reading."""
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise ApiError(401, "unauthorized", "missing admin key: send `Authorization: Bearer <key>`")
    actor = identify(presented.strip())
    if actor is None:
        raise ApiError(401, "unauthorized", "invalid admin key")
    if request.method not in read_methods and not actor.can_write:
        raise ApiError(403, "forbidden", "this key is read-only (SOLARIS_VIEWER_KEYS): it may only read")
    return actor


class ErrorDetail(BaseModel):
    message: str
    code: str


class ErrorOut(BaseModel):
    error: ErrorDetail


error_descriptions = {
    400: "The body could not be parsed",
    401: "No key, or an unknown key",
    403: "A read-only key tried to change something",
    404: "No such user or alert",
    405: "This path does not have that method",
    409: "It exists already, or is in the wrong state",
    413: "The body is larger than this route takes",
    422: "The request is malformed",
    500: "A bug on our side; logged, answered without a traceback",
    503: "The ledger database is unreachable",
}


def errors(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses` for the error statuses a route can answer, all in the ErrorOut shape."""
    return {status: {"model": ErrorOut, "description": error_descriptions[status]} for status in statuses}


# What every /solaris route may answer; routes add 400/404/409/413 where they can happen.
error_responses = errors(401, 403, 405, 422, 500, 503)
# Routes that read a body: it may be unparseable, too large, or not the right media type.
body_errors = errors(400, 413)


def new_router() -> APIRouter:
    """A router under /solaris whose every route is authorized and answers errors readably."""
    return APIRouter(
        prefix=prefix,
        tags=["solaris"],
        route_class=ApiRoute,
        dependencies=[Depends(authorize)],
        responses=error_responses,
    )
