"""What the `/solaris/users` routes share: field rules, the account as answered, and the
path convertors that let a user id hold '/'.

A user id in a path or body names an account as in solaris_hooks.admin.accounts: `Ana@Example.COM`
finds `ana@example.com`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.convertors import Convertor, register_url_convertor

from solaris_hooks.quota.identity import identity_length_max
from solaris_hooks.web.api.base import line_pattern, text_pattern

tokens_max = 10**12
page_size_max = 500

# Strict: "10", 10.5 and true are refused rather than coerced into a token amount.
Tokens = Annotated[int, Field(strict=True, gt=0, le=tokens_max)]
SignedTokens = Annotated[int, Field(strict=True, ge=-tokens_max, le=tokens_max)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500, pattern=text_pattern)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=320, pattern=line_pattern)]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=identity_length_max)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountOut(BaseModel):
    user_id: str
    email: str | None = None
    name: str | None = None
    locale: str | None = None
    status: Literal["active", "blocked", "disabled"]
    credited_tokens: int
    used_tokens: int
    reserved_tokens: int
    remaining_tokens: int
    period: str | None = None
    group: str | None = None  # settings.groups: what prices the user's calls (none: the top-level settings)
    group_source: Literal["admin", "header"] | None = None  # who chose it: an admin wins over calls' header
    refused_calls: int = 0  # calls refused by quota, status or rate limits (counted within a second or so)
    last_refused_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class UserPartConvertor(Convertor):
    """A user id in a path, whatever it holds: '/' (an e-mail may, and Starlette decodes
    %2F before routing) and new lines too, so validation, not the router, answers."""

    regex = r"(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class UserPathConvertor(UserPartConvertor):
    """The same as the last part of a path, unless it ends like a route below a user:
    `GET …/ana/ledger` is Ana's ledger and `PATCH …/ana/adjust` a 405."""

    regex = r"(?!(?s:.*)/(?:add-tokens|adjust|ledger|merge)$)(?s:.+)"


# Ids with '/' reach every route: `:solaris_user_part` below a user, `:solaris_user` for the user itself.
register_url_convertor("solaris_user_part", UserPartConvertor())
register_url_convertor("solaris_user", UserPathConvertor())
