"""Calls through a running proxy as LibreChat makes them, and an admin's session on its pages."""

from __future__ import annotations

import re
import time
import uuid
from html import unescape

import httpx
import openai

from tests.support.harness import ProxyProcess
from tests.support.suite import master_key


def ask(client: openai.OpenAI, user_id: str, text: str = "olá", model: str = "fake-model", **extra):
    return client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": text}],
        extra_headers={"x-litellm-end-user-id": user_id},
        **extra,
    )


def raw_post(base_url: str, path: str, user_id: str, body: dict) -> httpx.Response:
    """A JSON POST to the proxy with the master key, naming user_id in the identity header."""
    headers = {"Authorization": f"Bearer {master_key}", "x-litellm-end-user-id": user_id}
    return httpx.post(f"{base_url}{path}", json=body, headers=headers, timeout=60)


def exhaust(client: openai.OpenAI, admin, user_id: str) -> dict:
    """Spend the whole allowance in one call: the hook clamps max_tokens to what is left."""
    ask(client, user_id, "[[tokens=100000]] conte uma história", max_tokens=100000)
    return admin.settled_account(user_id)


window_s = 60
# Fixed windows reset at every wall-clock minute: the calls of a test must all fall in one.
minute_margin_s = 15


def fresh_window() -> int:
    """The current minute window, after waiting for the next one when this one is nearly over."""
    remaining_s = window_s - time.time() % window_s
    if remaining_s < minute_margin_s:
        time.sleep(remaining_s + 0.2)  # at most minute_margin_s
    return int(time.time() // window_s)


def chat(proxy: ProxyProcess, user_id: str, index: int) -> httpx.Response:
    """One chat call as LibreChat makes it; every prompt is unique, so no cache can answer it."""
    return httpx.post(
        f"{proxy.base_url}/v1/chat/completions",
        timeout=60,
        headers={"Authorization": f"Bearer {master_key}", "x-litellm-end-user-id": user_id},
        json={
            "model": "fake-model",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": f"[[tokens=5]] chamada {index} {uuid.uuid4().hex}"}],
        },
    )


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden field {name}"
    return unescape(match.group(1))


def log_in(base_url: str, key: str, locale: str = "pt-BR") -> httpx.Client:
    browser = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)
    form = browser.get("/solaris/admin/login").text
    answer = browser.post(
        "/solaris/admin/login",
        data={"key": key, "locale": locale, "next": "/solaris/admin", "form_token": hidden(form, "form_token")},
    )
    assert answer.status_code == 303, answer.text
    return browser
