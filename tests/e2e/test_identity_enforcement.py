"""One person, one allowance, through the real proxy: identities normalised, LiteLLM's order,
no anonymous shared account, admins finding and merging accounts; personal keys in-process."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import logging
import uuid

import httpx
import openai
import psycopg
import pytest
from fastapi import HTTPException
from litellm.proxy._types import UserAPIKeyAuth

from solaris_hooks.hooks import SolarisCallback
from solaris_hooks.quota.service import QuotaService
from tests.support.event_loop import run_with_callback
from tests.support.ledger_sql import legacy_account
from tests.support.proxy_calls import hidden, log_in
from tests.support.suite import charged, master_key, record_figure, viewer_key

thresholds = "{0.8,0.95}"


def ask(client: openai.OpenAI, headers: dict[str, str] | None = None, **body) -> object:
    """One small chat call, never retried: each call is one attempt we account for."""
    return client.with_options(max_retries=0).chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "oi"}],
        max_tokens=20,
        extra_headers=headers or {},
        **body,
    )


def accounts_named(http: httpx.Client, part: str) -> list[str]:
    found = http.get("/solaris/users", params={"search": part, "limit": 500}).json()
    return sorted(user["user_id"] for user in found["users"])


def raw_chat(port: int, headers: list[tuple[bytes, bytes]]) -> tuple[int, dict]:
    """A chat call with header bytes no client library would send (UTF-8 or latin-1 in a value)."""
    payload = json.dumps(
        {"model": "fake-model", "messages": [{"role": "user", "content": "oi"}], "max_tokens": 20}
    ).encode()
    sent = [(b"authorization", f"Bearer {master_key}".encode()), (b"content-type", b"application/json"), *headers]
    response = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", content=payload, headers=sent, timeout=60)
    return response.status_code, response.json()


def release(database_url: str, call_id: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("SELECT 1 FROM solaris.resolve(%s, 'release', NULL, NULL, NULL)", (call_id,))


def ledger_rows(database_url: str, user_id: str) -> int:
    with psycopg.connect(database_url) as connection:
        return connection.execute("SELECT count(*) FROM solaris.ledger WHERE user_id = %s", (user_id,)).fetchone()[0]


def alert_count(database_url: str, user_id: str) -> int:
    with psycopg.connect(database_url) as connection:
        return connection.execute("SELECT count(*) FROM solaris.alerts WHERE user_id = %s", (user_id,)).fetchone()[0]


def usage_alerts(database_url: str, user_id: str) -> list[tuple]:
    with psycopg.connect(database_url) as connection:
        return connection.execute(
            "SELECT threshold, period, alert_cycle FROM solaris.alerts WHERE user_id = %s AND kind = 'usage' "
            "ORDER BY alert_cycle, threshold",
            (user_id,),
        ).fetchall()


class TestOnePersonOneAllowance:
    def test_spellings_of_one_address_share_one_account(self, proxy, client, http):
        """Case, fullwidth, combining accents and spaces, by header, body or LiteLLM's header: one account."""
        suffix = uuid.uuid4().hex[:8]
        local = f"joa\u0303o-{suffix}"  # 'a' and a combining tilde: looks like 'ã'
        canonical = f"jo\u00e3o-{suffix}@example.com"
        fullwidth = "".join(
            chr(ord(character) + 0xFEE0) if "!" <= character <= "~" else character
            for character in f"{local.upper()}@EXAMPLE.COM"
        )
        # In the body (JSON), and as header bytes: curl and Python send UTF-8, Node latin-1.
        by_body = [f"  {local}@example.com ", fullwidth]
        by_header = [
            (b"x-litellm-end-user-id", f"{local.upper()}@Example.COM".encode()),
            (b"x-litellm-customer-id", f"{local.title()}@EXAMPLE.com".encode()),
            (b"x-litellm-end-user-id", canonical.encode("latin-1")),
        ]
        charges = [charged(ask(client, user=user).usage.total_tokens) for user in by_body]
        for name, value in by_header:
            status, answer = raw_chat(proxy.port, [(name, value)])
            assert status == 200, answer
            charges.append(charged(answer["usage"]["total_tokens"]))

        assert accounts_named(http, suffix) == [canonical]
        assert proxy_settled(http, canonical)["used_tokens"] == sum(charges)
        # Before, identities were only trimmed: each distinct spelling was an account of its own.
        spellings = {spelling.strip() for spelling in [*by_body, *(header_text_of(value) for _, value in by_header)]}
        record_figure(
            f"identity: {len(charges)} calls naming one person in {len(spellings)} spellings through "
            f"the proxy: {len(spellings)} accounts before (trimmed only), "
            f"{len(accounts_named(http, suffix))} after"
        )

    def test_litellms_customer_id_header_names_the_payer_before_ours(self, client, http):
        """x-litellm-customer-id and x-litellm-end-user-id both sent: the customer id pays, as in LiteLLM."""
        customer, other = f"cust-{uuid.uuid4().hex[:8]}@example.com", f"end-{uuid.uuid4().hex[:8]}@example.com"
        response = ask(client, {"x-litellm-customer-id": customer, "x-litellm-end-user-id": other}, user="body-user")
        settled = proxy_settled(http, customer)
        assert settled["used_tokens"] == charged(response.usage.total_tokens)
        assert http.get(f"/solaris/users/{other}").status_code == 404


