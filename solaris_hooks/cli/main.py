"""The `solaris` command: run the proxy with our hooks, and administer the ledger.

    solaris run                   start LiteLLM with solaris_hooks (embedded Postgres when no URL is set)
    solaris users list|show|create|set-status|merge
    solaris credits add           add tokens to a user
    solaris report                usage per user and period, as a table or CSV
    solaris doctor                check the database, the ledger, the outbox, SMTP and the config
    solaris migrate               apply the schema migrations
    solaris mail flush            send the alert e-mails that are due, now

Every command but `run` talks to the database directly (SOLARIS_DATABASE_URL,
DATABASE_URL, or the embedded Postgres in SOLARIS_DATA_DIR, found as `run` finds it and
named on stderr), so it works while the proxy is stopped; only `run` creates an embedded
Postgres (solaris_hooks.cli.database).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import MutableMapping
from pathlib import Path

from solaris_hooks.cli.database import cli_database_url, data_dir, deployment_database_url, url_source
from solaris_hooks.cli.report import add_report_command
from solaris_hooks.cli.users import add_user_commands
from solaris_hooks.db.connection import url_variables
from solaris_hooks.exceptions import AdminError, SolarisError
from solaris_hooks.settings import Environment


def _master_key(data_dir: Path) -> tuple[str, bool]:
    """LITELLM_MASTER_KEY, else one generated once and kept in the data dir."""
    given = Environment.read().litellm_master_key.get_secret_value()
    if given:
        return given, False
    key_file = data_dir / "master_key"
    if key_file.exists():
        return key_file.read_text(encoding="utf-8").strip(), False
    key = "sk-" + secrets.token_urlsafe(32)
    key_file.touch(mode=0o600)
    key_file.write_text(key + "\n", encoding="utf-8")
    return key, True


# The shipped litellm-config.yaml trusts LibreChat's key as `os.environ/LIBRECHAT_API_KEY`, and
# an unset variable stops the settings from loading.
librechat_key_variable = "LIBRECHAT_API_KEY"


def default_librechat_key(environ: MutableMapping[str, str], key: str) -> None:
    """Put `key` in LIBRECHAT_API_KEY when that is unset or blank; a given key is kept."""
    if not environ.get(librechat_key_variable, "").strip():
        environ[librechat_key_variable] = key


def cli_hint(directory: Path) -> str:
    """How to call this CLI against the database `solaris run` is using, from another terminal:
    the README's first question from people who met `solaris: command not found`."""
    executable = Path(sys.executable).with_name("solaris")
    if shutil.which("solaris") == str(executable):
        shown = "solaris"
    elif executable.is_relative_to(Path.cwd()):
        shown = str(executable.relative_to(Path.cwd()))
    else:
        shown = str(executable)
    source = url_source()
    where = (
        f"with the same {source}"
        if source
        else f"from this directory, or from anywhere with SOLARIS_DATA_DIR={directory}"
    )
    return f"CLI: {shown} users list  ({where})"


def run(args: argparse.Namespace) -> int:
    config = Path(args.config).resolve()
    if not config.is_file():
        print(f"solaris: config file not found: {config}", file=sys.stderr)
        return 2
    # An empty DATABASE_URL makes LiteLLM exit ("unsupported scheme"): treat it as unset.
    environ = {name: value for name, value in os.environ.items() if not (name in url_variables and not value.strip())}
    directory = data_dir()
    url = cli_database_url(environ, create=True)
    # Only our variable: LiteLLM seeing DATABASE_URL would try to run Prisma migrations.
    environ.setdefault("SOLARIS_DATABASE_URL", url)

    from solaris_hooks.db.migrations import migrate
    from solaris_hooks.settings import load_settings

    key, generated = _master_key(directory)
    # Unset, LibreChat's key is the master key, which may name users anyway: the list then
    # trusts nothing more (and with no LiteLLM key database, as `make run` has, no other
    # key could call at all).
    default_librechat_key(environ, key)
    settings = load_settings(config, environ)  # fail here, readably, before the slow proxy start
    migrate(url)

    environ.update(
        LITELLM_MASTER_KEY=key,
        SOLARIS_CONFIG=str(config),
        # No internet on many deployments: use the cost map shipped with LiteLLM.
        LITELLM_LOCAL_MODEL_COST_MAP="True",
    )
    environment = Environment.read(environ)
    port = str(args.port or environment.port or 4000)
    host = args.host or environment.host or "127.0.0.1"
    if settings.public_url is None and host in ("127.0.0.1", "localhost"):
        # On a machine of one's own the proxy's address is known: alert e-mails can link to it.
        environ["SOLARIS_PUBLIC_URL"] = f"http://{host}:{port}"
    litellm = Path(sys.executable).with_name("litellm")
    command = [str(litellm), "--config", str(config), "--host", host, "--port", port]
    print(f"solaris: proxy on http://{host}:{port}  (OpenAI-compatible API at /v1)", flush=True)
    print(f"solaris: admin pages on http://{host}:{port}/solaris/admin  (log in with the master key)", flush=True)
    if Environment.read().litellm_master_key.get_secret_value():
        # A deployment's own key: never copied into its logs.
        print("solaris: master key from LITELLM_MASTER_KEY", flush=True)
    else:
        print(
            f"solaris: master key {key}"
            + (
                "  (generated, kept in " + str(directory / "master_key") + ")"
                if generated
                else f"  (from {directory / 'master_key'})"
            ),
            flush=True,
        )
    print(f"solaris: {cli_hint(directory)}", flush=True)
    child = subprocess.Popen(command, env=environ)

    forwarded: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        forwarded.append(signum)
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = child.wait()
    # Stopped because we were asked to stop: a clean exit, whatever the signal did to it.
    return 0 if forwarded and code in (0, *(-signum for signum in forwarded)) else code


