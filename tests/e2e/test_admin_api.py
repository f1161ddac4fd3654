"""The admin API on the proxy: users, credits, adjustments, bulk, import, ledger, audit, auth, OpenAPI."""

from __future__ import annotations

import concurrent.futures
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from solaris_hooks.web.auth import key_fingerprint
from tests.support.harness import api_client, wait_for
from tests.support.proxy_calls import ask
from tests.support.suite import admin_key_ana, admin_key_anonymous, proxy_settings, viewer_key

allowance = proxy_settings["default_tokens_per_user"]


def new_user(http: httpx.Client, **fields) -> dict:
    body = {"user_id": f"adm-{uuid.uuid4().hex[:10]}@example.com", **fields}
    response = http.post("/solaris/users", json=body)
    assert response.status_code == 201, response.text
    return response.json()


class TestUsers:
    def test_create_then_get_a_user(self, http):
        """POST /users creates with e-mail, name, locale and initial tokens; GET returns it."""
        created = new_user(http, email="ana.souza@example.com", name="Ana Souza", locale="en", initial_tokens=250)
        assert (created["credited_tokens"], created["remaining_tokens"], created["locale"]) == (250, 250, "en")
        fetched = http.get(f"/solaris/users/{created['user_id']}").json()
        assert fetched["name"] == "Ana Souza" and fetched["email"] == "ana.souza@example.com"

    def test_creating_an_existing_user_is_a_conflict(self, http):
        """The same id twice: 409, and the first account is unchanged."""
        created = new_user(http, initial_tokens=10)
        response = http.post("/solaris/users", json={"user_id": created["user_id"], "initial_tokens": 999})
        assert response.status_code == 409 and "already exists" in response.json()["error"]["message"]
        assert http.get(f"/solaris/users/{created['user_id']}").json()["credited_tokens"] == 10

    def test_search_filter_sort_and_paginate(self, http):
        """Search matches id, e-mail or name; status filters; sort by usage; pages are bounded."""
        marker = uuid.uuid4().hex[:8]
        first = new_user(http, name=f"Busca {marker} Um", initial_tokens=100)
        second = new_user(http, email=f"busca.{marker}@example.com", initial_tokens=100)
        http.patch(f"/solaris/users/{second['user_id']}", json={"status": "blocked"})
        page = http.get("/solaris/users", params={"search": marker}).json()
        assert {user["user_id"] for user in page["users"]} == {first["user_id"], second["user_id"]}
        blocked = http.get("/solaris/users", params={"search": marker, "status": "blocked"}).json()
        assert [user["user_id"] for user in blocked["users"]] == [second["user_id"]]
        sorted_page = http.get("/solaris/users", params={"sort": "remaining", "order": "asc", "limit": 1}).json()
        assert len(sorted_page["users"]) == 1 and sorted_page["total"] >= 2
        assert http.get("/solaris/users", params={"limit": 100000}).json()["limit"] == 500

    def test_search_text_is_literal(self, http):
        """`%` and `_` in a search are characters, not wildcards; SQL in it is just text."""
        assert http.get("/solaris/users", params={"search": "%"}).json()["total"] == 0
        assert http.get("/solaris/users", params={"search": "'; DROP TABLE solaris.accounts; --"}).status_code == 200

    def test_update_profile_and_status(self, http):
        """PATCH changes fields given and leaves the rest; an empty string clears the e-mail."""
        user = new_user(http, email="x@example.com", name="X")
        updated = http.patch(f"/solaris/users/{user['user_id']}", json={"name": "Xavier", "email": ""}).json()
        assert (updated["name"], updated["email"], updated["status"]) == ("Xavier", None, "active")

    def test_a_disabled_user_is_refused_with_its_own_message_and_keeps_its_ledger(self, http, client):
        """status disabled: calls get 403 saying the account is disabled; the ledger stays."""
        user = new_user(http, initial_tokens=500)
        ask(client, user["user_id"], "[[tokens=5]] oi")
        http.patch(f"/solaris/users/{user['user_id']}", json={"status": "disabled"})
        import openai

        with pytest.raises(openai.PermissionDeniedError) as refused:
            ask(client, user["user_id"], "de novo")
        assert "desativada" in refused.value.body["message"]
        # The served call's settle is written by the next batch (leases on): waited for, not assumed.
        rows = wait_for(
            lambda: (
                (got := http.get(f"/solaris/users/{user['user_id']}/ledger").json()["rows"])
                and {row["kind"] for row in got} >= {"grant", "reserve", "settle"}
                and got
            ),
            15,
            what="the served call's settle",
        )
        assert len([row for row in rows if row["kind"] == "settle"]) == 1


