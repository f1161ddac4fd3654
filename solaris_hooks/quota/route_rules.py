"""Which routes of the proxy may serve a call, and how: every route has a rule.

A rule is one of
- `charge`: the call is bounded before it runs and charged after (only for the routes
  this package knows how to bound, `bounded_routes` of solaris_hooks.settings.routes);
- `free`: served without a reservation or a charge (an admin's explicit choice);
- `refuse`: answered with a 403 that names the route and the setting that opens it.

A route without a rule is refused. The routes are named by us, not by LiteLLM: the
pre-call hook maps LiteLLM's call type to a route name (`route_of_call_type`), and the
route guard (`solaris_hooks.quota.route_guard`) maps a request path to one (`route_of_path`),
so that routes whose handlers never call the pre-call hook (pass-through, files,
batches, assistants, realtime …) are closed too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from solaris_hooks.exceptions import RouteClosed
from solaris_hooks.settings import Rule, bounded_routes

# Routes that need a price per model (`model_prices`) to be charged.
priced_routes = frozenset({"images", "image_edits", "speech", "transcriptions"})
# The setting that opens a route, as the refusal names it.
routes_setting = "routes"

# LiteLLM call types (as the pre-call hook receives them) of the bounded routes.
_bounded_call_types: dict[str, str] = {
    "acompletion": "chat",
    "completion": "chat",
    "atext_completion": "completions",
    "text_completion": "completions",
    "aresponses": "responses",
    "responses": "responses",
    "anthropic_messages": "messages",
    "aanthropic_messages": "messages",
    "aembedding": "embeddings",
    "embedding": "embeddings",
    "amoderation": "moderations",
    "moderation": "moderations",
    "aimage_generation": "images",
    "image_generation": "images",
    "aimage_edit": "image_edits",
    "image_edit": "image_edits",
    "aspeech": "speech",
    "speech": "speech",
    "atranscription": "transcriptions",
    "transcription": "transcriptions",
}
# Other call types, by family: (pattern over the call type, route name). Anything not
# matched is its own route, named by its call type.
_call_type_families: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), name)
    for pattern, name in (
        (r"^a?rerank$", "rerank"),
        (r"^(pass_through_endpoint|allm_passthrough_route)$", "passthrough"),
        (r"realtime", "realtime"),
        (r"^_aresponses_websocket$", "responses_websocket"),
        (r"^acompact_responses$", "responses_compact"),
        (r"^a?(get|delete|cancel)_responses$|^alist_input_items$", "stored_responses"),
        (r"vector_store", "vector_stores"),
        (r"container", "containers"),
        (r"video", "videos"),
        (r"file", "files"),
        (r"batch", "batches"),
        (r"fine_tuning", "fine_tuning"),
        (r"^a?search$", "search"),
        (r"^a?ocr$", "ocr"),
        (r"^a?(ingest|query)$", "rag"),
        (r"generate_content|interaction", "gemini"),
        (r"eval", "evals"),
        (r"agent|send_message", "agents"),
        (r"skill", "skills"),
        (r"^a?(decisions|systemone)$", "decisions"),
        (r"assistant|thread|message|run", "assistants"),
        (r"mcp", "mcp"),
    )
)

# Request paths of LiteLLM's LLM routes (method, pattern over the path without the
# server's root path, route name), first match wins. Only the exact paths whose handlers
# call the pre-call hook carry a bounded route's name; every other path of a family has a
# name of its own, closed unless a setting opens it. Paths matching none (admin API,
# UI, health, /solaris) are not LLM routes and pass.
_deployment = r"(/openai/deployments/[^/]+|/engines/[^/]+)?"
_path_rules: tuple[tuple[str | None, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(pattern), name)
    for method, pattern, name in (
        ("POST", rf"{_deployment}(/v1)?/chat/completions", "chat"),
        ("POST", rf"{_deployment}(/v1)?/completions", "completions"),
        ("POST", rf"{_deployment}(/v1)?/embeddings", "embeddings"),
        ("POST", r"(/v1)?/moderations", "moderations"),
        ("POST", r"(/v1)?/audio/speech", "speech"),
        ("POST", r"(/v1)?/audio/transcriptions", "transcriptions"),
        ("POST", r"(/openai/deployments/[^/]+)?(/v1)?/images/generations", "images"),
        ("POST", r"(/openai/deployments/[^/]+)?(/v1)?/images/edits", "image_edits"),
        ("POST", r"(/openai/v1|/v1)?/responses", "responses"),
        ("POST", r"(/openai/v1|/v1)?/responses/compact", "responses_compact"),
        (None, r"(/openai/v1|/v1)?/responses", "responses_websocket"),
        (None, r"(/openai/v1|/v1)?/responses/.+", "stored_responses"),
        ("POST", r"/v1/messages", "messages"),
        (None, r"/v1/messages/.*", "messages_other"),
        (None, r"(/v1|/v2)?/rerank", "rerank"),
        (None, r"(/openai/v1|/v1)?/(realtime|live/sessions)(/.*)?|/vertex_ai/live", "realtime"),
        (None, r"(/v1)?/(assistants|threads)(/.*)?", "assistants"),
        (None, r"(/[^/]+/v1|/v1)?/files(/.*)?", "files"),
        (None, r"(/[^/]+/v1|/v1)?/batches(/.*)?", "batches"),
        (None, r"(/v1)?/fine_tuning(/.*)?", "fine_tuning"),
        (None, r"(/v1)?/(vector_stores|indexes)(/.*)?", "vector_stores"),
        (None, r"(/v1)?/videos(/.*)?", "videos"),
        (None, r"(/v1)?/containers(/.*)?", "containers"),
        (None, r"(/v1)?/search(/.*)?", "search"),
        (None, r"(/v1)?/ocr", "ocr"),
        (None, r"(/v1)?/rag/.*", "rag"),
        (None, r"(/v1beta)?/models/[^/]+:\w+|(/v1beta)?/interactions(/.*)?", "gemini"),
        (None, r"(/v1beta|/v1)?/(agents?|a2a)(/.*)?|.*/message/send", "agents"),
        (None, r"(/v1)?/evals(/.*)?", "evals"),
        (None, r"(/v1)?/(decisions|systemone)(/.*)?", "decisions"),
        (None, r"(/v1)?/skills(/.*)?", "skills"),
        # MCP tool calls (the /v1/mcp/… admin API that manages the servers is not one).
        (None, r"/(mcp|mcp-rest|toolset/[^/]+/mcp|(?!v1/)[^/]+/mcp)(/.*)?", "mcp"),
        (None, r"/queue/chat/completions|/cursor/.*|/claude_code_gateway(/.*)?", "passthrough"),
        # LiteLLM's provider pass-through routes (its lazy "llm_passthrough" feature, plus
        # langfuse and the Anthropic-native ones): the provider's own API, unbounded.
        (
            None,
            r"/(anthropic|assemblyai|azure|azure_ai|azure_speech|bedrock|cohere|comprehendmedical|deepgram"
            r"|eu\.assemblyai|fal_ai|gemini|gigachat|milvus|mistral|nvidia_nim|openai|openai_passthrough"
            r"|tinyfish|transcribe|typesafe|laya|bespoke|openrouter|vertex-ai|vertex_ai|vllm|watsonx"
            r"|langfuse|api/event_logging)(/.*)?",
            "passthrough",
        ),
    )
)


def route_of_call_type(call_type: str) -> str:
    """Our route name for a LiteLLM call type (the call type itself when unknown)."""
    call_type = str(call_type).removeprefix("CallTypes.")
    if call_type in _bounded_call_types:
        return _bounded_call_types[call_type]
    for pattern, name in _call_type_families:
        if pattern.search(call_type):
            return name
    return call_type


def route_of_path(method: str, path: str) -> str | None:
    """Our route name for a request path, or None when it is not an LLM route."""
    for rule_method, pattern, name in _path_rules:
        if (rule_method is None or rule_method == method) and pattern.fullmatch(path):
            return name
    return None


def rule_for(route: str, routes: Mapping[str, Rule]) -> Rule:
    """The rule of a route: the `routes` setting, else the default (refuse when none)."""
    return routes.get(route) or bounded_routes.get(route) or "refuse"


def check_route(route: str, routes: Mapping[str, Rule]) -> Rule:
    """The route's rule when it lets calls through; RouteClosed when it does not."""
    rule = rule_for(route, routes)
    if rule == "refuse":
        raise RouteClosed(route=route, setting=f"{routes_setting}: {{{route}: free}}")
    return rule