def migrate_command(args: argparse.Namespace) -> int:
    from solaris_hooks.db.migrations import migrate

    applied = migrate(cli_database_url())
    print(f"solaris: schema up to date ({len(applied)} migration(s) applied)")
    return 0


def doctor(args: argparse.Namespace) -> int:
    from solaris_hooks.admin.doctor import run_checks

    results = run_checks(cli_database_url, Path(args.config) if args.config else None)
    for result in results:
        print(f"{'ok  ' if result.ok else 'FAIL'}  {result.name}: {result.detail}")
    failed = sum(not result.ok for result in results)
    print(f"solaris doctor: {len(results) - failed} of {len(results)} checks passed")
    return 1 if failed else 0


def mail_flush(args: argparse.Namespace) -> int:
    import asyncio

    from solaris_hooks.mail.outbox import Outbox
    from solaris_hooks.mail.smtp import smtp_settings_from_env
    from solaris_hooks.quota.service import QuotaService
    from solaris_hooks.settings import load_settings

    smtp_settings = smtp_settings_from_env()
    if smtp_settings is None:
        print("solaris: SMTP_HOST is not set: nothing can be sent (alerts stay in the outbox)", file=sys.stderr)
        return 2
    settings = load_settings(Path(args.config) if args.config else None)

    async def flush():
        service = QuotaService(settings, deployment_database_url())
        try:
            return await Outbox(service.connection, settings, smtp_settings).flush()
        finally:
            await service.close()

    report = asyncio.run(flush())
    print(
        f"solaris mail: {report.sent} sent, {report.failed} failed (will retry), {report.dead} dead, "
        f"{report.no_address} without address"
    )
    for error in report.errors:
        print(f"  {error}")
    return 1 if report.failed or report.dead else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="solaris", description="Per-user token quotas for the LiteLLM proxy.")
    config = Environment.read().solaris_config
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="start the LiteLLM proxy with solaris_hooks")
    run_parser.add_argument("--config", default="litellm-config.yaml" if config is None else config)
    run_parser.add_argument("--port", type=int)
    run_parser.add_argument("--host")
    run_parser.set_defaults(handler=run)
    commands.add_parser("migrate", help="apply schema migrations").set_defaults(handler=migrate_command)
    doctor_parser = commands.add_parser(
        "doctor", help="check the database, the ledger, the outbox, SMTP and the config"
    )
    doctor_parser.add_argument("--config", default=config)
    doctor_parser.set_defaults(handler=doctor)
    add_user_commands(commands)
    add_report_command(commands)
    mail = commands.add_parser("mail", help="alert e-mails").add_subparsers(dest="mail_command", required=True)
    flush_parser = mail.add_parser("flush", help="send the alert e-mails that are due, now")
    flush_parser.add_argument("--config", default=config)
    flush_parser.set_defaults(handler=mail_flush)
    args = parser.parse_args(argv)
    if args.handler is not run:
        # These commands only read the config, which lists LibreChat's key: a key nobody holds
        # lets it load where LIBRECHAT_API_KEY is unset (a shell beside `make run`).
        default_librechat_key(os.environ, "sk-" + secrets.token_urlsafe(32))
    try:
        return args.handler(args)
    except AdminError as error:
        print(f"solaris: {error.message}", file=sys.stderr)
        return 1
    except SolarisError as error:
        print(f"solaris: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
