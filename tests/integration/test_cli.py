"""The `solaris` command on a real database: `doctor` and the user commands.

`solaris run`: tests/e2e/test_cli.py."""

from __future__ import annotations

import os

import psycopg
import pytest

from tests.support.cli import cli_env, solaris, with_password
from tests.support.suite import repo_dir


class TestDoctor:
    def test_doctor_passes_on_a_consistent_ledger(self, own_database):
        """A ledger written only through our functions passes every check."""
        with psycopg.connect(own_database, autocommit=True) as connection:
            connection.execute("SELECT solaris.reserve('ana', 'c1', 100, 1, 1000, 60, 'm', 0.376)")
            connection.execute("SELECT solaris.resolve('c1', 'settle', 80, 'm', NULL)")
        result = solaris("doctor", env={**dict(os.environ), "SOLARIS_DATABASE_URL": own_database})
        assert result.returncode == 0, result.stdout
        assert "checks passed" in result.stdout and "FAIL" not in result.stdout

    def test_doctor_names_an_account_that_does_not_replay(self, own_database):
        """A balance edited behind the ledger's back is reported with its user, exit code 1."""
        with psycopg.connect(own_database, autocommit=True) as connection:
            connection.execute("SELECT solaris.provision('bia', 1000)")
            connection.execute("UPDATE solaris.accounts SET credited_tokens = 5000 WHERE user_id = 'bia'")
        result = solaris("doctor", env={**dict(os.environ), "SOLARIS_DATABASE_URL": own_database})
        with psycopg.connect(own_database, autocommit=True) as connection:
            connection.execute("UPDATE solaris.accounts SET credited_tokens = 1000 WHERE user_id = 'bia'")
        assert result.returncode == 1
        assert "replaying the ledger" in result.stdout and "bia" in result.stdout


class TestUserCommands:
    def test_create_show_set_status_and_list_with_the_proxy_stopped(self, own_database):
        """The CLI administers users straight in the database: create, credit, block, list, show."""
        env = cli_env(own_database)
        created = solaris("users", "create", "rui@example.com", "--name", "Rui", "--tokens", "300", env=env)
        assert created.returncode == 0 and "created rui@example.com with 300 tokens" in created.stdout
        credited = solaris("credits", "add", "rui@example.com", "50", "--reason", "bônus", env=env)
        assert "350 credited" in credited.stdout
        blocked = solaris("users", "set-status", "rui@example.com", "blocked", env=env)
        assert "is now blocked" in blocked.stdout
        listing = solaris("users", "list", "--status", "blocked", env=env)
        assert "rui@example.com" in listing.stdout and "350" in listing.stdout
        as_csv = solaris("users", "list", "--csv", env=env)
        assert as_csv.stdout.splitlines()[0].startswith("user_id,email,name,status")
        shown = solaris("users", "show", "rui@example.com", env=env)
        assert "Rui" in shown.stdout and "bônus" in shown.stdout and "initial tokens" in shown.stdout
        with psycopg.connect(own_database) as connection:
            actors = {row[0] for row in connection.execute("SELECT actor FROM solaris.audit")}
        assert all(actor.startswith("cli") for actor in actors) and len(actors) == 1

    def test_credits_with_an_idempotency_key_apply_once(self, own_database):
        """`credits add --idempotency-key K` twice adds once and says so."""
        env = cli_env(own_database)
        for _ in range(2):
            result = solaris("credits", "add", "lia", "70", "--reason", "r", "--idempotency-key", "k-1", env=env)
        assert "already done" in result.stdout and "1070 credited" in result.stdout

    @pytest.mark.parametrize(
        ("args", "complaint"),
        [
            (("users", "show", "nobody"), "no user 'nobody'"),
            (("users", "create", "{{LIBRECHAT_USER_EMAIL}}"), "user_id must be"),
            (("users", "create", "x", "--email", "nope"), "not an e-mail address"),
            (("credits", "add", "x", "-5", "--reason", "r"), "tokens must be between"),
            (("credits", "add", "x", "abc", "--reason", "r"), "not a whole number"),
            (("users", "set-status", "x", "gone"), "invalid choice"),
        ],
    )
    def test_bad_input_is_a_clear_error(self, own_database, args, complaint):
        """Unknown users and bad values end with a one-line message and a non-zero exit."""
        result = solaris(*args, env=cli_env(own_database))
        assert result.returncode != 0
        assert complaint in result.stderr
        assert "Traceback" not in result.stderr


