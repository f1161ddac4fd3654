"""The admin pages' text catalogs, checked without a proxy: both locales have the same keys,
and every key a page template uses exists. The pages themselves: tests/e2e/test_admin_pages.py."""

from __future__ import annotations

import re


def test_page_text_catalogs_parse_and_have_the_same_keys():
    import yaml

    from solaris_hooks.messages import templates_dir

    catalogs = {
        locale: yaml.safe_load((templates_dir() / "pages" / "text" / f"{locale}.yaml").read_text("utf-8"))
        for locale in ("pt-BR", "en")
    }
    assert set(catalogs["pt-BR"]) == set(catalogs["en"])
    used = set()
    for template in (templates_dir() / "pages").glob("*.html"):
        used |= set(re.findall(r't\(["\']([a-z_]+\.[a-z_]+)["\']', template.read_text("utf-8")))
    static = {key for key in used if not key.endswith("_")}  # "me.status_" ~ status: built at render time
    assert static - set(catalogs["en"]) == set()
