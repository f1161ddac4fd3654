"""The LiteLLM hooks: reserve before a call, settle on success, release on failure.

LiteLLM calls a hook only when it is defined on the registered class itself (not on a
base class of ours), so every hook is written out here and delegates to QuotaService.
Refusals become LiteLLM HTTPExceptions whose `error.message` an end user can read.
"""

from __future__ import annotations

import logging

from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger

from solaris_hooks import messages
from solaris_hooks.exceptions import DatabaseUnavailable, QuotaExhausted, RateLimited, Refusal
from solaris_hooks.logs import log_event
from solaris_hooks.quota import refusal_edge
from solaris_hooks.quota.refusal_answers import Answer, answer_for
from solaris_hooks.quota.route_rules import route_of_call_type
from solaris_hooks.quota.service import QuotaService
from solaris_hooks.settings import Settings


def refusal_http_error(refusal: Refusal, settings: Settings, answer: Answer | None = None) -> HTTPException:
    """The refusal for LiteLLM to raise. It is also noted for quota.refusal_edge, which sends
    it as raised (LiteLLM would not), or, with `answer`, as that assistant message."""
    status_code = settings.refusal_status_code if isinstance(refusal, QuotaExhausted) else refusal.status_code
    params = {"header": settings.identity_header, "credits_email": settings.credits_email, **refusal.params}
    text = messages.render(refusal.message_key, settings.locale, **params)
    if isinstance(refusal, RateLimited):
        # This one heals by itself: say when, and let clients retry then.
        headers = {"retry-after": str(refusal.params["retry_after_s"])}
    else:
        # OpenAI SDKs retry 429s unless told not to; a used-up allowance will not heal in seconds.
        headers = {"x-should-retry": "false"}
    error = {"message": text, "type": refusal.error_type, "code": refusal.message_key}
    refusal_edge.note_refusal(refusal_edge.Refused(status_code, error, headers, answer))
    # A copy: LiteLLM adds its own headers (call id, cost) to the exception's dict, and the
    # edge, which keeps LiteLLM's headers too, would send them twice.
    return HTTPException(status_code=status_code, detail={"error": error}, headers=dict(headers))


def unavailable_http_error(settings: Settings) -> HTTPException:
    """A 503 while the ledger is unreachable: an error whatever the refusal style, since
    clients may try again once it is back."""
    text = messages.render("database_unavailable", settings.locale)
    error = {"message": text, "type": "service_unavailable", "code": "quota_unavailable"}
    headers = {"x-should-retry": "false"}
    refusal_edge.note_refusal(refusal_edge.Refused(503, error, headers))
    return HTTPException(status_code=503, detail={"error": error}, headers=dict(headers))


class SolarisCallback(CustomLogger):
    def __init__(self, service: QuotaService) -> None:
        super().__init__()
        self.service = service

    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):
        settings = self.service.settings
        try:
            await self.service.reserve_call(data, str(call_type), user_api_key_dict, cache)
        except Refusal as refusal:
            answer = None
            if settings.refusal_style == "message":
                answer = answer_for(data, route_of_call_type(str(call_type)))
            raise refusal_http_error(refusal, settings, answer) from None
        except DatabaseUnavailable:
            raise unavailable_http_error(settings) from None
        return data

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        call_id = kwargs.get("litellm_call_id")
        if not call_id:
            log_event("settle_skipped", logging.WARNING, call_id=None, reason="no call id")
            return
        logging_payload = kwargs.get("standard_logging_object") or {}
        model = logging_payload.get("model_group") or kwargs.get("model")
        # While the database is unreachable the usage goes to the spool and is charged once
        # it is back (QuotaService.settle_call): never lost, never charged twice.
        await self.service.settle_response(str(call_id), response_obj, model, kwargs.get("response_cost"))

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        # Not a release: inside one request the router may retry or fall back after a failed
        # attempt, and a reservation released here would free tokens the retry still uses.
        # The request's own failure (async_post_call_failure_hook) releases, and a stream that
        # failed after delivering content is charged by the stream wrapper.
        return None

    async def async_post_call_failure_hook(
        self, request_data: dict, original_exception, user_api_key_dict, traceback_str=None
    ):
        # Release is idempotent, and charges what was delivered when content reached the client.
        await self._release(request_data.get("litellm_call_id"))
        return

    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict, response, request_data: dict):
        async for chunk in self.service.meter_stream(response, str(request_data.get("litellm_call_id") or "")):
            yield chunk

    async def _release(self, call_id: object) -> None:
        if not call_id:
            return
        try:
            await self.service.release_call(str(call_id))
        except DatabaseUnavailable as error:
            log_event("release_failed", logging.ERROR, call_id=call_id, error=str(error))