class TestDoctorChecks:
    def test_every_check_has_its_line(self, own_database, tmp_path):
        """Config, database, migrations, invariants, outbox and SMTP each print one line."""
        result = solaris("doctor", env=cli_env(own_database, SOLARIS_CONFIG=str(repo_dir / "litellm-config.yaml")))
        assert result.returncode == 0, result.stdout
        for name in ("config:", "database:", "migrations:", "replaying the ledger", "outbox:", "smtp:"):
            assert name in result.stdout

    def test_an_unreachable_smtp_server_fails_the_check(self, own_database):
        """SMTP_HOST pointing nowhere: the smtp line says FAIL and the exit code is 1."""
        from tests.support.harness import free_port

        result = solaris("doctor", env=cli_env(own_database, SMTP_HOST="127.0.0.1", SMTP_PORT=str(free_port())))
        assert result.returncode == 1
        assert "FAIL  smtp" in result.stdout

    def test_dead_letters_fail_the_outbox_check(self, own_database):
        """A dead alert is reported, with where to look."""
        with psycopg.connect(own_database, autocommit=True) as connection:
            connection.execute("SELECT solaris.credit('z', 5, 1000, 't', 'r')")
            connection.execute("UPDATE solaris.alerts SET status = 'dead'")
        result = solaris("doctor", env=cli_env(own_database))
        assert result.returncode == 1 and "FAIL  outbox" in result.stdout and "1 dead" in result.stdout

    def test_an_unreachable_database_is_reported_not_raised(self):
        """No database: a FAIL line for it, no traceback."""
        result = solaris("doctor", env=cli_env("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"))
        assert result.returncode == 1 and "FAIL  database" in result.stdout
        assert "Traceback" not in result.stderr

    def test_a_missing_schema_says_to_migrate(self, empty_database):
        """A database never migrated: the migrations line says to run `solaris migrate`."""
        result = solaris("doctor", env=cli_env(empty_database))
        assert "solaris migrate" in result.stdout and result.returncode == 1


class TestWhichDatabase:
    @pytest.mark.parametrize(("variable", "as_url"), [("SOLARIS_DATABASE_URL", True), ("DATABASE_URL", False)])
    def test_the_configured_database_is_named_on_stderr_with_its_password_hidden(self, own_database, variable, as_url):
        """The command says which variable and database it used; the password shows as ***."""
        url, password = with_password(own_database, "s3cret-pw-4f1c", as_url)
        env = {name: value for name, value in cli_env(url).items() if name != "SOLARIS_DATABASE_URL"}
        result = solaris("users", "list", env={**env, variable: url})
        assert result.returncode == 0, result.stderr
        assert f"solaris: using the database in {variable}: " in result.stderr
        assert "***" in result.stderr
        assert password not in result.stderr + result.stdout

    @pytest.mark.parametrize("command", [("users", "list"), ("report",), ("credits", "add", "x", "5", "--reason", "r")])
    def test_a_database_never_migrated_gets_one_line_saying_to_migrate(self, empty_database, command):
        """A URL whose database has no `solaris` schema: one line naming it and `solaris migrate`,
        exit code 2, no traceback, and nothing written."""
        result = solaris(*command, env=cli_env(empty_database))
        assert result.returncode == 2
        assert result.stdout == ""
        (complaint,) = [line for line in result.stderr.splitlines() if "using the database" not in line]
        assert "the database in SOLARIS_DATABASE_URL" in complaint and "no `solaris` schema" in complaint
        assert "`solaris migrate`" in complaint and "SOLARIS_DATABASE_URL" in complaint
        with psycopg.connect(empty_database) as connection:
            assert connection.execute("SELECT to_regnamespace('solaris')").fetchone() == (None,)


class TestCreditMessage:
    def test_credits_add_says_what_was_added_then_the_totals(self, own_database):
        """Adding 200 to an account with 1000 credited and 31 used (80 raw tokens at 0.376) prints +200,
        then 1200 credited and 1169 left."""
        with psycopg.connect(own_database, autocommit=True) as connection:
            connection.execute("SELECT solaris.reserve('ana', 'c1', 100, 1, 1000, 60, 'm', 0.376)")
            connection.execute("SELECT solaris.resolve('c1', 'settle', 80, 'm', NULL)")
        result = solaris("credits", "add", "ana", "200", "--reason", "projeto", env=cli_env(own_database))
        assert result.returncode == 0, result.stderr
        assert result.stdout == "+200 tokens credited to ana; 1200 credited in all, 1169 left\n"

    def test_a_replayed_credit_says_nothing_was_added(self, own_database):
        """The same idempotency key again: no `+N`, the words `nothing added`, the same totals."""
        env = cli_env(own_database)
        first = solaris("credits", "add", "lia", "70", "--reason", "r", "--idempotency-key", "k-2", env=env)
        again = solaris("credits", "add", "lia", "70", "--reason", "r", "--idempotency-key", "k-2", env=env)
        assert first.stdout == "+70 tokens credited to lia; 1070 credited in all, 1070 left\n"
        assert (
            again.stdout
            == "lia: already done with this idempotency key, nothing added; 1070 credited in all, 1070 left\n"
        )
