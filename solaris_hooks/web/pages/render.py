"""HTML for the admin pages and the personal usage page: jinja2 templates in
`templates/pages/`, the words from `templates/pages/text/<locale>.yaml`, numbers and dates
as the reader writes them (solaris_hooks.formats).

Autoescaped everywhere, so a user's name or id shows as text and never as markup.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

import jinja2
import yaml
from starlette.responses import HTMLResponse

from solaris_hooks.formats import format_moment, format_number, format_usd
from solaris_hooks.messages import normalise_locale, templates_dir


@cache
def _text(locale: str) -> Mapping[str, str]:
    path = templates_dir() / "pages" / "text" / f"{locale}.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def translate(locale: str, key: str, **params: object) -> str:
    text = _text(locale).get(key) or _text("en").get(key) or key
    return text.format(**params) if params else text


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir() / "pages"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_page(
    template: str,
    locale: str | None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    /,
    **values: object,
) -> HTMLResponse:
    """The page's HTML response; values are the template's own names (positional-only
    parameters above, so a value may be called `status_code` or `headers` too)."""
    locale = normalise_locale(locale)
    values = {"session": None, "flash": None, "active": None, **values}
    html = (
        _environment()
        .get_template(template)
        .render(
            locale=locale,
            t=lambda key, **params: translate(locale, key, **params),
            num=lambda value: format_number(value, locale),
            usd=lambda value: format_usd(value, locale),
            when=lambda value: format_moment(value, locale),
            **values,
        )
    )
    response = HTMLResponse(html, status_code=status_code, headers=dict(headers or {}))
    # Pages show balances and keys' actors: never cached, never framed, no outside requests.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; script-src 'unsafe-inline'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    return response
