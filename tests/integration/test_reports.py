"""Usage statistics and reports: /solaris/stats, /solaris/reports/usage.csv and `solaris report`."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import fastapi
import psycopg
import pytest
from fastapi.testclient import TestClient

from solaris_hooks.admin import reports
from solaris_hooks.cli.report import add_report_command
from solaris_hooks.db import ledger
from solaris_hooks.exceptions import InvalidInput
from solaris_hooks.quota.service import QuotaService
from solaris_hooks.settings import Settings
from solaris_hooks.web.api.reports import router
from solaris_hooks.web.context import install
from solaris_hooks.web.mount import service_context
from tests.support import ledger_calls
from tests.support.event_loop import run_with_connection

admin_key = "sk-reports-" + uuid.uuid4().hex
thresholds = [0.8, 0.95]
march_range = ("2025-03-01", "2025-03-31")
march = dict(zip(("from", "to"), march_range, strict=False))

ana, bruno, dora, eva = "ana@example.com", "bruno@example.com", "dora@example.com", "eva@example.com"
# Dora ends 500 over her allowance, so the reports show a negative balance; doctor flags it,
# and the ledger check after each test expects it of her alone.
overspent_on_purpose = {dora}
formula_user = "=1+2"
ana_name = 'Ana "A", da Silva\nJr'


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def call(
    connection,
    user_id: str,
    model: str,
    raw_tokens: int,
    factor: float,
    cost_usd: float | None,
    when: str,
    *,
    settle: bool = True,
    default_tokens: int = 10_000,
) -> None:
    """One call reserved and settled (or released) by the real ledger functions, then moved to `when`."""
    call_id = uuid.uuid4().hex
    reservation = await ledger_calls.reserve(
        connection,
        user_id,
        call_id,
        100,
        default_tokens=default_tokens,
        model=model,
        factor=factor,
        thresholds=thresholds,
    )
    assert reservation.outcome == "reserved", reservation
    await ledger.resolve(
        connection,
        call_id=call_id,
        kind="settle" if settle else "release",
        raw_tokens=raw_tokens,
        model=model,
        cost_usd=cost_usd,
        thresholds=thresholds,
    )
    # The ledger stamps rows with now(); the scenario needs them on chosen days.
    await connection.execute("UPDATE solaris.ledger SET created_at = %s WHERE call_id = %s", (at(when), call_id))


async def write_march(url: str) -> None:
    """The scenario every expectation below is computed from (charged = ceil(raw × factor))."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        await call(connection, ana, "gpt-4o-mini", 1000, 0.5, 0.010, "2025-03-03T10:00:00")  # 500 (Monday)
        await call(connection, ana, "gpt-4o-mini", 501, 0.5, 0.005, "2025-03-03T11:00:00")  # 251
        await call(connection, ana, "gpt-4o", 200, 1.0, 0.020, "2025-03-10T09:00:00")  # 200
        await call(connection, bruno, "gpt-4o", 100, 1.0, 0.010, "2025-03-04T12:00:00")  # 100
        await call(connection, bruno, "gpt-4o", 900, 1.0, None, "2025-03-04T12:05:00", settle=False)  # released: 0
        await call(connection, formula_user, "gpt-4o-mini", 40, 1.0, None, "2025-03-20T00:00:00")  # 40
        # Dora goes 500 over her 1000 (the provider answered more than reserved): blocked at 100 %.
        await call(connection, dora, "gpt-4o", 1500, 1.0, 0.150, "2025-03-31T23:59:59", default_tokens=1000)
        await call(connection, eva, "gpt-4o", 10, 1.0, 0.001, "2025-02-28T23:59:59")  # before the range
        await call(connection, eva, "gpt-4o", 20, 1.0, 0.002, "2025-04-01T00:00:00")  # after it
        # An admin refunds Bruno 30 tokens of what he used.
        await connection.execute("SELECT * FROM solaris.adjust(%s, -30, 'debited', 'test', 'refund', '{}')", (bruno,))
        # A bigger allowance for the formula user is not usage: no row, no model.
        await connection.execute(
            "SELECT * FROM solaris.adjust(%s, 500, 'credited', 'test', 'bonus', '{}')", (formula_user,)
        )
        await connection.execute(
            "UPDATE solaris.ledger SET created_at = %s WHERE kind = 'adjust'", (at("2025-03-05T08:00:00"),)
        )
        await connection.execute(
            "UPDATE solaris.alerts SET created_at = %s WHERE user_id = %s", (at("2025-03-31T23:59:59"), dora)
        )
        await connection.execute("UPDATE solaris.accounts SET name = %s WHERE user_id = %s", (ana_name, ana))
        await connection.execute(
            "UPDATE solaris.accounts SET name = '@evil', email = '-x@example.com' WHERE user_id = %s", (formula_user,)
        )
        await connection.execute("UPDATE solaris.accounts SET status = 'blocked' WHERE user_id = %s", (eva,))