class TestCredits:
    def test_an_idempotency_key_credits_once(self, http):
        """Five concurrent retries of one click with the same Idempotency-Key: one credit, same answers."""
        user = new_user(http, initial_tokens=0)
        key = uuid.uuid4().hex

        def click() -> httpx.Response:
            return http.post(
                f"/solaris/users/{user['user_id']}/add-tokens",
                json={"tokens": 100, "reason": "clique"},
                headers={"Idempotency-Key": key},
            )

        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            responses = list(pool.map(lambda _: click(), range(5)))
        assert [response.status_code for response in responses] == [200] * 5
        assert {response.json()["credited_tokens"] for response in responses} == {100}
        assert sum(response.headers.get("Idempotent-Replayed") == "true" for response in responses) == 4
        assert http.get(f"/solaris/users/{user['user_id']}").json()["credited_tokens"] == 100

    def test_an_idempotency_key_reused_for_another_request_is_refused(self, http):
        """Same key, different amount: 409, nothing credited."""
        user = new_user(http, initial_tokens=0)
        key = uuid.uuid4().hex
        http.post(
            f"/solaris/users/{user['user_id']}/add-tokens",
            json={"tokens": 5, "reason": "a"},
            headers={"Idempotency-Key": key},
        )
        response = http.post(
            f"/solaris/users/{user['user_id']}/add-tokens",
            json={"tokens": 50, "reason": "a"},
            headers={"Idempotency-Key": key},
        )
        assert response.status_code == 409 and "different request" in response.json()["error"]["message"]
        assert http.get(f"/solaris/users/{user['user_id']}").json()["credited_tokens"] == 5

    def test_adjust_corrects_credited_or_debited_with_a_reason(self, http):
        """A signed adjustment changes the allowance, or what was used, and refuses to go below zero."""
        user = new_user(http, initial_tokens=100)
        down = http.post(f"/solaris/users/{user['user_id']}/adjust", json={"tokens": -30, "reason": "erro"})
        assert down.status_code == 200 and down.json()["credited_tokens"] == 70
        too_far = http.post(f"/solaris/users/{user['user_id']}/adjust", json={"tokens": -500, "reason": "x"})
        assert too_far.status_code == 409 and "negative" in too_far.json()["error"]["message"]
        refund = http.post(
            f"/solaris/users/{user['user_id']}/adjust", json={"tokens": -1, "reason": "estorno", "target": "debited"}
        )
        assert refund.status_code == 409  # nothing used yet, so nothing to refund
        missing_reason = http.post(f"/solaris/users/{user['user_id']}/adjust", json={"tokens": 5})
        assert missing_reason.status_code == 422 and "reason" in missing_reason.json()["error"]["message"]

    def test_bulk_grant_to_a_list_and_to_everyone(self, http):
        """A list gets exactly its users; unknown ids refuse the whole grant."""
        first, second = new_user(http, initial_tokens=0), new_user(http, initial_tokens=0)
        response = http.post(
            "/solaris/users/bulk-grant",
            json={"tokens": 7, "reason": "bônus", "user_ids": [first["user_id"], second["user_id"]]},
        )
        assert response.json() == {"credited_users": 2}
        assert http.get(f"/solaris/users/{first['user_id']}").json()["credited_tokens"] == 7
        unknown = http.post(
            "/solaris/users/bulk-grant",
            json={"tokens": 7, "reason": "x", "user_ids": [first["user_id"], "nobody-" + uuid.uuid4().hex]},
        )
        assert unknown.status_code == 404 and "nothing was credited" in unknown.json()["error"]["message"]
        assert http.get(f"/solaris/users/{first['user_id']}").json()["credited_tokens"] == 7
        everyone = http.post("/solaris/users/bulk-grant", json={"tokens": 1, "reason": "todos"})
        assert everyone.json()["credited_users"] >= 2
        assert http.get(f"/solaris/users/{first['user_id']}").json()["credited_tokens"] == 8

    def test_import_users_from_csv(self, http):
        """A CSV creates new users and updates existing ones; one bad line imports nothing."""
        existing = new_user(http, initial_tokens=1)
        fresh = f"csv-{uuid.uuid4().hex[:8]}@example.com"
        csv_text = (
            f'user_id,email,name,locale,tokens\n{fresh},,"Silva, Ana",pt-BR,300\n'
            f"{existing['user_id']},novo@example.com,,,\n"
        )
        response = http.post("/solaris/users/import", content=csv_text.encode(), headers={"content-type": "text/csv"})
        assert response.json() == {"created": 1, "updated": 1}
        created = http.get(f"/solaris/users/{fresh}").json()
        assert (created["name"], created["credited_tokens"]) == ("Silva, Ana", 300)
        assert http.get(f"/solaris/users/{existing['user_id']}").json()["email"] == "novo@example.com"
        other = f"csv-{uuid.uuid4().hex[:8]}"
        bad = http.post(
            "/solaris/users/import",
            content=f"user_id,tokens\n{other},10\n{{{{x}}}},abc\n".encode(),
            headers={"content-type": "text/csv"},
        )
        assert bad.status_code == 422 and "line 3" in bad.json()["error"]["message"]
        assert http.get(f"/solaris/users/{other}").status_code == 404
        not_utf8 = http.post(
            "/solaris/users/import", content=b"user_id\n\xff\xfe\n", headers={"content-type": "text/csv"}
        )
        assert not_utf8.status_code == 422 and "UTF-8" in not_utf8.json()["error"]["message"]


