"""OpenAI's `/v1/embeddings` and `/v1/moderations`: inputs billed (embeddings) or free (moderations)."""

from __future__ import annotations

import base64
import struct
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.support.fake_provider._http import dropped, failure, preamble, receive
from tests.support.fake_provider._tokens import count_text, scaled

default_dimensions = 16
dimensions_max = 3072  # text-embedding-3-large's size, the largest OpenAI serves
inputs_max = 2048  # OpenAI's limit on the inputs of one embeddings call


def _inputs(given: object) -> list[str | list[int]] | None:
    """A string, a list of strings, a token array, or a list of token arrays; None if none of those."""
    if isinstance(given, str):
        return [given]
    if isinstance(given, list) and given and all(isinstance(item, int) for item in given):
        return [given]
    if isinstance(given, list) and given and all(isinstance(item, (str, list)) for item in given):
        return given
    return None


async def embeddings(request: Request) -> Response:
    """Every input is billed by its tokens (a token array by its length); no per-input overhead."""
    call = await receive(request)
    if refused := await preamble(call):
        return refused
    if call.die_after is not None:
        return dropped(request)
    inputs = _inputs(call.body.get("input"))
    if not inputs or len(inputs) > inputs_max:
        return failure(400, f"input must be a non-empty string, token array or list of up to {inputs_max}")
    dimensions = call.body.get("dimensions") or default_dimensions
    if not isinstance(dimensions, int) or not 1 <= dimensions <= dimensions_max:
        return failure(400, f"dimensions must be an integer from 1 to {dimensions_max}")
    as_base64 = call.body.get("encoding_format") == "base64"
    vector = [round(1 / (index + 1), 6) for index in range(dimensions)]
    packed = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
    prompt_tokens = sum(len(item) if isinstance(item, list) else count_text(item, call.fast) for item in inputs)
    prompt_tokens = scaled(prompt_tokens, call.prompt_scale)
    answer: dict = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": packed if as_base64 else vector}
            for index in range(len(inputs))
        ],
        "model": call.model,
    }
    if not call.no_usage:
        answer["usage"] = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return JSONResponse(answer)


_categories = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)


async def moderations(request: Request) -> Response:
    """One unflagged result per input; OpenAI does not bill moderations, so no usage."""
    call = await receive(request)
    if refused := await preamble(call):
        return refused
    if call.die_after is not None:
        return dropped(request)
    given = call.body.get("input")
    if isinstance(given, str):
        inputs: list = [given]
    elif isinstance(given, list) and given and all(isinstance(item, str) for item in given):
        inputs = given
    elif isinstance(given, list) and given and all(isinstance(item, dict) for item in given):
        inputs = [given]  # one multimodal input made of parts
    else:
        return failure(400, "input must be a string, a list of strings, or a list of parts")
    result = {
        "flagged": False,
        "categories": dict.fromkeys(_categories, False),
        "category_scores": dict.fromkeys(_categories, 0.0001),
        "category_applied_input_types": {name: ["text"] for name in _categories},
    }
    return JSONResponse({"id": f"modr-{uuid.uuid4().hex}", "model": call.model, "results": [result for _ in inputs]})