@pytest.fixture
def scenario(own_database) -> str:
    asyncio.run(write_march(own_database))
    return own_database


@pytest.fixture
def http(own_database, monkeypatch):
    """The report routes on an app of their own; the service's pool lives and dies in the app's loop."""
    monkeypatch.setenv("LITELLM_MASTER_KEY", admin_key)
    service = QuotaService(Settings(), own_database)

    @asynccontextmanager
    async def lifespan(app):
        yield
        await service.close()

    app = fastapi.FastAPI(lifespan=lifespan)
    app.include_router(router)
    install(app, service_context(service))
    with TestClient(app, headers={"Authorization": f"Bearer {admin_key}"}) as client:
        yield client


def stats_of(url: str, start: str, end: str, group_by: str = "day") -> reports.Stats:
    async def stats(connection: psycopg.AsyncConnection) -> reports.Stats:
        return await reports.stats(connection, *reports.parse_range(start, end), group_by)

    return run_with_connection(url, stats)


def csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


class TestStats:
    def test_totals_count_settled_and_adjusted_usage_in_the_range(self, scenario):
        """March's totals: settles and Bruno's refund, nothing released, nothing outside the range."""
        totals = stats_of(scenario, *march_range).totals
        assert totals.model_dump() == {
            "tokens_charged": 500 + 251 + 200 + 100 - 30 + 40 + 1500,
            "raw_tokens": 1000 + 501 + 200 + 100 + 40 + 1500,
            "cost_usd": pytest.approx(0.010 + 0.005 + 0.020 + 0.010 + 0.150),
            "requests": 6,
            "active_users": 4,
            "blocked_users": 1,  # Dora reached 100 %
            "admin_blocked_users": 1,  # Eva
        }

    def test_per_model_and_top_users_match_the_calls(self, scenario):
        """Models and users are ranked by tokens charged; a refund belongs to no model."""
        stats = stats_of(scenario, *march_range)
        assert [(m.model, m.tokens_charged, m.raw_tokens, m.requests) for m in stats.models] == [
            ("gpt-4o", 1800, 1800, 3),
            ("gpt-4o-mini", 791, 1541, 3),
            (None, -30, 0, 0),
        ]
        assert stats.models[0].cost_usd == pytest.approx(0.18)
        assert [(u.user_id, u.tokens_charged, u.requests) for u in stats.top_users] == [
            (dora, 1500, 1),
            (ana, 951, 3),
            (bruno, 70, 1),
            (formula_user, 40, 1),
        ]
        assert (stats.top_users[1].name, stats.top_users[1].email) == (ana_name, None)

    @pytest.mark.parametrize(
        ("group_by", "expected"),
        [
            (
                "day",
                [
                    ("2025-03-03", 751, 2, 1),
                    ("2025-03-04", 100, 1, 1),
                    ("2025-03-05", -30, 0, 0),
                    ("2025-03-10", 200, 1, 1),
                    ("2025-03-20", 40, 1, 1),
                    ("2025-03-31", 1500, 1, 1),
                ],
            ),
            (
                "week",
                [
                    ("2025-03-03", 821, 3, 2),
                    ("2025-03-10", 200, 1, 1),
                    ("2025-03-17", 40, 1, 1),
                    ("2025-03-31", 1500, 1, 1),
                ],
            ),
            ("month", [("2025-03-01", 2561, 6, 4)]),
        ],
    )
    def test_series_has_one_entry_per_period_with_usage(self, scenario, group_by, expected):
        """UTC days, ISO weeks from Monday, months: tokens charged, requests and active users of each."""
        series = stats_of(scenario, *march_range, group_by).series
        assert [(str(p.period_start), p.tokens_charged, p.requests, p.active_users) for p in series] == expected

    def test_a_range_of_more_than_64_periods_counts_each_period_and_user_once(self, scenario):
        """91 days by day: the active users of each period are kept 64 periods to a word, and
        Ana, active on both sides of day 64 (March 6th), is still one user with three calls."""
        stats = stats_of(scenario, "2025-01-01", "2025-04-01", "day")
        assert [(str(p.period_start), p.tokens_charged, p.requests, p.active_users) for p in stats.series] == [
            ("2025-02-28", 10, 1, 1),
            ("2025-03-03", 751, 2, 1),
            ("2025-03-04", 100, 1, 1),
            ("2025-03-05", -30, 0, 0),
            ("2025-03-10", 200, 1, 1),
            ("2025-03-20", 40, 1, 1),
            ("2025-03-31", 1500, 1, 1),
            ("2025-04-01", 20, 1, 1),
        ]
        assert stats.totals.active_users == 5
        top_two = [(user.user_id, user.tokens_charged, user.requests) for user in stats.top_users[:2]]
        assert top_two == [(dora, 1500, 1), (ana, 951, 3)]

    def test_a_datetime_to_is_exclusive(self, scenario):
        """to=2025-04-01T00:00:00 leaves out Eva's call at that instant; a second later includes it."""
        assert stats_of(scenario, "2025-03-01", "2025-04-01T00:00:00").totals.requests == 6
        assert stats_of(scenario, "2025-03-01", "2025-04-01T00:00:01").totals.requests == 7

    def test_a_range_without_usage_is_zeros(self, own_database):
        """No rows in the range: zero totals and empty lists, not an error."""
        stats = stats_of(own_database, "2020-01-01", "2020-01-31")
        assert stats.totals.tokens_charged == stats.totals.active_users == 0
        assert (stats.series, stats.top_users, stats.models) == ([], [], [])


