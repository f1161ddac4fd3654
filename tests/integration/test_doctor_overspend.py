"""`solaris doctor` sees accounts that used more than they were credited (docs/architecture.md
invariant 6), and names the calls that took each one over. `/solaris/health`:
tests/e2e/test_doctor_overspend.py."""

from __future__ import annotations

import psycopg
import pytest

from solaris_hooks.admin import doctor
from solaris_hooks.db.queries import sql
from tests.support.harness import scratch_database
from tests.support.ledger_sql import execute, unmetered
from tests.support.suite import charged

factor = 0.376


@pytest.fixture
def ledger_database(database_url: str) -> str:
    """A scratch database whose overspend is the point: checked by each test itself."""
    with scratch_database(database_url) as url:
        yield url


def served(user_id: str, call_id: str, raw_tokens: int, wanted_tokens: int = 100) -> list[tuple[str, tuple]]:
    """A call reserved and settled the normal way."""
    return [
        (
            "SELECT solaris.reserve(%s::text, %s::text, %s::bigint, 1, 1000, 60, 'fake-model', %s::numeric)",
            (user_id, call_id, wanted_tokens, factor),
        ),
        ("SELECT solaris.resolve(%s::text, 'settle', %s::bigint, 'fake-model', NULL)", (call_id, raw_tokens)),
    ]


def credit(user_id: str, tokens: int) -> tuple[str, tuple]:
    return ("SELECT solaris.credit(%s::text, %s::bigint, 1000, 'test', 'top-up')", (user_id, tokens))


def findings(url: str) -> dict[str, list[tuple]]:
    return {finding.invariant: finding.rows for finding in doctor.diagnose(url)}


