"""The only reader of LiteLLM's proxy globals: its master key, its config file, its app and
its loggers.

LiteLLM keeps these as module attributes of `litellm.proxy.proxy_server`. Reading them in
one place keeps the rest of the package testable without a proxy, and is the one module to
change when a LiteLLM release renames them. The module is looked up in `sys.modules`, not
imported: outside a proxy (the CLI, the tests) importing it would build a whole proxy app.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from types import CodeType
from typing import Any

proxy_module_name = "litellm.proxy.proxy_server"
# LiteLLM's loggers (litellm._logging). A request's failure is logged on "LiteLLM Proxy"
# (common_request_processing.log_llm_api_exception); the others are covered in case a
# release moves that line.
litellm_logger_names = ("LiteLLM Proxy", "LiteLLM", "LiteLLM Router")


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


class ErrorsRaisedIn(logging.Filter):
    """Drops LiteLLM's warnings and errors about an exception raised by one function of ours.

    LiteLLM logs every exception of a pre-call hook as a failed request: an ERROR line, with
    a traceback unless it takes it for a client error (a 4xx, in 1.108). Our hook raises its
    refusals (and its 503 while the ledger is down) on purpose, each already logged as one
    line of ours. They are fastapi HTTPExceptions, the type LiteLLM renders, as LiteLLM's own
    rejections are, so the type cannot tell them apart: where the exception was raised can.
    An exception raised deeper (a bug in our code) or by a provider keeps its line and its
    traceback, and so do LiteLLM's debug and info lines.
    """

    def __init__(self, code: CodeType) -> None:
        super().__init__()
        self.code = code

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        return not any(_raised_in(error, self.code) for error in _exceptions_of(record))


def _exceptions_of(record: logging.LogRecord) -> list[BaseException]:
    """The exception a record carries: its exc_info, or an argument of its message (LiteLLM
    logs a client error with `logger.error("… %s", e)`, without exc_info)."""
    found = [record.exc_info[1]] if record.exc_info and record.exc_info[1] is not None else []
    if isinstance(record.args, tuple):
        found += [argument for argument in record.args if isinstance(argument, BaseException)]
    return found


def _raised_in(error: BaseException, code: CodeType) -> bool:
    """True when the innermost frame of the exception's traceback runs `code`."""
    frame = error.__traceback__
    if frame is None:
        return False
    while frame.tb_next is not None:
        frame = frame.tb_next
    return frame.tb_frame.f_code is code


def quiet_errors_raised_in(function: Callable[..., object]) -> None:
    """Install ErrorsRaisedIn(function) on LiteLLM's loggers, once however often it is called.

    On the loggers, not a handler: a logger's filter sees each of its records whatever
    handlers LiteLLM, uvicorn or a JSON log setting installed. First among their filters:
    LiteLLM's own (redaction, truncation) render a record's message and traceback into text
    and drop its exception, after which nothing tells whose exception it was.
    """
    code = function.__code__
    for name in litellm_logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(found, ErrorsRaisedIn) and found.code is code for found in logger.filters):
            logger.filters.insert(0, ErrorsRaisedIn(code))
