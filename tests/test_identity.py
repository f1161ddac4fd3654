"""Who pays for a call."""

from __future__ import annotations

import pytest

from solaris_hooks.exceptions import IdentityRefused
from solaris_hooks.identity import resolve_identity

header = "x-litellm-end-user-id"


def data(header_value: str | None = None, user: object = None) -> dict:
    headers = {} if header_value is None else {"X-LiteLLM-End-User-Id": header_value}
    body = {"proxy_server_request": {"headers": headers}}
    if user is not None:
        body["user"] = user
    return body


class TestResolveIdentity:
    def test_the_header_wins_over_body_and_key(self):
        """LibreChat's header names the user even when body and key name others."""
        assert resolve_identity(data("ana@example.com", "65f0c0ffee"), header, "key-user") == "ana@example.com"

    def test_the_body_user_is_next(self):
        """Without the header, the body's `user` is the account."""
        assert resolve_identity(data(None, "65f0c0ffee"), header, "key-user") == "65f0c0ffee"

    def test_the_key_user_is_last(self):
        """Without header or body, the key's own user pays."""
        assert resolve_identity(data(), header, "key-user") == "key-user"

    @pytest.mark.parametrize("value", ["{{LIBRECHAT_USER_EMAIL}}", "x{{LIBRECHAT_USER_ID}}", "a}}"])
    def test_an_unresolved_placeholder_is_refused(self, value):
        """A `{{…}}` placeholder means LibreChat was not set up: refused, with advice."""
        with pytest.raises(IdentityRefused) as refused:
            resolve_identity(data(value), header, None)
        assert refused.value.message_key == "identity_placeholder"

    @pytest.mark.parametrize("value", ["", "   "])
    def test_an_empty_identity_is_refused(self, value):
        """A blank header is a misconfiguration, not an account."""
        with pytest.raises(IdentityRefused) as refused:
            resolve_identity(data(value), header, "key-user")
        assert refused.value.message_key == "identity_missing"

    def test_no_identity_at_all_is_refused(self):
        """Nothing names a user: refused."""
        with pytest.raises(IdentityRefused):
            resolve_identity(data(), header, None)

    @pytest.mark.parametrize("value", ["a" * 256, "ana\r\nx-admin: 1", "tab\there"])
    def test_oversized_or_control_characters_are_refused(self, value):
        """Identities are bounded plain text."""
        with pytest.raises(IdentityRefused):
            resolve_identity(data(value), header, None)

    def test_a_non_text_body_user_is_refused(self):
        """`user: 123` or a list is refused rather than coerced."""
        with pytest.raises(IdentityRefused):
            resolve_identity(data(None, ["a"]), header, None)

    def test_surrounding_spaces_are_trimmed(self):
        """' ana@example.com ' and 'ana@example.com' are one account."""
        assert resolve_identity(data(None, " ana@example.com "), header, None) == "ana@example.com"
