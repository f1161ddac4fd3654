"""User-facing text, pt-BR first and English too, from `templates/messages/<locale>.yaml`.

The templates are files inside the package (`solaris_hooks/templates`), found through
importlib.resources the same way from a source checkout and from an installed wheel.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import jinja2
import yaml

locales = ("pt-BR", "en")
default_locale = "pt-BR"


def templates_dir() -> Path:
    return Path(str(resources.files("solaris_hooks").joinpath("templates")))


@cache
def _catalog(locale: str) -> dict[str, jinja2.Template]:
    path = templates_dir() / "messages" / f"{locale}.yaml"
    entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    # Plain text: these go into JSON error bodies, where HTML escaping would show as &amp;.
    environment = jinja2.Environment(autoescape=False, undefined=jinja2.StrictUndefined)
    return {key: environment.from_string(text) for key, text in entries.items()}


def normalise_locale(locale: str | None) -> str:
    if not locale:
        return default_locale
    lowered = locale.replace("_", "-").lower()
    for known in locales:
        if lowered == known.lower() or lowered.split("-")[0] == known.lower().split("-")[0]:
            return known
    return default_locale


def render(key: str, locale: str | None = None, **params: object) -> str:
    template = _catalog(normalise_locale(locale))[key]
    return " ".join(template.render(**params).split())
