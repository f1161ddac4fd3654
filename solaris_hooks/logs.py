"""One JSON line per event worth reading later: refusals, credits, sweeps, recoveries.

Fields are ids and numbers only; never message contents, keys or passwords.
"""

from __future__ import annotations

import json
import logging

logger = logging.getLogger("solaris_hooks")


def log_event(event: str, level: int = logging.INFO, **fields: object) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, json.dumps({"event": event, **fields}, default=str, ensure_ascii=False))
