"""`/solaris/alerts`: the outbox as admins see it, each alert's e-mail and webhook deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import Depends, Path, Query
from pydantic import BaseModel, Field

from solaris_hooks.mail import outbox, webhook_outbox
from solaris_hooks.quota.identity import identity_length_max
from solaris_hooks.web.api.base import authorize, errors, line_pattern, new_router
from solaris_hooks.web.auth import Actor
from solaris_hooks.web.context import Context

page_size_max = 500

# A Literal built from the outbox's statuses at run time, for the schema's enum; mypy cannot check one.
AlertStatus = Literal[outbox.statuses]  # type: ignore[valid-type]


class WebhookDeliveryOut(BaseModel):
    """One alert's delivery to one webhook. The channel names the webhook (its `name`, or its
    format, host and a hash of its URL): never its URL's path nor its secret."""

    id: int
    channel: str
    status: Literal["pending", "sending", "sent", "failed", "dead"]
    attempts: int
    last_error: str | None
    response_status: int | None = Field(description="The receiver's last HTTP status; none when it never answered.")
    next_attempt_at: datetime
    sent_at: datetime | None


class AlertOut(BaseModel):
    id: int
    user_id: str
    kind: Literal["usage", "credit"]
    threshold: float | None = Field(description="Usage fraction that raised it; 1.0 is the block notice.")
    status: AlertStatus
    attempts: int
    last_error: str | None
    recipients: str | None
    credited_tokens: int
    used_tokens: int
    tokens: int | None = Field(description="Tokens credited, for a credit receipt.")
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    webhooks: list[WebhookDeliveryOut] = Field(description="Its delivery to each alert webhook, by channel.")


class AlertPage(BaseModel):
    alerts: list[AlertOut]
    total: int
    limit: int
    offset: int


router = new_router()


@router.get("/alerts", response_model=AlertPage, summary="List alerts, with their e-mail and webhook deliveries")
async def alerts(
    context: Context,
    status: AlertStatus | None = None,
    user_id: str | None = Query(None, min_length=1, max_length=identity_length_max, pattern=line_pattern),
    limit: int = Query(50, ge=1, description=f"Capped at {page_size_max}."),
    offset: int = Query(0, ge=0, le=10**9),
) -> AlertPage:
    limit = min(limit, page_size_max)
    async with context.database.connection() as connection:
        rows, total = await outbox.list_alerts(connection, status=status, user_id=user_id, limit=limit, offset=offset)
    return AlertPage(alerts=[AlertOut(**row) for row in rows], total=total, limit=limit, offset=offset)


@router.post(
    "/alerts/{alert_id}/retry",
    response_model=AlertOut,
    summary="Re-queue a dead alert (its e-mail, its dead webhook deliveries, or both)",
    responses=errors(404, 409),
)
async def retry_alert(
    context: Context, alert_id: int = Path(ge=1, le=2**63 - 1), actor: Actor = Depends(authorize)
) -> AlertOut:
    # One transaction: the answer shows the deliveries as the retry left them, before a sender claims them.
    async with context.database.connection() as connection, connection.transaction():
        row = await outbox.requeue_dead(connection, alert_id, actor.name)
        webhooks = await webhook_outbox.deliveries_of_alert(connection, alert_id)
    return AlertOut(**row, webhooks=[WebhookDeliveryOut(**delivery) for delivery in webhooks])
