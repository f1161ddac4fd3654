"""The new admin pages in Chromium at 1280 px and 390 px: the users table becomes cards on a
phone (nothing wider than the screen, every user's actions on screen), setting names wrap
between words, and the audit page, the overview's range and the profile form work.
Screenshots land in test-artifacts/screenshots/ as the other browser tests' do."""

from __future__ import annotations

import pytest

from tests.e2e.test_admin_pages_browser import Watched, browser, desktop, phone, submit  # noqa: F401 - a fixture
from tests.support.suite import master_key


def logged_in(watched: Watched, base_url: str, path: str) -> None:
    page = watched.page
    page.goto(f"{base_url}{path}")
    page.fill("input[name=key]", master_key)
    submit(page, "button[type=submit]")


def test_users_are_cards_on_a_phone_with_their_actions_on_screen(browser, proxy, admin, user_id):  # noqa: F811
    prefix = user_id.split("@")[0]
    for index in range(3):
        admin.add_tokens(f"{prefix}-{index}@example.com", 100)
    watched = Watched(browser, phone)
    page = watched.page
    logged_in(watched, proxy.base_url, f"/solaris/admin/users?q={prefix}")
    assert page.locator("#users tbody tr").count() == 3
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.locator("#users thead").is_hidden()
    width = page.evaluate("innerWidth")
    for button in page.locator("#users button").all():
        assert button.is_visible()
        box = button.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width
    assert page.locator("#users [data-last-active]").first.is_visible()
    watched.shot("20-users-cards-phone")
    # The inline form still works from a card.
    card = page.locator("#users tbody tr").first
    card.locator("input[name=tokens]").fill("7")
    submit(page, card.locator("button", has_text="Adicionar"))
    assert "7 tokens adicionados" in page.inner_text("[role=status]")
    assert watched.problems == []
    watched.close()


def test_users_stay_a_table_on_a_desktop(browser, proxy, admin, user_id):  # noqa: F811
    admin.add_tokens(user_id, 100)
    watched = Watched(browser, desktop)
    page = watched.page
    logged_in(watched, proxy.base_url, f"/solaris/admin/users?q={user_id}")
    assert page.locator("#users thead").is_visible()
    assert page.locator("#users th", has_text="Última atividade").is_visible()
    watched.shot("21-users-desktop")
    watched.close()


@pytest.mark.parametrize(("viewport", "name"), [(desktop, "desktop"), (phone, "phone")])
def test_setting_names_wrap_between_words(browser, proxy, viewport, name):  # noqa: F811
    watched = Watched(browser, viewport)
    page = watched.page
    logged_in(watched, proxy.base_url, "/solaris/admin/settings")
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    cell = page.locator("#settings td.setting-name").first
    assert cell.evaluate("c => getComputedStyle(c).wordBreak") == "normal"
    assert cell.evaluate("c => getComputedStyle(c).overflowWrap") == "break-word"
    # Every line of every name ends at an underscore or at the end of the name: no word is cut.
    broken = page.evaluate(
        """() => [...document.querySelectorAll('#settings td.setting-name')].flatMap(cell => {
            const text = cell.textContent, range = document.createRange(), node = cell.firstChild;
            const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT), chars = [];
            let n; while ((n = walker.nextNode())) for (let i = 0; i < n.length; i++) chars.push([n, i]);
            const cuts = [];
            for (let k = 1; k < chars.length; k++) {
                const [a, i] = chars[k - 1], [b, j] = chars[k];
                range.setStart(a, i); range.setEnd(a, i + 1); const top1 = range.getClientRects()[0];
                range.setStart(b, j); range.setEnd(b, j + 1); const top2 = range.getClientRects()[0];
                if (top1 && top2 && top2.top > top1.top + 2 && text[k - 1] !== '_') cuts.push(text);
            }
            return cuts;
        })"""
    )
    assert broken == []
    # The table wraps its names instead of growing wider than its box (which would scroll).
    assert page.evaluate("(t => t.offsetWidth <= t.parentElement.clientWidth)(document.getElementById('settings'))")
    watched.shot(f"22-settings-{name}")
    watched.close()


@pytest.mark.parametrize(("viewport", "name"), [(desktop, "desktop"), (phone, "phone")])
def test_audit_overview_range_and_profile_pages_fit_and_work(browser, proxy, admin, user_id, viewport, name):  # noqa: F811
    admin.add_tokens(user_id, 100, "do navegador")
    watched = Watched(browser, viewport)
    page = watched.page
    logged_in(watched, proxy.base_url, "/solaris/admin")
    page.fill("#range input[name=from]", "2026-01-01")
    page.fill("#range input[name=to]", "2026-01-10")
    submit(page, "#range button")
    assert page.locator("svg.chart rect.bar").count() == 10
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    watched.shot(f"23-overview-range-{name}")

    page.goto(f"{proxy.base_url}/solaris/admin/user?id={user_id}")
    page.fill("#edit-profile input[name=name]", "Maria do Navegador")
    submit(page, "#edit-profile button")
    assert "salvos" in page.inner_text("[role=status]")
    assert admin.account(user_id)["name"] == "Maria do Navegador"
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    watched.shot(f"24-user-profile-{name}")

    submit(page, "nav >> text=Auditoria")
    page.fill("form[role=search] input[name=user]", user_id)
    submit(page, "form[role=search] button")
    actions = page.locator("#audit td[data-action]").all_inner_texts()
    assert actions[:2] == ["user.update", "credit"]
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    watched.shot(f"25-audit-{name}")
    assert watched.problems == []
    watched.close()
