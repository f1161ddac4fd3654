"""The `routes` setting: which routes may be charged, and the rule each has by default.

A rule is `charge` (bounded before the call, charged after), `free` (no reservation, no
charge) or `refuse` (a 403 that names the route and this setting). Only the routes this
package knows how to bound (`bounded_routes`) may be charged: any other route would be
served on hope. How a request maps to a route is the request path's business
(solaris_hooks.quota.route_rules).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

Rule = Literal["charge", "free", "refuse"]

# Routes whose calls we can bound and charge, with the rule they have unless `routes`
# says otherwise.
bounded_routes: dict[str, Rule] = {
    "chat": "charge",
    "completions": "charge",
    "responses": "charge",
    "messages": "charge",
    "embeddings": "charge",
    "moderations": "charge",
    "images": "charge",
    "image_edits": "charge",
    "speech": "charge",
    "transcriptions": "charge",
}


def validate_routes(routes: Mapping[str, Rule]) -> Mapping[str, Rule]:
    """`charge` only for routes we can bound: any other route would be served on hope."""
    for route, rule in routes.items():
        if rule == "charge" and route not in bounded_routes:
            raise ValueError(
                f"{route!r} cannot be charged (its calls cannot be bounded); "
                f"use free or refuse. Routes that can be charged: {', '.join(bounded_routes)}"
            )
    return routes