def header_text_of(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def proxy_settled(http: httpx.Client, user_id: str) -> dict:
    from tests.support.harness import wait_for

    def settled() -> dict | None:
        account = http.get(f"/solaris/users/{user_id}").json()
        return account if account.get("reserved_tokens") == 0 else None

    return wait_for(settled, 15, what=f"{user_id} settled")


class TestAnonymousCalls:
    def test_a_call_naming_nobody_is_refused_readably_and_charges_no_shared_account(self, client, http):
        """The master key without header or `user`: a 400 that says what to send; `default_user_id` untouched."""
        before = http.get("/solaris/users/default_user_id")
        with pytest.raises(openai.BadRequestError) as refused:
            ask(client)
        message = refused.value.body["message"]
        assert "x-litellm-end-user-id" in message and "Traceback" not in message
        after = http.get("/solaris/users/default_user_id")
        assert after.status_code == before.status_code
        if after.status_code == 200:
            assert after.json()["used_tokens"] == before.json()["used_tokens"]

    @pytest.mark.parametrize("headers", [{"x-litellm-end-user-id": ""}, {"x-litellm-customer-id": ""}])
    def test_a_blank_identity_is_refused_not_passed_over(self, client, headers):
        """A blank header means a misconfigured client: 400 naming the header that came
        empty, not charged to the body's user."""
        with pytest.raises(openai.BadRequestError) as refused:
            ask(client, headers, user=f"body-{uuid.uuid4().hex[:8]}@example.com")
        (header,) = headers
        assert refused.value.body["code"] == "identity_header_empty"
        assert header in refused.value.body["message"]


class TestAdminsFindAccountsByAnySpelling:
    def test_lookups_credits_and_changes_reach_the_normalised_account(self, client, http):
        """GET, ledger, add-tokens, PATCH and bulk-grant with `Ana@Example.COM` act on `ana@example.com`."""
        local = f"ana-{uuid.uuid4().hex[:8]}"
        canonical, shouted = f"{local}@example.com", f"{local.upper()}@Example.COM"
        ask(client, {"x-litellm-end-user-id": canonical})
        assert http.get(f"/solaris/users/{shouted}").json()["user_id"] == canonical
        assert http.get(f"/solaris/users/{shouted}/ledger").json()["total"] >= 2
        credited = http.post(f"/solaris/users/{shouted}/add-tokens", json={"tokens": 10, "reason": "bônus"})
        assert credited.json()["user_id"] == canonical and credited.json()["credited_tokens"] == 1010
        assert http.patch(f"/solaris/users/{shouted}", json={"name": "Ana"}).json()["user_id"] == canonical
        granted = http.post("/solaris/users/bulk-grant", json={"tokens": 5, "reason": "r", "user_ids": [shouted]})
        assert granted.json() == {"credited_users": 1}
        assert http.get(f"/solaris/users/{canonical}").json()["credited_tokens"] == 1015
        assert accounts_named(http, local) == [canonical]

    def test_create_and_import_store_the_normalised_id(self, http):
        """A user created or imported as `Bia@Example.COM` is `bia@example.com`; another spelling is a 409."""
        local = f"bia-{uuid.uuid4().hex[:8]}"
        created = http.post("/solaris/users", json={"user_id": f"{local.title()}@Example.COM", "initial_tokens": 7})
        assert created.status_code == 201 and created.json()["user_id"] == f"{local}@example.com"
        again = http.post("/solaris/users", json={"user_id": f"{local}@EXAMPLE.com"})
        assert again.status_code == 409
        csv = f"user_id,name\n{local.upper()}@example.com,Bia\nNEW-{local}@Example.com,Nova\n"
        imported = http.post("/solaris/users/import", content=csv.encode(), headers={"content-type": "text/csv"})
        assert imported.json() == {"created": 1, "updated": 1}
        assert accounts_named(http, local) == [f"{local}@example.com", f"new-{local}@example.com"]
        assert http.get(f"/solaris/users/{local}@example.com").json()["name"] == "Bia"


class TestAdminPagesFindAccountsByAnySpelling:
    def test_the_user_page_and_its_forms_reach_the_normalised_account(self, proxy, http):
        """/solaris/admin/user?id=Ana@Example.COM shows ana@example.com; its credit form credits it."""
        local = f"ana-{uuid.uuid4().hex[:8]}"
        canonical, shouted = f"{local}@example.com", f"{local.upper()}@Example.COM"
        assert http.post("/solaris/users", json={"user_id": canonical, "initial_tokens": 100}).status_code == 201
        browser = log_in(proxy.base_url, master_key)
        try:
            page = browser.get("/solaris/admin/user", params={"id": shouted})
            assert page.status_code == 200 and canonical in page.text
            form = {
                "user_id": shouted,
                "tokens": "5",
                "reason": "r",
                "csrf": hidden(page.text, "csrf"),
                "idempotency_key": hidden(page.text, "idempotency_key"),
            }
            assert browser.post("/solaris/admin/users/add-tokens", data=form).status_code == 303
            assert browser.get("/solaris/admin/user", params={"id": f"nobody-{local}"}).status_code == 404
        finally:
            browser.close()
        assert http.get(f"/solaris/users/{canonical}").json()["credited_tokens"] == 105
        assert accounts_named(http, local) == [canonical]


class TestMergeApi:
    def test_merging_moves_history_adds_balances_and_keeps_the_ledger_replaying(self, client, http, database_url):
        """A pre-normalisation account merged into the normalised one: one account, every row kept."""
        local = f"ana-{uuid.uuid4().hex[:8]}"
        legacy, canonical = f"{local.title()}@Example.COM", f"{local}@example.com"
        pending_call = legacy_account(database_url, legacy, credit=500, settled_raw=3500, pending=40)
        # The normalised account, with its own history and its own 80 % alert in the same cycle.
        response = ask(client, {"x-litellm-end-user-id": canonical})
        proxy_settled(http, canonical)
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute(
                "SELECT 1 FROM solaris.adjust(%s, 850, 'debited', 'test', 'usage', %s)", (canonical, thresholds)
            )
        before_from = http.get(f"/solaris/users/{legacy}").json()
        before_into = http.get(f"/solaris/users/{canonical}").json()
        assert before_from["user_id"] == legacy  # an account stored as typed is found as typed
        rows_from, rows_into = ledger_rows(database_url, legacy), ledger_rows(database_url, canonical)
        alerts_from, alerts_into = usage_alerts(database_url, legacy), usage_alerts(database_url, canonical)
        alerts_from_count = alert_count(database_url, legacy)  # usage alerts and the credit's receipt
        assert {(threshold, cycle) for threshold, _, cycle in alerts_from} & {
            (threshold, cycle) for threshold, _, cycle in alerts_into
        }, "the test needs colliding alerts"

        merged = http.post(f"/solaris/users/{legacy}/merge", json={"into": canonical.upper()})

        assert merged.status_code == 200, merged.text
        body = merged.json()
        assert body["merged_from"] == legacy and body["account"]["user_id"] == canonical
        for field in ("credited_tokens", "used_tokens", "reserved_tokens"):
            assert body["account"][field] == before_from[field] + before_into[field], field
        assert body["moved"]["ledger_rows"] == rows_from and body["moved"]["pending_reservations"] == 1
        assert body["moved"]["alerts"] == alerts_from_count
        assert ledger_rows(database_url, canonical) == rows_from + rows_into
        assert ledger_rows(database_url, legacy) == 0
        assert len(usage_alerts(database_url, canonical)) == len(alerts_from) + len(alerts_into)
        # The old id finds the account it went into; the call in flight settles there.
        assert http.get(f"/solaris/users/{legacy}").json()["user_id"] == canonical
        with psycopg.connect(database_url, autocommit=True) as connection:
            state = connection.execute(
                "SELECT state, charged_tokens FROM solaris.resolve(%s, 'settle', 50, NULL, NULL, %s)",
                (pending_call, thresholds),
            ).fetchone()
        assert state == ("settled", charged(50))
        after = http.get(f"/solaris/users/{canonical}").json()
        assert after["used_tokens"] == body["account"]["used_tokens"] + charged(50)
        assert after["reserved_tokens"] == before_into["reserved_tokens"]
        audit = http.get("/solaris/audit", params={"user_id": canonical, "action": "user.merge"}).json()["rows"]
        assert len(audit) == 1 and audit[0]["details"]["from"] == legacy and audit[0]["actor"]
        assert response.usage.total_tokens > 0
        record_figure(
            f"identity: merge of a pre-normalisation account: {rows_from} ledger rows, "
            f"{len(alerts_from)} usage alerts and 1 pending reservation moved; 2 accounts before, 1 after"
        )

    def test_settles_racing_a_merge_are_all_charged_once_without_deadlock(self, client, http, database_url):
        """20 of FROM's calls settle while it is merged: every one charged once, to INTO in the end."""
        local = f"eva-{uuid.uuid4().hex[:8]}"
        legacy, canonical = f"{local.upper()}@example.com", f"{local}@example.com"
        pending_call = legacy_account(database_url, legacy, credit=1, settled_raw=10, pending=1)
        calls = [f"race-{uuid.uuid4().hex}" for _ in range(20)]
        with psycopg.connect(database_url, autocommit=True) as connection:
            for call_id in calls:
                connection.execute(
                    "SELECT 1 FROM solaris.reserve(%s, %s, 20, 1, 1000, 900, 'fake-model', 0.376)", (legacy, call_id)
                )
        ask(client, {"x-litellm-end-user-id": canonical})
        proxy_settled(http, canonical)
        before = [http.get(f"/solaris/users/{user}").json() for user in (legacy, canonical)]

        def settle(call_id: str) -> tuple:
            with psycopg.connect(database_url, autocommit=True) as connection:
                return connection.execute(
                    "SELECT state, charged_tokens FROM solaris.resolve(%s, 'settle', 30, NULL, NULL)", (call_id,)
                ).fetchone()

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            settles = [pool.submit(settle, call_id) for call_id in calls]
            merged = pool.submit(http.post, f"/solaris/users/{legacy}/merge", json={"into": canonical}).result()
            states = [future.result() for future in settles]

        assert merged.status_code == 200, merged.text
        assert states == [("settled", charged(30))] * len(calls)
        after = http.get(f"/solaris/users/{canonical}").json()
        assert after["used_tokens"] == sum(account["used_tokens"] for account in before) + len(calls) * charged(30)
        assert after["reserved_tokens"] == sum(account["reserved_tokens"] for account in before) - 20 * len(calls)
        with psycopg.connect(database_url) as connection:
            left = connection.execute(
                "SELECT count(*) FROM solaris.reservations WHERE user_id = %s", (legacy,)
            ).fetchone()[0]
        assert left == 0
        release(database_url, pending_call)
        record_figure(f"identity: {len(calls)} settles racing a merge: {len(calls)} charged once, 0 deadlocks")

    def test_an_old_id_that_is_no_identity_any_more_can_still_be_found_and_merged(self, http, database_url):
        """'｛｛x｝｝@…' was valid before NFKC (which makes it a placeholder): found as typed, merged away."""
        suffix = uuid.uuid4().hex[:8]
        legacy, canonical = f"\uff5b\uff5bx-{suffix}\uff5d\uff5d@example.com", f"x-{suffix}@example.com"
        pending_call = legacy_account(database_url, legacy, credit=1, settled_raw=10, pending=1)
        assert http.post("/solaris/users", json={"user_id": canonical, "initial_tokens": 0}).status_code == 201
        assert http.get(f"/solaris/users/{legacy}").json()["user_id"] == legacy
        merged = http.post(f"/solaris/users/{legacy}/merge", json={"into": canonical})
        assert merged.status_code == 200, merged.text
        assert merged.json()["account"]["credited_tokens"] == 1001
        release(database_url, pending_call)

    def test_merge_refusals_are_readable(self, proxy, client, http, database_url):
        """Unknown FROM or INTO, the same account twice, FROM still reached by calls, INTO not: readable 4xx."""
        local = f"rui-{uuid.uuid4().hex[:8]}"
        legacy, canonical = f"{local.upper()}@example.com", f"{local}@example.com"
        pending_calls = [legacy_account(database_url, legacy, credit=1, settled_raw=10, pending=1)]
        ask(client, {"x-litellm-end-user-id": canonical})
        proxy_settled(http, canonical)
        cases = [
            (f"nobody-{local}", canonical, 404, "user_not_found"),
            (legacy, f"nobody-{local}@example.com", 404, "user_not_found"),
            (canonical, canonical, 422, "merge_same_account"),
            (f"{local.title()}@EXAMPLE.com", canonical, 422, "merge_same_account"),
            (canonical, legacy, 409, "merge_from_reachable"),
        ]
        for source, target, status, code in cases:
            refused = http.post(f"/solaris/users/{source}/merge", json={"into": target})
            assert (refused.status_code, refused.json()["error"]["code"]) == (status, code), (source, target)
            assert source in refused.json()["error"]["message"] or target in refused.json()["error"]["message"]
        other_legacy = f"{local.title()}@example.com"
        pending_calls.append(legacy_account(database_url, other_legacy, credit=1, settled_raw=10, pending=1))
        refused = http.post(f"/solaris/users/{other_legacy}/merge", json={"into": legacy})
        assert (refused.status_code, refused.json()["error"]["code"]) == (409, "merge_into_unreachable")
        assert canonical in refused.json()["error"]["message"]
        assert http.post(f"/solaris/users/{legacy}/merge", json={}).status_code == 422
        viewer = httpx.post(
            f"{proxy.base_url}/solaris/users/{legacy}/merge",
            json={"into": canonical},
            headers={"Authorization": f"Bearer {viewer_key}"},
            timeout=30,
        )
        assert viewer.status_code == 403
        # Nothing moved by any refusal.
        assert http.get(f"/solaris/users/{legacy}").json()["user_id"] == legacy
        assert http.get(f"/solaris/users/{other_legacy}").json()["user_id"] == other_legacy
        for call_id in pending_calls:
            release(database_url, call_id)


def run_hook(database_url: str, key: UserAPIKeyAuth, request: dict, **settings) -> str | HTTPException:
    """One pre-call hook in-process (personal keys need LiteLLM's Prisma, unavailable here):
    the user the call was reserved for, or the refusal."""

    async def scenario(callback: SolarisCallback, service: QuotaService) -> str | HTTPException:
        try:
            await callback.async_pre_call_hook(key, None, request, "acompletion")
        except HTTPException as refusal:
            return refusal
        async with service.connection() as connection:
            cursor = await connection.execute(
                "SELECT user_id FROM solaris.reservations WHERE call_id = %s", (request["litellm_call_id"],)
            )
            user_id = (await cursor.fetchone())[0]
            await connection.execute(
                "SELECT 1 FROM solaris.resolve(%s, 'release', NULL, NULL, NULL)", (request["litellm_call_id"],)
            )
            return user_id

    return run_with_callback(database_url, scenario, **settings)


def chat_request(headers: dict[str, str] | None = None, **body) -> dict:
    return {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "oi"}],
        "max_tokens": 20,
        "litellm_call_id": uuid.uuid4().hex,
        "proxy_server_request": {"headers": headers or {}},
        **body,
    }