class TestStatsRoute:
    def test_answers_the_stats_with_the_range_it_used(self, scenario, http):
        """GET /solaris/stats: totals, series, top users and models, and the UTC range as from/to."""
        response = http.get("/solaris/stats", params={**march, "group_by": "week"})
        assert response.status_code == 200
        body = response.json()
        assert (body["from"], body["to"], body["group_by"]) == ("2025-03-01T00:00:00Z", "2025-04-01T00:00:00Z", "week")
        assert body["totals"]["tokens_charged"] == 2561
        assert [period["period_start"] for period in body["series"]] == [
            "2025-03-03",
            "2025-03-10",
            "2025-03-17",
            "2025-03-31",
        ]
        assert body["top_users"][0] == {
            "user_id": dora,
            "email": None,
            "name": None,
            "tokens_charged": 1500,
            "requests": 1,
            "cost_usd": 0.15,
        }
        assert body["models"][0]["model"] == "gpt-4o"

    def test_the_default_range_is_the_last_30_days(self, own_database, http):
        """Without parameters: 30 days up to now, by day."""
        body = http.get("/solaris/stats").json()
        start, end = datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])
        assert (end - start, body["group_by"]) == (timedelta(days=30), "day")
        assert abs(datetime.now(UTC) - end) < timedelta(minutes=1)

    def test_needs_an_admin_key(self, own_database, http):
        """Mounted through new_router: no key is a 401."""
        response = http.get("/solaris/stats", headers={"Authorization": ""})
        assert response.status_code == 401

    def test_the_response_has_a_schema_in_openapi(self, own_database, http):
        """The stats response and the CSV's media type are documented."""
        spec = http.get("/openapi.json").json()
        assert set(spec["components"]["schemas"]["Totals"]["properties"]) >= {"blocked_users", "admin_blocked_users"}
        assert "text/csv" in spec["paths"]["/solaris/reports/usage.csv"]["get"]["responses"]["200"]["content"]


@pytest.mark.parametrize("path", ["/solaris/stats", "/solaris/reports/usage.csv"])
class TestBadInput:
    @pytest.mark.parametrize(
        ("params", "complaint"),
        [
            ({"from": "01/03/2025"}, "`from` is not a date"),
            ({"to": "2025-02-30"}, "`to` is not a date"),
            ({"from": "2025-03-02", "to": "2025-03-01"}, "must be before `to`"),
            ({"from": "2020-01-01", "to": "2025-01-01"}, "about 3 years"),
            ({"group_by": "year"}, "group_by: Input should be 'day', 'week' or 'month'"),
            ({"to": "9999-12-31"}, "out of range"),
            ({"from": "2" * 100}, "at most 64 characters"),
        ],
    )
    def test_is_a_422_with_a_readable_message(self, own_database, http, path, params, complaint):
        """Every bad date, range or group_by answers 422 and says what is wrong, never 500."""
        response = http.get(path, params=params)
        assert response.status_code == 422
        assert complaint in response.json()["error"]["message"]


