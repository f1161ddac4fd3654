"""What the admin pages' tests share: an admin's signed-in session and the CSRF token of a page."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import httpx

from tests.support.proxy_calls import hidden, log_in
from tests.support.suite import admin_key_ana


def ana_signed_in(proxy, locale: str = "pt-BR") -> Iterator[httpx.Client]:
    """The pages as the admin key aliased `ana` (a test module's fixture yields from it)."""
    browser = log_in(proxy.base_url, admin_key_ana, locale)
    yield browser
    browser.close()


def csrf_of(browser: httpx.Client, path: str = "/solaris/admin/users") -> str:
    return hidden(browser.get(path).text, "csrf")


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))