class TestOverspendCheck:
    def test_a_ledger_within_every_allowance_has_no_overspend(self, ledger_database):
        """Calls reserved and settled within the allowance: every check holds, overspend included."""
        execute(ledger_database, *served("ana", "c1", 80), *served("ana", "c2", 200))
        assert findings(ledger_database) == {}

    def test_an_unmetered_charge_past_the_allowance_is_found_with_its_call_and_cause(self, ledger_database):
        """An unreserved spooled charge takes ana from 31 to 1,159 of 1,000: the check fails and names
        ana, the call, its raw and charged tokens, its model and the reason the ledger recorded."""
        execute(ledger_database, *served("ana", "c1", 80), unmetered("ana", "spooled-1", 3000))
        found = findings(ledger_database)
        assert list(found) == [doctor.overspend_invariant]  # every other invariant still holds
        total, (account,) = doctor.overspent_accounts(found[doctor.overspend_invariant])
        assert total == 1
        assert (account.user_id, account.credited_tokens, account.used_tokens) == (
            "ana",
            1000,
            charged(80, factor) + charged(3000, factor),
        )
        assert account.calls_over == 1
        (call,) = account.calls
        assert (call["call_id"], call["kind"], call["model"], call["raw_tokens"], call["charged_tokens"]) == (
            "spooled-1",
            "settle",
            "fake-model",
            3000,
            charged(3000, factor),
        )
        assert "unmetered" in call["reason"]

    def test_only_the_calls_of_the_current_overspend_are_named(self, ledger_database):
        """Over, topped up back within, then over again: the calls named are those since the top-up,
        not the earlier ones a credit already covered, nor the settles that stayed within."""
        execute(
            ledger_database,
            unmetered("bia", "old-1", 3000),
            credit("bia", 500),
            *served("bia", "within-1", 100),
            unmetered("bia", "new-1", 1000),
            unmetered("bia", "new-2", 50),
        )
        total, (account,) = doctor.overspent_accounts(findings(ledger_database)[doctor.overspend_invariant])
        assert [call["call_id"] for call in account.calls] == ["new-1", "new-2"]
        assert account.calls_over == 2
        assert account.over_tokens == account.used_tokens - 1500 > 0

    def test_a_credit_taken_back_is_named_as_the_cause(self, ledger_database):
        """An admin adjustment lowering credited below used is what took the account over."""
        execute(
            ledger_database,
            *served("caio", "c1", 2000, wanted_tokens=900),
            ("SELECT solaris.adjust('caio', -500, 'credited', 'test', 'correction')", ()),
        )
        _, (account,) = doctor.overspent_accounts(findings(ledger_database)[doctor.overspend_invariant])
        assert [(call["kind"], call["credited_delta"], call["reason"]) for call in account.calls] == [
            ("adjust", -500, "correction")
        ]
        assert "adjust of credited by -500" in doctor.describe_overspend(
            findings(ledger_database)[doctor.overspend_invariant]
        )

    def test_the_report_counts_every_account_and_bounds_what_it_lists(self, ledger_database):
        """25 accounts over: the count says 25, the report lists 20, the most over first, each with
        at most 5 calls and how many more there are."""
        statements = []
        for number in range(25):
            statements.append(unmetered(f"over-{number:02d}", f"big-{number}", 3000 + number))
        statements += [unmetered("over-24", f"extra-{index}", 10) for index in range(6)]
        execute(ledger_database, *statements)
        rows = findings(ledger_database)[doctor.overspend_invariant]
        total, accounts = doctor.overspent_accounts(rows)
        assert (total, len(accounts)) == (25, doctor.overspend_accounts_max)
        assert accounts[0].user_id == "over-24"
        assert (len(accounts[0].calls), accounts[0].calls_over) == (doctor.overspend_calls_max, 7)
        assert [account.over_tokens for account in accounts] == sorted(
            (account.over_tokens for account in accounts), reverse=True
        )
        line = doctor.describe_overspend(rows)
        assert line.startswith("25 account(s) over (20 shown): over-24 used ")
        assert "; and 2 more" in line

    def test_the_query_reads_only_the_ledger_of_accounts_over_through_the_user_index(self, ledger_database):
        """On a ledger of 2,000 users, the plan reaches ledger rows only by walking the (user_id, id)
        index back from the newest row, never by scanning the ledger or a user's whole history."""
        with psycopg.connect(ledger_database, autocommit=True) as connection:
            connection.execute(
                """INSERT INTO solaris.accounts (user_id, credited_tokens)
                   SELECT 'bulk-' || number, 1000 FROM generate_series(1, 2000) number"""
            )
            connection.execute(
                """INSERT INTO solaris.ledger (user_id, kind, tokens, credited_delta)
                   SELECT 'bulk-' || (number % 2000 + 1), 'grant', 0, 0 FROM generate_series(1, 40000) number"""
            )
            connection.execute("ANALYZE solaris.accounts")
            connection.execute("ANALYZE solaris.ledger")
            plan = "\n".join(
                row[0]
                for row in connection.execute(
                    "EXPLAIN " + sql("admin/overspent_accounts"),
                    doctor.overspend_bounds(doctor.overspend_accounts_max, doctor.overspend_calls_max),
                )
            )
        assert "Index Scan Backward using ledger_user_id on ledger" in plan, plan
        assert "Seq Scan on ledger" not in plan and "Bitmap Heap Scan on ledger" not in plan, plan

    def test_an_account_over_from_its_first_row_lists_its_whole_history(self, ledger_database):
        """A user provisioned with no allowance and charged at once: the walk reaches the first row."""
        execute(
            ledger_database,
            ("SELECT solaris.provision('zero', 0)", ()),
            ("SELECT solaris.settle_spooled('z1', 'zero', 100::bigint, 'fake-model', 0.376, NULL, 0, 't')", ()),
            ("SELECT solaris.settle_spooled('z2', 'zero', 200::bigint, 'fake-model', 0.376, NULL, 0, 't')", ()),
        )
        _, (account,) = doctor.overspent_accounts(findings(ledger_database)[doctor.overspend_invariant])
        assert [call["call_id"] for call in account.calls] == ["z1", "z2"]
        assert (account.credited_tokens, account.used_tokens) == (0, charged(100, factor) + charged(200, factor))


class TestDoctorCommand:
    def test_doctor_fails_and_names_the_user_and_the_call(self, ledger_database, capsys, monkeypatch):
        """`solaris doctor` exits 1 with a FAIL line naming the account, its figures and the call."""
        execute(ledger_database, unmetered("dora", "spooled-dora", 4000))
        monkeypatch.setenv("SOLARIS_DATABASE_URL", ledger_database)
        monkeypatch.delenv("SMTP_HOST", raising=False)
        from solaris_hooks.cli import main as cli

        code = cli.main(["doctor"])
        out = capsys.readouterr().out
        line = next(line for line in out.splitlines() if doctor.overspend_invariant in line)
        assert code == 1
        assert line.startswith("FAIL")
        over = charged(4000, factor) - 1000
        assert (
            f"dora used {charged(4000, factor)} of 1000 credited ({over} over), by call spooled-dora "
            f"(settle, fake-model, 4000 raw -> {charged(4000, factor)} charged) [unmetered call"
        ) in line