class TestUsageCsv:
    def test_one_row_per_user_and_period_with_the_current_balance(self, scenario, http):
        """The CSV parses, has a row per user and day, and each user's credited and remaining tokens."""
        response = http.get("/solaris/reports/usage.csv", params=march)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.headers["content-disposition"] == (
            'attachment; filename="solaris-usage_2025-03-01_2025-03-31_day.csv"'
        )
        rows = csv_rows(response.text)
        assert list(rows[0]) == list(reports.usage_columns)
        assert [(row["period_start"], row["user_id"], row["tokens_charged"], row["requests"]) for row in rows] == [
            ("2025-03-03", ana, "751", "2"),
            ("2025-03-04", bruno, "100", "1"),
            ("2025-03-05", bruno, "-30", "0"),
            ("2025-03-10", ana, "200", "1"),
            ("2025-03-20", "'" + formula_user, "40", "1"),
            ("2025-03-31", dora, "1500", "1"),
        ]
        assert rows[0]["cost_usd"] == "0.015"  # 0.010 + 0.005, exact
        dora_row = rows[-1]  # 500 over her allowance: a negative number, not a formula to neutralise
        assert (dora_row["credited_tokens"], dora_row["remaining_tokens"], dora_row["status"]) == (
            "1000",
            "-500",
            "active",
        )

    def test_names_with_commas_quotes_and_newlines_round_trip(self, scenario, http):
        """Quoting keeps a name with a comma, a quote and a newline in one cell."""
        rows = csv_rows(http.get("/solaris/reports/usage.csv", params=march).text)
        assert rows[0]["name"] == ana_name

    def test_cells_a_user_chose_cannot_start_a_formula(self, scenario, http):
        """Text starting with = + - @ gets a leading quote; numbers, even negative, are left alone."""
        row = csv_rows(http.get("/solaris/reports/usage.csv", params=march).text)[4]
        assert (row["user_id"], row["name"], row["email"]) == ("'=1+2", "'@evil", "'-x@example.com")

    def test_group_by_month_sums_each_users_month(self, scenario, http):
        """By month, Ana's three calls are one row."""
        rows = csv_rows(http.get("/solaris/reports/usage.csv", params={**march, "group_by": "month"}).text)
        assert [(row["user_id"], row["tokens_charged"], row["raw_tokens"]) for row in rows] == [
            ("'=1+2", "40", "40"),
            (ana, "951", "1701"),
            (bruno, "70", "100"),
            (dora, "1500", "1500"),
        ]

    def test_a_capped_report_says_so(self, scenario, http, monkeypatch):
        """Past the row cap the file stops, and both a header and the file name say it was cut."""
        monkeypatch.setattr(reports, "usage_rows_max", 2)
        response = http.get("/solaris/reports/usage.csv", params=march)
        assert len(csv_rows(response.text)) == 2
        assert "only the first 2 rows" in response.headers["x-solaris-truncated"]
        assert "_truncated.csv" in response.headers["content-disposition"]

    def test_an_uncapped_report_has_no_truncation_header(self, scenario, http):
        """Exactly at or under the cap nothing is said."""
        response = http.get("/solaris/reports/usage.csv", params=march)
        assert "x-solaris-truncated" not in response.headers


class TestReportCommand:
    def run(self, monkeypatch, url: str, *argv: str) -> int:
        monkeypatch.setenv("SOLARIS_DATABASE_URL", url)
        parser = argparse.ArgumentParser(prog="solaris")
        add_report_command(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(["report", *argv])
        return args.handler(args)

    def test_prints_an_aligned_table(self, scenario, monkeypatch, capsys):
        """Columns line up under their names; a newline in a name does not break the table."""
        assert self.run(monkeypatch, scenario, "--from", "2025-03-01", "--to", "2025-03-31") == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == list(reports.usage_columns)
        assert len(lines) == 1 + 6 + 1  # header, a row per user and day, the summary
        assert lines[1].split()[:2] == ["2025-03-03", ana] and 'Ana "A", da Silva Jr' in lines[1]
        # Numbers are right-aligned: every row ends where the header ends.
        assert {len(line) for line in lines[:-1]} == {len(lines[0])}
        assert lines[-1].startswith("6 row(s), 2025-03-01 00:00 to 2025-04-01 00:00 UTC")

    def test_csv_is_the_same_as_the_download(self, scenario, http, monkeypatch, capsys):
        """--csv prints the rows /solaris/reports/usage.csv serves."""
        assert (
            self.run(monkeypatch, scenario, "--from", "2025-03-01", "--to", "2025-03-31", "--group-by", "week", "--csv")
            == 0
        )
        printed = csv_rows(capsys.readouterr().out)
        served = csv_rows(http.get("/solaris/reports/usage.csv", params={**march, "group_by": "week"}).text)
        assert printed == served and len(printed) == 5

    def test_bad_dates_are_refused_before_connecting(self, monkeypatch):
        """A reversed range raises the InvalidInput that `solaris` prints; no database is needed."""
        with pytest.raises(InvalidInput, match="must be before"):
            self.run(monkeypatch, "postgresql://nobody@127.0.0.1:1/none", "--from", "2025-03-02", "--to", "2025-03-01")