class TestLedger:
    def test_the_ledger_shows_every_row_with_its_details(self, http, client):
        """A call's reserve and settle rows carry tokens, raw tokens, model, cost, call id and actor."""
        user = new_user(http, initial_tokens=1000)
        ask(client, user["user_id"], "[[tokens=9]] oi")
        http.post(f"/solaris/users/{user['user_id']}/add-tokens", json={"tokens": 3, "reason": "mimo"})

        def settled():
            rows = http.get(f"/solaris/users/{user['user_id']}/ledger", params={"kind": "settle"}).json()["rows"]
            return rows or None

        from tests.support.harness import wait_for

        (settle,) = wait_for(settled, 10, what="settle row")
        assert settle["raw_tokens"] > 9 and settle["model"] == "fake-model" and settle["call_id"]
        assert settle["cost_usd"] is not None and settle["actor"] == "solaris"
        credits = http.get(f"/solaris/users/{user['user_id']}/ledger", params={"kind": "credit"}).json()["rows"]
        assert (credits[0]["actor"], credits[0]["reason"]) == ("master_key", "mimo")

    def test_the_ledger_filters_by_date(self, http):
        """`from`/`to` dates bound the rows; a range in the future is empty."""
        user = new_user(http, initial_tokens=5)
        assert http.get(f"/solaris/users/{user['user_id']}/ledger", params={"from": "2999-01-01"}).json()["total"] == 0
        assert (
            http.get(
                f"/solaris/users/{user['user_id']}/ledger", params={"from": "2000-01-01", "to": "2999-12-31"}
            ).json()["total"]
            == 1
        )