class TestPersonalKeys:
    def test_a_personal_key_naming_someone_else_is_refused_with_a_readable_403(self, database_url, http, caplog):
        """Header (plain or LibreChat's `b64:`), LiteLLM's header or body `user` naming another
        person: 403, nobody charged, the key logged."""
        caplog.set_level(logging.WARNING, logger="solaris_hooks")
        victim = f"victim-{uuid.uuid4().hex[:8]}@example.com"
        bob = UserAPIKeyAuth(api_key="sk-personal-" + uuid.uuid4().hex, user_id=f"bob-{uuid.uuid4().hex[:8]}")
        for request in (
            chat_request({"x-litellm-end-user-id": victim}),
            chat_request(user=victim),
            chat_request({"x-litellm-customer-id": victim.upper()}),
            chat_request({"x-litellm-end-user-id": "b64:" + base64.b64encode(victim.encode()).decode()}),
        ):
            refused = run_hook(database_url, bob, request)
            assert isinstance(refused, HTTPException) and refused.status_code == 403
            error = refused.detail["error"]
            assert error["code"] == "identity_forbidden" and "trusted_keys" in error["message"]
        assert http.get(f"/solaris/users/{victim}").status_code == 404
        assert http.get(f"/solaris/users/{bob.user_id}").status_code == 404
        warnings = [
            json.loads(record.getMessage())
            for record in caplog.records
            if '"identity_forbidden"' in record.getMessage()
        ]
        assert len(warnings) == 4 and {line["key_user_id"] for line in warnings} == {bob.user_id}
        assert victim not in caplog.text and victim.upper() not in caplog.text

    def test_a_personal_key_pays_for_itself_named_or_not(self, database_url):
        """Without a name, or naming its own user in another spelling: charged to the key's user."""
        bob = UserAPIKeyAuth(api_key="sk-personal-" + uuid.uuid4().hex, user_id=f"bob-{uuid.uuid4().hex[:8]}")
        assert run_hook(database_url, bob, chat_request()) == bob.user_id
        assert run_hook(database_url, bob, chat_request({"x-litellm-end-user-id": bob.user_id.upper()})) == bob.user_id

    def test_a_key_listed_in_trusted_keys_names_the_user(self, database_url):
        """LibreChat's key, listed by alias, names the user; the same key unlisted may not."""
        victim = f"ana-{uuid.uuid4().hex[:8]}@example.com"
        librechat = UserAPIKeyAuth(api_key="sk-librechat-" + uuid.uuid4().hex, key_alias="librechat")
        request = chat_request({"x-litellm-end-user-id": victim.upper()})
        assert run_hook(database_url, librechat, request, trusted_keys=["librechat"]) == victim
        assert run_hook(database_url, librechat, chat_request({"x-litellm-end-user-id": victim})).status_code == 403

    def test_charge_key_bills_a_trusted_key_that_names_nobody_to_itself(self, database_url):
        """anonymous_calls: charge_key: the master key's own user pays; by default the call is a 400."""
        admin = UserAPIKeyAuth(api_key="litellm_proxy_master_key", user_id=f"admin-{uuid.uuid4().hex[:8]}")
        assert run_hook(database_url, admin, chat_request(), anonymous_calls="charge_key") == admin.user_id
        refused = run_hook(database_url, admin, chat_request())
        assert refused.status_code == 400 and refused.detail["error"]["code"] == "identity_missing"
