"""Typed settings: what the `solaris_settings:` block of litellm-config.yaml may hold.

Every field has a default, a bound and a comment saying why; anything invalid or unknown
is refused (solaris_hooks.settings.loading turns that into a SettingsError naming the
key), so the proxy refuses to start instead of enforcing a quota nobody intended.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from solaris_hooks.settings.alert_webhooks import AlertWebhook, unique_channels
from solaris_hooks.settings.environment import Environment
from solaris_hooks.settings.groups import Group, GroupName
from solaris_hooks.settings.input_part_bounds import InputPartBounds
from solaris_hooks.settings.model_prices import ModelPrice
from solaris_hooks.settings.refill import RefillSettings
from solaris_hooks.settings.routes import Rule, validate_routes

# Platform tokens per raw token; bounded so a typo cannot make calls free or absurd.
Factor = Annotated[float, Field(gt=0, le=1000)]
Threshold = Annotated[float, Field(gt=0, lt=1)]


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default_tokens_per_user: int = Field(1000, ge=0, le=10**12)
    conversion_factor: Factor = 0.376
    # Per model group (the `model_name` clients ask for); others use conversion_factor.
    model_factors: dict[str, Factor] = Field(default_factory=dict)
    credits_email: str = Field("", max_length=320)
    locale: Literal["pt-BR", "en"] = "pt-BR"
    # Longer than LiteLLM's default request timeout (600 s), so a slow call that still
    # succeeds finds its reservation pending and is charged.
    reservation_ttl_s: int = Field(900, ge=1, le=86_400)
    sweep_interval_s: float = Field(30, gt=0, le=3600)
    # Resolved reservations are deleted after this long (the ledger keeps the history);
    # until then a late duplicate event for the call is recognised and ignored.
    reservation_retention_s: int = Field(7 * 86_400, ge=3600, le=366 * 86_400)
    # Completion budget reserved, and written into the request, when a call sets no
    # max_tokens: without a bound the upstream could spend more than we reserved.
    completion_tokens_default: int = Field(4096, ge=1, le=1_000_000)
    # Streamed chat calls are metered: they reserve the prompt and this many raw completion
    # tokens, and the stream grows the reservation before delivering beyond it, each growth
    # twice the last, up to stream_chunk_tokens_max (few round trips for long answers).
    # 0: streams reserve the worst case, as other calls do.
    stream_chunk_tokens: int = Field(128, ge=0, le=1_000_000)
    stream_chunk_tokens_max: int = Field(2048, ge=1, le=1_000_000)
    # Leases: a proxy process holds a slice of a busy user's allowance (lease_calls worst cases
    # of the call that took it, at most lease_share of what the user has free) and reserves
    # their calls from it in memory (unstreamed calls, and metered streams as they grow:
    # quota/leased_streams.py), with no database round trip; the settles are
    # written in batches every settle_batch_interval_ms, kept in the spool until then. Near
    # the edge of an allowance (no lease of two worst cases fits) calls are reserved one by
    # one in Postgres, as with leases off, but their settles wait for the same batches. A
    # lease unused for lease_idle_s is returned; one whose process died expires after lease_ttl_s.
    leases: bool = True
    lease_calls: int = Field(32, ge=2, le=10_000)
    lease_share: float = Field(0.25, gt=0, le=1)
    lease_ttl_s: int = Field(60, ge=5, le=3600)
    lease_idle_s: float = Field(10, gt=0, le=3600)
    settle_batch_interval_ms: int = Field(50, ge=1, le=5000)
    # Every route has a rule: `charge` (bounded before the call, charged after; only the
    # routes solaris_hooks can bound), `free` (no reservation, no charge) or `refuse` (403
    # naming the route and this setting). Merged over the defaults: chat, completions,
    # responses, messages, embeddings, moderations, images, image_edits, speech and
    # transcriptions are charged; every other route (files, batches, passthrough, realtime,
    # assistants, rerank…, see solaris_hooks.quota.route_rules) is refused until opened here.
    routes: dict[Annotated[str, Field(pattern=r"^[a-z_]{1,60}$")], Rule] = Field(default_factory=dict, max_length=100)
    # Upper bounds of prompt parts that are not text (images, audio, files), per model group
    # or "*" (see solaris_hooks.settings.input_part_bounds). A part without a bound refuses the call.
    input_part_bounds: dict[Annotated[str, Field(min_length=1, max_length=200)], InputPartBounds] = Field(
        default_factory=dict, max_length=1000
    )
    # Prices of images, speech and transcriptions, in platform tokens, per model group or "*"
    # (see solaris_hooks.settings.model_prices). A model without a price on those routes is refused.
    model_prices: dict[Annotated[str, Field(min_length=1, max_length=200)], ModelPrice] = Field(
        default_factory=dict, max_length=1000
    )
    # Starting prompt margins per model group or "*": the prompt estimate is multiplied by
    # the larger of this and the margin learned from what providers report (solaris.model_margins).
    # Set it for a model whose tokenizer counts more than ours (e.g. {claude-sonnet: 1.3}) to
    # bound even its very first call; unset, the first call teaches the margin.
    prompt_margins: dict[Annotated[str, Field(min_length=1, max_length=200)], Annotated[float, Field(ge=1, le=10)]] = (
        Field(default_factory=dict, max_length=1000)
    )
    # The header that names the end user when neither of LiteLLM's own (x-litellm-customer-id,
    # x-litellm-end-user-id) is sent; read after them, as LiteLLM reads its user_header_name.
    identity_header: str = Field("x-litellm-end-user-id", min_length=1, max_length=100)
    # Whether `Ana@example.com` and `ana@example.com` are one account: everything in an
    # identity but an e-mail domain (always lower-cased) follows this. See solaris_hooks.quota.identity.
    identity_local_part_case: Literal["insensitive", "sensitive"] = "insensitive"
    # A call from a trusted key (see trusted_keys) that names no end user: refused with a
    # 400, or charged to the key's own LiteLLM user (else `key:<hash prefix>`). Never
    # silently to one account shared by everyone.
    anonymous_calls: Literal["refuse", "charge_key"] = "refuse"
    fail_mode: Literal["closed", "open"] = "closed"
    # Usage that could not be written to the ledger (a settle while Postgres was down, or a
    # call fail_mode: open let through) waits here, in one JSON-lines file per proxy
    # process, until it is replayed into the ledger. Unset: `spool` under SOLARIS_DATA_DIR,
    # i.e. ./.solaris/spool by default. Keep it on a disk that survives restarts: what it
    # holds is not charged yet.
    spool_dir: str | None = Field(None, min_length=1, max_length=1000)
    # How often the spool is replayed, and an unreachable database probed, in the background.
    replay_interval_s: float = Field(5, gt=0, le=3600)
    # 429 carries `x-should-retry: false` so OpenAI SDKs do not retry; 403 is never retried.
    refusal_status_code: Literal[403, 429] = 429
    # How a refused chat or responses call is answered: `error` (the status above and an
    # OpenAI error body, for API clients) or `message` (200, one assistant message whose
    # text is the notice, usage 0, header x-solaris-refusal: <code>), for chat front ends
    # that show errors badly, LibreChat among them. Other routes always get the error.
    refusal_style: Literal["error", "message"] = "error"
    # Keys that may name the end user (headers or body `user`), besides the master key,
    # which always may: aliases or raw keys (or os.environ/NAME). Unset: the master key
    # only. Any other key pays for itself and may name only itself (naming someone else is
    # a 403), so a person holding a personal key cannot spend someone else's allowance.
    trusted_keys: list[Annotated[str, Field(min_length=1, max_length=500)]] | None = Field(None, max_length=1000)
    # Per end user, counted per minute in LiteLLM's cache (shared by replicas through Redis
    # with enable_redis_auth_cache: true); unset: no limit.
    requests_per_minute: int | None = Field(None, ge=1, le=1_000_000)
    tokens_per_minute: int | None = Field(None, ge=1, le=10**12)
    # LibreChat's conversation titles: charged like any call, or recorded with 0 tokens (only
    # for a user with some allowance left). See solaris_hooks.quota.title_calls for what is a title call.
    title_calls: Literal["charge", "free"] = "charge"
    # How a title call's one user message must start: regexes (case-insensitive), matched at
    # the start of the message, never anywhere in it. The defaults are LibreChat's own title
    # prompts (classic clients, @librechat/agents completion and structured titles).
    title_prompt_patterns: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        default_factory=lambda: [
            r"(Please generate|Provide) a concise, 5-word-or-less title for the conversation",
            r"Analyze this conversation and provide:\s*1\. The detected language",
            r"[^\n]{0,80}concise title in the detected language",
            r"[^\n]{0,80}concise title \(max 40 characters\) for a conversation",
        ],
        max_length=20,
    )
    # A free title call is capped: its answer at this many raw tokens (a title is a few
    # words), its prompt at this many (longer ones are charged like any call).
    title_completion_tokens_max: int = Field(100, ge=1, le=4096)
    title_prompt_tokens_max: int = Field(4000, ge=1, le=1_000_000)
    # Periodic renewal of every allowance; none when absent.
    refill: RefillSettings | None = None
    # Groups of users with settings of their own (solaris_hooks.settings.groups); a user
    # in none, or in a group no longer configured, has the top-level settings.
    groups: dict[GroupName, Group] = Field(default_factory=dict, max_length=100)
    # A header naming the caller's group on each call (e.g. `x-solaris-group` sent by
    # LibreChat as "{{LIBRECHAT_USER_ROLE}}"), honoured only from keys allowed to name end
    # users; a group an admin chose wins over it. Unset: groups are only set by admins.
    group_header: str | None = Field(None, min_length=1, max_length=100)
    # Usage fractions that warn by e-mail; the block at 1.0 is always added.
    alert_thresholds: list[Threshold] = Field(default_factory=lambda: [0.8, 0.95], max_length=10)
    brand_name: str = Field("IA SOLARIS", min_length=1, max_length=100)
    # The outbox worker: how often it looks for due mail, how long a claim lasts (longer
    # than an SMTP attempt can take, so a live sender never loses its claim), and retries.
    mail_poll_interval_s: float = Field(5, gt=0, le=3600)
    mail_lease_s: float = Field(120, gt=0, le=86_400)
    mail_attempts_max: int = Field(8, ge=1, le=100)
    mail_backoff_base_s: float = Field(30, gt=0, le=86_400)
    mail_backoff_max_s: float = Field(3600, gt=0, le=7 * 86_400)
    # Alert webhooks (Slack, Teams, or a signed JSON POST): each usage alert the outbox
    # e-mails is also delivered to every one of them, through the same outbox and with the
    # same retries (see solaris_hooks.settings.alert_webhooks and solaris_hooks.mail.webhooks).
    alert_webhooks: list[AlertWebhook] = Field(default_factory=list, max_length=20)

    @field_validator("alert_webhooks")
    @classmethod
    def _one_channel_each(cls, webhooks: list[AlertWebhook]) -> list[AlertWebhook]:
        return unique_channels(webhooks)

    # Where people reach the proxy (e.g. https://ia.example.com): the base of the personal
    # usage links in alert e-mails. Unset: e-mails carry no link (we cannot guess the host).
    public_url: Annotated[str, Field(pattern=r"^https?://[^\s/]+(/[^\s]*)?$", max_length=300)] | None = None
    # Personal usage links stay valid this long; the admin pages' sessions this long.
    usage_link_ttl_days: int = Field(90, ge=1, le=3660)
    admin_session_ttl_s: int = Field(8 * 3600, ge=60, le=30 * 86_400)
    db_pool_size_max: int = Field(10, ge=1, le=200)
    db_timeout_s: float = Field(5, gt=0, le=120)
    # psycopg's prepare_threshold for the proxy's pool, read at start: a statement run this
    # many times on one connection is prepared on the server (psycopg's default, 5). null:
    # never. A prepared statement lives on one server connection, and a PgBouncer in
    # transaction mode hands the next transaction another one, unless it is 1.21 or newer with
    # max_prepared_statements set; with null any version works. Connections that serve one
    # command (the CLI, migrations, the doctor) never prepare: solaris_hooks.db.connection.
    db_prepare_threshold: int | None = Field(5, ge=0, le=1_000_000)

    @field_validator("title_prompt_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {error}") from None
        return patterns

    @field_validator("routes")
    @classmethod
    def _routes_boundable(cls, routes: dict[str, Rule]) -> dict[str, Rule]:
        return dict(validate_routes(routes))

    @field_validator("alert_thresholds")
    @classmethod
    def _sorted_unique(cls, thresholds: list[float]) -> list[float]:
        return sorted(set(thresholds))

    @field_validator("db_prepare_threshold", mode="before")
    @classmethod
    def _none_from_text(cls, value: object) -> object:
        # Through `os.environ/NAME` every value is text: `none` (or `null`) means never prepare.
        if isinstance(value, str) and value.strip().lower() in ("none", "null"):
            return None
        return value

    def prompt_margin_for(self, model: str | None) -> float:
        return self.prompt_margins.get(model or "", self.prompt_margins.get("*", 1.0))

    def factor_for(self, model: str | None) -> float:
        return self.model_factors.get(model or "", self.conversion_factor)

    def for_group(self, name: str | None) -> Settings:
        """These settings as they apply to a member of group `name` (itself for no group, or
        one not configured): each key the group sets replaces the top-level one."""
        group = self.groups.get(name or "")
        if group is None:
            return self
        update = group.overrides()
        # A group's own factors come first, then its conversion_factor, which (when set)
        # prices the models the group does not name, top-level model_factors included.
        base = {} if group.conversion_factor is not None else self.model_factors
        update["model_factors"] = {**base, **group.model_factors}
        return self.model_copy(update=update)

    def group_default_tokens(self) -> dict[str, int]:
        """Each configured group's first grant for a new member."""
        return {name: self.for_group(name).default_tokens_per_user for name in self.groups}

    def spool_path(self, environ: Mapping[str, str] = os.environ) -> Path:
        """The spool directory: spool_dir, else `spool` under SOLARIS_DATA_DIR (./.solaris)."""
        if self.spool_dir:
            return Path(self.spool_dir)
        return Path(Environment.read(environ).solaris_data_dir or ".solaris") / "spool"
