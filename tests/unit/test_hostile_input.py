"""Hostile input without a proxy: the identity rules on any script or control character, and
an unexpected error in a route answered as JSON without its internals.

The same against the real proxy: tests/e2e/test_hostile_input.py."""

from __future__ import annotations

import json

import pytest

from tests.support.harness import assert_readable_error


class TestUnexpectedErrors:
    def test_a_bug_is_a_json_500_and_one_log_line_without_a_traceback(self, caplog):
        """An exception no route expects: `{"error": …}` with 500, nothing of the exception
        in the answer, and one `api_error` line saying where it happened."""
        from fastapi import FastAPI
        from fastapi.testclient import TestClient

        from solaris_hooks.web.api import base as api
        from solaris_hooks.web.api import profile as routes_users
        from solaris_hooks.web.auth import Actor
        from solaris_hooks.web.context import WebContext, install

        class Broken:
            def connection(self):
                raise RuntimeError("secret internals")

        app = FastAPI()
        app.include_router(routes_users.router)
        install(app, WebContext(database=Broken(), current_settings=lambda: None, reload=print, metrics=None))
        app.dependency_overrides[api.authorize] = lambda: Actor("test", "admin")
        with caplog.at_level("INFO", logger="solaris_hooks"):
            response = TestClient(app, raise_server_exceptions=False).get("/solaris/users/ana")
        assert_readable_error(response, 500)
        assert "secret internals" not in response.text and "RuntimeError" not in response.text
        (line,) = [json.loads(record.getMessage()) for record in caplog.records if "api_error" in record.getMessage()]
        assert (line["route"], line["error"]) == ("/solaris/users/{user_id:solaris_user}", "RuntimeError")
        assert "get_user" in line["where"]


class TestIdentityRules:
    @pytest.mark.parametrize(
        "identity",
        [
            "ana\u2028x",
            "ana\u0085x",
            "ana\u202ex",
            "ana\u200bx",
            "ana\ufeffx",
            "ana\ud800x",
            "ana\x00x",
            "ana\x1bx",
            "ana\ufffdx",
        ],
    )
    def test_invisible_and_control_characters_are_refused(self, identity):
        """C0/C1 controls, format characters, separators, surrogates and U+FFFD are not identities."""
        from solaris_hooks.exceptions import IdentityRefused
        from solaris_hooks.quota.identity import validate_identity

        with pytest.raises(IdentityRefused):
            validate_identity(identity)

    @pytest.mark.parametrize(
        "identity",
        [
            "joão.silva@example.com",
            "65f0c0ffee65f0c0ffee65f0",
            "María José",
            "<b>'; DROP TABLE x;--",
            "dept/ana@example.com",
            "用户@例子.广告",
        ],
    )
    def test_visible_text_of_any_script_is_an_identity(self, identity):
        """Accents, other scripts, markup-looking and SQL-looking text are just names."""
        from solaris_hooks.quota.identity import validate_identity

        assert validate_identity(identity) == identity

    def test_header_bytes_are_read_as_utf8_when_they_are_utf8(self):
        """Starlette hands headers over as latin-1: UTF-8 bytes are decoded again, latin-1 kept."""
        from solaris_hooks.quota.identity import header_text

        utf8_on_the_wire = "joão".encode().decode("latin-1")
        latin1_on_the_wire = "joão".encode("latin-1").decode("latin-1")
        assert header_text(utf8_on_the_wire) == header_text(latin1_on_the_wire) == "joão"
        assert header_text("ana@example.com") == "ana@example.com"
