"""Alert e-mails: who gets them and what they say, from `templates/email/<locale>/`.

Each alert renders a subject, a plain-text part and an HTML part (autoescaped, so a
user's name cannot inject markup). The Message-ID is derived from the alert id, so a
resent alert is recognisably the same message.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate
from functools import cache

import jinja2
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from solaris_hooks.formats import format_day
from solaris_hooks.mail.links import usage_url
from solaris_hooks.mail.smtp import SmtpSettings
from solaris_hooks.messages import normalise_locale, templates_dir
from solaris_hooks.settings import Settings
from solaris_hooks.settings.refill import next_refill_at


@dataclass(frozen=True)
class Alert:
    """An outbox row joined with what we know of its user."""

    id: int
    user_id: str
    kind: str  # usage | credit
    threshold: Decimal | None
    credited_tokens: int
    used_tokens: int
    tokens: int | None
    attempts: int
    email: str | None
    name: str | None
    locale: str | None
    group_name: str | None = None  # the user's group: its refill rule says when the allowance renews

    @property
    def template(self) -> str:
        if self.kind == "credit":
            return "credit"
        return "blocked" if self.threshold is not None and self.threshold >= 1 else "warning"


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir() / "email"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


# Organisations that host their own chat often keep mail on names the public DNS reserves
# (corp.local, mail.test); email-validator refuses those for the internet at large, so its
# syntax check judges such a domain as if it ended in a public name.
_reserved_domain_suffixes = tuple(f".{name}" for name in SPECIAL_USE_DOMAIN_NAMES)


def is_email_address(text: str | None) -> bool:
    """Whether text is one bare address (no name, no brackets) that mail can be sent to.
    Syntax only: no DNS lookup, which would make saving a user depend on the network."""
    if not text:
        return False
    local_part, _, domain = text.rpartition("@")
    if domain.lower().endswith(_reserved_domain_suffixes):
        text = f"{local_part}@{domain}.example.org"
    try:
        validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def recipient(alert: Alert) -> str | None:
    """The user's stored e-mail, else the identity itself when it is an address."""
    for candidate in (alert.email, alert.user_id):
        if is_email_address(candidate):
            return candidate
    return None


def message_id(alert: Alert, domain: str) -> str:
    user_hash = hashlib.sha256(alert.user_id.encode()).hexdigest()[:12]
    return f"<solaris-alert-{alert.id}.{user_hash}@{domain}>"


def context(alert: Alert, settings: Settings, renewal_date: str | None = None, usage_url: str | None = None) -> dict:
    percent = int((alert.threshold or 0) * 100)
    return {
        "brand_name": settings.brand_name,
        "name": alert.name or alert.user_id,
        "percent": percent,
        "percent_used": min(100, round(100 * alert.used_tokens / alert.credited_tokens))
        if alert.credited_tokens
        else 100,
        "used_tokens": alert.used_tokens,
        "credited_tokens": alert.credited_tokens,
        "remaining_tokens": max(0, alert.credited_tokens - alert.used_tokens),
        "tokens": alert.tokens,
        "credits_email": settings.credits_email,
        "renewal_date": renewal_date,
        "usage_url": usage_url,
    }


def renewal_date(settings: Settings, locale: str) -> str | None:
    """When the allowance renews, written the way the reader writes dates."""
    if settings.refill is None:
        return None
    day = next_refill_at(settings.refill).date()
    return format_day(day, locale)


def render(alert: Alert, settings: Settings, **extra: str | None) -> tuple[str, str, str]:
    """(subject, text, html) in the user's locale, else the configured one."""
    locale = normalise_locale(alert.locale or settings.locale)
    extra.setdefault("renewal_date", renewal_date(settings.for_group(alert.group_name), locale))
    # The personal usage page, when public_url says where people reach the proxy.
    extra.setdefault("usage_url", usage_url(alert.user_id, settings))
    values = context(alert, settings, **extra)
    environment = _environment()
    subject = environment.get_template(f"{locale}/{alert.template}.subject.txt").render(values)
    text = environment.get_template(f"{locale}/{alert.template}.txt").render(values)
    html = environment.get_template(f"{locale}/{alert.template}.html").render(values, subject=subject, html_lang=locale)
    return " ".join(subject.split()), text.strip() + "\n", html


def compose(alert: Alert, settings: Settings, smtp: SmtpSettings, **extra: str | None) -> EmailMessage | None:
    """The message to send, or None when the alert has nobody to go to."""
    to = recipient(alert)
    # Admins get a copy of the notice that blocks a user (Bcc: users do not see their addresses).
    bcc = list(smtp.admin_emails) if alert.template == "blocked" else []
    if to is None and not bcc:
        return None
    subject, text, html = render(alert, settings, **extra)
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = smtp.from_address
    message["To"] = to if to else Address(display_name=settings.brand_name, addr_spec=bcc[0])
    if bcc:
        message["Bcc"] = ", ".join(bcc)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = message_id(alert, smtp.sender_domain)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message
