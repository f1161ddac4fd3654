"""The only reader of LiteLLM's proxy globals: its master key, its config file and its app.

LiteLLM keeps these as module attributes of `litellm.proxy.proxy_server`. Reading them in
one place keeps the rest of the package testable without a proxy, and is the one module to
change when a LiteLLM release renames them. The module is looked up in `sys.modules`, not
imported: outside a proxy (the CLI, the tests) importing it would build a whole proxy app.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

proxy_module_name = "litellm.proxy.proxy_server"


def _proxy_server() -> Any:
    return sys.modules.get(proxy_module_name)


def master_key(environ: Mapping[str, str]) -> str | None:
    """The proxy's master key once it has read its config, else `LITELLM_MASTER_KEY`."""
    return getattr(_proxy_server(), "master_key", None) or environ.get("LITELLM_MASTER_KEY") or None


def config_file_path() -> str | None:
    """The `--config` file the running proxy was started with, if any."""
    return getattr(_proxy_server(), "user_config_file_path", None)


def proxy_app() -> Any:
    """The proxy's FastAPI app, importing the proxy when it is not loaded yet."""
    from litellm.proxy.proxy_server import app  # heavy: only once routes are mounted

    return app
