"""SMTP settings from the environment, and sending one message.

`SMTP_HOST` unset means mail is off: alerts stay in the outbox, visible to admins, and
go out once a mail server is configured. The password is a SecretStr so it never
reaches a log line or a repr.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from solaris_hooks.exceptions import SettingsError
from solaris_hooks.settings import Environment

default_ports = {"none": 25, "starttls": 587, "ssl": 465}


class SmtpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, max_length=255)
    port: int = Field(ge=1, le=65535)
    security: Literal["none", "starttls", "ssl"] = "none"
    username: str | None = None
    password: SecretStr | None = None
    from_address: str = Field(min_length=3, max_length=320)
    timeout_s: float = Field(20, gt=0, le=300)
    admin_emails: tuple[str, ...] = ()

    @property
    def sender_domain(self) -> str:
        address = getaddresses([self.from_address])[0][1]
        return address.rpartition("@")[2] or self.host


def smtp_settings_from_env(environ: Mapping[str, str] = os.environ) -> SmtpSettings | None:
    environment = Environment.read(environ)
    host = environment.smtp_host.strip()
    if not host:
        return None
    security = environment.smtp_security.strip().lower() or "none"
    values: dict[str, object] = {
        "host": host,
        "security": security,
        "port": environment.smtp_port.strip() or default_ports.get(security, 25),
        "username": environment.smtp_username or None,
        "password": environment.smtp_password if environment.smtp_password.get_secret_value() else None,
        "from_address": environment.smtp_from.strip() or f"no-reply@{host}",
        "admin_emails": tuple(address for _, address in getaddresses([environment.admin_emails]) if address),
    }
    if environment.smtp_timeout_s.strip():
        values["timeout_s"] = environment.smtp_timeout_s.strip()
    try:
        return SmtpSettings.model_validate(values)
    except ValidationError as error:
        names = {
            "host": "SMTP_HOST",
            "port": "SMTP_PORT",
            "security": "SMTP_SECURITY",
            "from_address": "SMTP_FROM",
            "timeout_s": "SMTP_TIMEOUT_S",
        }
        problems = [f"{names.get(str(item['loc'][0]), str(item['loc'][0]))}: {item['msg']}" for item in error.errors()]
        raise SettingsError("invalid mail settings: " + "; ".join(problems)) from None


@contextmanager
def session(settings: SmtpSettings) -> Iterator[smtplib.SMTP]:
    """A connected, secured and logged-in SMTP session; raises OSError or smtplib.SMTPException."""
    context = ssl.create_default_context()
    if settings.security == "ssl":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            settings.host, settings.port, timeout=settings.timeout_s, context=context
        )
    else:
        client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_s)
    with client:
        if settings.security == "starttls":
            client.starttls(context=context)
        if settings.username:
            password = settings.password.get_secret_value() if settings.password else ""
            client.login(settings.username, password)
        yield client


def send(settings: SmtpSettings, message: EmailMessage) -> None:
    """Deliver one message to the SMTP server; raises OSError or smtplib.SMTPException."""
    with session(settings) as client:
        client.send_message(message)