class TestAudit:
    def test_each_admin_action_is_audited_with_actor_before_and_after(self, proxy, http):
        """create, update, credit and adjust each leave an audit row; the actor is an alias or key hash."""
        ana = api_client(proxy.base_url, admin_key_ana)
        anonymous = api_client(proxy.base_url, admin_key_anonymous)
        user = new_user(ana, initial_tokens=10)
        ana.patch(f"/solaris/users/{user['user_id']}", json={"name": "Novo"})
        anonymous.post(f"/solaris/users/{user['user_id']}/add-tokens", json={"tokens": 5, "reason": "r"})
        ana.post(f"/solaris/users/{user['user_id']}/adjust", json={"tokens": 2, "reason": "ajuste"})
        rows = http.get("/solaris/audit", params={"user_id": user["user_id"]}).json()["rows"]
        assert [row["action"] for row in reversed(rows)] == ["user.create", "user.update", "credit", "adjust"]
        assert {row["actor"] for row in rows} == {"ana", key_fingerprint(admin_key_anonymous)}
        update = rows[2]
        assert (update["before"]["name"], update["after"]["name"]) == (None, "Novo")
        assert all(admin_key_anonymous not in str(row) and admin_key_ana not in str(row) for row in rows)


class TestAuthorization:
    def test_a_viewer_key_may_read_but_not_write(self, proxy, http):
        """SOLARIS_VIEWER_KEYS: GET works, anything else is 403 with a readable reason."""
        viewer = api_client(proxy.base_url, viewer_key)
        user = new_user(http)
        assert viewer.get(f"/solaris/users/{user['user_id']}").status_code == 200
        refused = viewer.post(f"/solaris/users/{user['user_id']}/add-tokens", json={"tokens": 1, "reason": "x"})
        assert refused.status_code == 403 and "read-only" in refused.json()["error"]["message"]
        assert viewer.patch(f"/solaris/users/{user['user_id']}", json={"name": "x"}).status_code == 403

    def test_unknown_keys_are_401(self, proxy):
        """A key that is not master, admin or viewer: 401."""
        assert api_client(proxy.base_url, "sk-nobody").get("/solaris/users").status_code == 401


class TestSettingsAndMetrics:
    def test_settings_show_values_and_sources(self, http):
        """GET /solaris/settings gives each effective value and where it came from."""
        settings = http.get("/solaris/settings").json()["settings"]
        assert settings["conversion_factor"] == {"value": 0.376, "source": "yaml"}
        assert settings["brand_name"]["source"] == "default"
        assert settings["smtp_host"]["source"] == "env SMTP_HOST"

    def test_a_settings_reload_is_audited(self, http):
        """POST /solaris/settings/reload re-reads the YAML and leaves an audit row."""
        assert http.post("/solaris/settings/reload").status_code == 200
        rows = http.get("/solaris/audit", params={"action": "settings.reload", "limit": 1}).json()["rows"]
        assert rows and rows[0]["after"]["conversion_factor"] == 0.376

    def test_metrics_parse_as_prometheus_text(self, http, client, user_id):
        """GET /solaris/metrics parses, with charged tokens, refusals, reservations, outbox and latency."""
        ask(client, user_id, "[[tokens=3]] oi")
        import openai

        with pytest.raises(openai.BadRequestError):
            ask(client, "{{LIBRECHAT_USER_EMAIL}}")
        response = http.get("/solaris/metrics")
        assert response.headers["content-type"].startswith("text/plain")
        families = {family.name: family for family in text_string_to_metric_families(response.text)}
        assert {
            "solaris_charged_tokens",
            "solaris_refusals",
            "solaris_active_reservations",
            "solaris_outbox_alerts",
            "solaris_pre_call_seconds",
        } <= set(families)
        refusals = {
            sample.labels.get("reason"): sample.value
            for sample in families["solaris_refusals"].samples
            if sample.name == "solaris_refusals_total"
        }
        assert refusals.get("identity", 0) >= 1
        assert any(sample.value > 0 for sample in families["solaris_charged_tokens"].samples)


