"""Plumbing shared by every `/solaris` route: errors as readable JSON, and authorization.

Every error is `{"error": {"message", "code"}}` with a 4xx/5xx status, never a
traceback: FastAPI's own validation errors included, through ApiRoute.
"""

from __future__ import annotations

from typing import Callable

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.responses import Response

from solaris_hooks.auth import Actor, identify, read_methods
from solaris_hooks.exceptions import AdminError, DatabaseUnavailable

prefix = "/solaris"


class ApiError(AdminError):
    """An AdminError with its status given where it is raised (401, 403, …)."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(message, code)
        self.status_code = status_code


def error_response(status_code: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "code": code}}, status_code=status_code)


def _describe(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ()) if part not in ("body",)) or "body"
        message = item.get("msg", "invalid")
        if item.get("type") == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{where}: {message}")
    return "invalid request: " + "; ".join(parts)


class ApiRoute(APIRoute):
    """Turns our errors and FastAPI's validation errors into readable JSON answers."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as error:
                return error_response(422, "invalid_request", _describe(error))
            except AdminError as error:
                return error_response(error.status_code, error.code, error.message)
            except DatabaseUnavailable:
                return error_response(503, "database_unavailable",
                                      "the ledger database is unreachable; try again shortly")

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


error_responses: dict[int | str, dict] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in ((401, "No key, or an unknown key"), (403, "A read-only key tried to change something"),
                                (422, "The request is malformed"), (503, "The ledger database is unreachable"))
}


def new_router() -> APIRouter:
    """A router under /solaris whose every route is authorized and answers errors readably."""
    return APIRouter(prefix=prefix, tags=["solaris"], route_class=ApiRoute, dependencies=[Depends(authorize)],
                     responses=error_responses)
