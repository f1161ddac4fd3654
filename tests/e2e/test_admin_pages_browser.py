"""The admin pages as a person uses them: headless Chromium (Debian's package, driven by
Playwright) against the session's proxy. Screenshots of every page land in
test-artifacts/screenshots/; a console error anywhere fails the test.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support.suite import artifacts_dir, master_key, tampered

screenshots_dir = artifacts_dir / "screenshots"
# Chromium's own background traffic would only meet this machine's closed network.
chromium_args = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
]
phone = {"width": 390, "height": 844}
desktop = {"width": 1280, "height": 900}


def chromium_path() -> str | None:
    return os.environ.get("SOLARIS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: .ci/run installs Debian's chromium package")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    screenshots_dir.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=chromium_args)
        yield launched
        launched.close()


class Watched:
    """A page whose console errors and uncaught exceptions are collected."""

    def __init__(self, browser, viewport: dict) -> None:
        self.context = browser.new_context(viewport=viewport, locale="pt-BR")
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", lambda message: message.type == "error" and self.problems.append(message.text))
        self.page.on("pageerror", lambda error: self.problems.append(str(error)))

    def shot(self, name: str) -> Path:
        path = screenshots_dir / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def fits_the_screen(self) -> bool:
        """Nothing wider than the viewport: wide tables scroll inside their own box."""
        return self.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")

    def close(self) -> None:
        self.context.close()


def submit(page, target) -> None:
    """Click a submit button (a selector or a locator) and wait for the page it leads to."""
    with page.expect_navigation():
        if isinstance(target, str):
            page.click(target)
        else:
            target.click()


def use_tokens(client, user_id: str, raw_tokens: int) -> None:
    client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": f"[[tokens={raw_tokens}]] oi"}],
        extra_headers={"x-litellm-end-user-id": user_id},
    )


def test_an_admin_logs_in_finds_a_user_adds_tokens_and_shares_the_personal_link(browser, proxy, admin, client, user_id):
    admin.add_tokens(user_id, 500, "boas-vindas")
    use_tokens(client, user_id, 400)
    balance = admin.settled_account(user_id)
    watched = Watched(browser, desktop)
    page = watched.page

    page.goto(f"{proxy.base_url}/solaris/admin/users")
    assert "/solaris/admin/login" in page.url
    watched.shot("01-login")
    page.fill("input[name=key]", "sk-not-a-key")
    submit(page, "button[type=submit]")
    assert "Chave inválida" in page.inner_text("[role=alert]")
    watched.shot("02-login-wrong-key")
    page.fill("input[name=key]", master_key)
    submit(page, "button[type=submit]")
    assert page.url.endswith("/solaris/admin/users")  # back where the admin was going

    page.goto(f"{proxy.base_url}/solaris/admin")
    assert page.locator("svg.chart rect.bar").count() == 30
    assert page.inner_text("[data-stat=users]") != "0"
    watched.shot("03-overview")

    submit(page, "nav >> text=Usuários")
    page.fill("input[name=q]", user_id)
    submit(page, "form[role=search] button")
    row = page.locator(f"tr[data-user='{user_id}']")
    assert row.count() == 1
    assert page.locator("#users tbody tr").count() == 1
    remaining = row.locator("[data-remaining]").inner_text()
    assert remaining == f"{balance['remaining_tokens']:,}".replace(",", ".")
    watched.shot("04-users-search")

    row.locator("input[name=tokens]").fill("250")
    row.locator("input[name=reason]").fill("projeto especial")
    submit(page, row.locator("button", has_text="Adicionar"))
    assert "250 tokens adicionados" in page.inner_text("[role=status]")
    row = page.locator(f"tr[data-user='{user_id}']")
    assert row.locator("[data-remaining]").inner_text() == f"{balance['remaining_tokens'] + 250:,}".replace(",", ".")
    assert admin.account(user_id)["credited_tokens"] == balance["credited_tokens"] + 250
    watched.shot("05-users-after-credit")

    submit(page, row.locator("a").first)
    assert page.inner_text("#credited") == f"{balance['credited_tokens'] + 250:,}".replace(",", ".")
    assert "projeto especial" in page.inner_text("#ledger")
    watched.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#copy-link")
    page.wait_for_function("document.getElementById('copy-link').textContent === 'Copiado!'")
    link = page.input_value("#usage-link")
    assert page.evaluate("navigator.clipboard.readText()") == link
    watched.shot("06-user-detail")

    page.select_option("select[name=kind]", "credit")
    submit(page, "form.filters button")
    kinds = page.locator("#ledger tbody tr td:nth-child(2)").all_inner_texts()
    assert kinds and set(kinds) == {"Crédito"}

    submit(page, "nav >> text=Alertas")
    assert page.locator("#alerts").count() == 1
    watched.shot("07-alerts")
    submit(page, "nav >> text=Configurações")
    assert "conversion_factor" in page.inner_text("#settings")
    assert master_key not in page.content()
    watched.shot("08-settings")

    # The personal page, as the user opens it from the link, on a phone.
    person = Watched(browser, phone)
    person.page.goto(link)
    assert person.page.inner_text("#remaining") == f"{balance['remaining_tokens'] + 250:,}".replace(",", ".")
    assert "creditos@example.com" in person.page.inner_text("main")
    assert person.fits_the_screen()
    person.shot("09-personal-page-phone")
    assert person.problems == []
    signed, signature = link.rsplit(".", 1)
    answer = person.page.goto(signed + "." + tampered(signature))
    assert answer.status == 404
    assert "Link inválido" in person.page.inner_text("h1")
    person.shot("10-personal-page-tampered")
    # Chromium reports the page's own 404 status on the console; nothing else may appear.
    assert [problem for problem in person.problems if "status of 404" not in problem] == []
    person.close()

    submit(page, page.locator("header button", has_text="Sair"))
    assert "/solaris/admin/login" in page.url
    page.goto(f"{proxy.base_url}/solaris/admin/users")
    assert "/solaris/admin/login" in page.url  # the session is gone
    assert watched.problems == []
    watched.close()


def test_pages_fit_a_phone_screen(browser, proxy, admin, user_id):
    admin.add_tokens(user_id, 100)
    watched = Watched(browser, phone)
    page = watched.page
    page.goto(f"{proxy.base_url}/solaris/admin/login")
    page.fill("input[name=key]", master_key)
    submit(page, "button[type=submit]")
    for name, path in (
        ("overview", ""),
        ("users", "/users"),
        ("user", f"/user?id={user_id}"),
        ("alerts", "/alerts"),
        ("settings", "/settings"),
    ):
        page.goto(f"{proxy.base_url}/solaris/admin{path}")
        assert watched.fits_the_screen(), name
        watched.shot(f"phone-{name}")
    assert watched.problems == []
    watched.close()


def test_pages_read_without_javascript(browser, proxy, admin, user_id):
    admin.add_tokens(user_id, 100)
    context = browser.new_context(viewport=desktop, java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{proxy.base_url}/solaris/admin/login?lang=en")
    page.fill("input[name=key]", master_key)
    submit(page, "button[type=submit]")
    page.goto(f"{proxy.base_url}/solaris/admin/users?q={user_id}")
    row = page.locator(f"tr[data-user='{user_id}']")
    row.locator("input[name=tokens]").fill("5")
    submit(page, row.locator("button", has_text="Add"))
    assert "5 tokens added" in page.inner_text("[role=status]")
    page.goto(f"{proxy.base_url}/solaris/admin")
    assert page.locator("svg.chart").count() == 1
    page.screenshot(path=str(screenshots_dir / "overview-no-javascript-english.png"), full_page=True)
    context.close()