class TestOpenApi:
    def test_every_solaris_route_is_in_the_openapi_schema_with_models(self, proxy):
        """The proxy's /openapi.json lists our routes with request and response schemas."""
        schema = httpx.get(f"{proxy.base_url}/openapi.json", timeout=30).json()
        paths = {path: ops for path, ops in schema["paths"].items() if path.startswith("/solaris")}
        for expected in (
            "/solaris/users",
            "/solaris/users/{user_id}",
            "/solaris/users/{user_id}/add-tokens",
            "/solaris/users/{user_id}/adjust",
            "/solaris/users/{user_id}/ledger",
            "/solaris/audit",
            "/solaris/alerts",
            "/solaris/metrics",
            "/solaris/users/bulk-grant",
        ):
            assert expected in paths, expected
        add_tokens = paths["/solaris/users/{user_id}/add-tokens"]["post"]
        assert "AddTokensIn" in str(add_tokens["requestBody"])
        assert "AccountOut" in str(add_tokens["responses"]["200"])


class TestBadInput:
    @pytest.mark.parametrize("tokens", [0, -5, 1.5, "100", "abc", None, 10**13, True])
    def test_bad_token_amounts_are_422(self, http, tokens):
        """Zero, negative, fractional, text, null, absurd and boolean amounts are refused readably."""
        user = new_user(http, initial_tokens=0)
        response = http.post(f"/solaris/users/{user['user_id']}/add-tokens", json={"tokens": tokens, "reason": "x"})
        assert response.status_code == 422
        assert "tokens" in response.json()["error"]["message"]
        assert http.get(f"/solaris/users/{user['user_id']}").json()["credited_tokens"] == 0

    @pytest.mark.parametrize(
        ("method", "path", "body", "status"),
        [
            ("GET", "/solaris/users/nobody-here-xyz", None, 404),
            ("POST", "/solaris/users/nobody-here-xyz/adjust", {"tokens": 5, "reason": "x"}, 404),
            ("GET", "/solaris/users/nobody-here-xyz/ledger", None, 404),
            ("PATCH", "/solaris/users/nobody-here-xyz", {"name": "x"}, 404),
            ("POST", "/solaris/users", {"user_id": "x", "colour": "blue"}, 422),
            ("POST", "/solaris/users", {"user_id": "a" * 300}, 422),
            ("POST", "/solaris/users", {"user_id": "{{LIBRECHAT_USER_EMAIL}}"}, 422),
            ("POST", "/solaris/users", {"user_id": "ok", "email": "not-an-email"}, 422),
            ("POST", "/solaris/users", {"user_id": "ok", "locale": "fr"}, 422),
            ("GET", "/solaris/users/" + "a" * 300, None, 422),
            ("GET", "/solaris/users/%FF%FE", None, 422),
            ("PATCH", "/solaris/users/nobody-here-xyz", {"status": "gone"}, 422),
            ("GET", "/solaris/users?sort=price", None, 422),
            ("GET", "/solaris/users?limit=0", None, 422),
            ("GET", "/solaris/users?offset=-1", None, 422),
            ("GET", "/solaris/users/x/ledger?from=yesterday", None, 422),
            ("GET", "/solaris/users/x/ledger?from=2026-02-30", None, 422),
            ("GET", "/solaris/users/x/ledger?kind=refund", None, 422),
            ("POST", "/solaris/users/bulk-grant", {"tokens": 5, "reason": "x", "user_ids": []}, 422),
            ("POST", "/solaris/users/import", "", 422),
        ],
    )
    def test_wrong_requests_get_a_readable_4xx(self, http, method, path, body, status):
        """Unknown users, unknown fields, over-long and non-UTF-8 ids, bad filters and dates: 4xx with a message."""
        if isinstance(body, str):
            response = http.request(method, path, content=body.encode(), headers={"content-type": "text/csv"})
        else:
            response = http.request(method, path, json=body)
        assert response.status_code == status, response.text
        assert response.json()["error"]["message"]

    def test_malformed_json_is_a_422(self, http):
        """A body that is not JSON is a client error with a message."""
        response = http.post("/solaris/users", content=b'{"user_id": ', headers={"content-type": "application/json"})
        assert response.status_code == 422 and "invalid request" in response.json()["error"]["message"]

    def test_sql_looking_text_is_stored_literally(self, http):
        """A name like a SQL injection is just a name."""
        name = "Robert'); DROP TABLE solaris.ledger;--"
        user = new_user(http, name=name)
        assert http.get(f"/solaris/users/{user['user_id']}").json()["name"] == name
