"""OpenAI's `/v1/images/generations` and `/v1/images/edits`: gpt-image models bill tokens, dall-e models do not."""

from __future__ import annotations

import base64
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.support.fake_provider._http import Call, dropped, failure, preamble, receive
from tests.support.fake_provider._media import openai_image_bytes_tokens, tiny_png
from tests.support.fake_provider._tokens import count_text, scaled

# OpenAI, "Image generation > Cost and latency" (gpt-image-1): output tokens per image, by quality and size.
gpt_image_output_tokens = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
}
# "auto" lets the model choose: billed as the most it can choose.
gpt_image_auto_quality = "high"
gpt_image_auto_size = "1024x1536"
dalle_sizes = {"256x256", "512x512", "1024x1024", "1792x1024", "1024x1792"}
images_max = 10  # OpenAI's limit on n


def is_gpt_image(model: str) -> bool:
    return "gpt-image" in model


def _count(call: Call) -> int | Response:
    count = call.body.get("n", 1)
    if isinstance(count, str) and count.isdigit():  # a form field
        count = int(count)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= images_max:
        return failure(400, f"n must be an integer from 1 to {images_max}")
    return count


def _gpt_image_output_tokens(call: Call) -> int | Response:
    quality = str(call.body.get("quality") or "auto")
    size = str(call.body.get("size") or "auto")
    quality = gpt_image_auto_quality if quality == "auto" else quality
    size = gpt_image_auto_size if size == "auto" else size
    if quality not in gpt_image_output_tokens or size not in gpt_image_output_tokens[quality]:
        return failure(400, f"unsupported quality {quality!r} or size {size!r} for {call.model}")
    return gpt_image_output_tokens[quality][size]


async def _answer(request: Request, call: Call, input_image_tokens: int) -> Response:
    count = _count(call)
    if isinstance(count, Response):
        return count
    image = base64.b64encode(tiny_png()).decode()
    if not is_gpt_image(call.model):
        size = str(call.body.get("size") or "1024x1024")
        if size not in dalle_sizes:
            return failure(400, f"unsupported size {size!r} for {call.model}")
        if call.body.get("response_format") == "b64_json":
            data = [{"b64_json": image, "revised_prompt": call.body.get("prompt")} for _ in range(count)]
        else:
            url = f"{str(request.base_url).rstrip('/')}/_fake/image.png"
            data = [{"url": url, "revised_prompt": call.body.get("prompt")} for _ in range(count)]
        return JSONResponse({"created": int(time.time()), "data": data})

    per_image = _gpt_image_output_tokens(call)
    if isinstance(per_image, Response):
        return per_image
    text_tokens = count_text(str(call.body.get("prompt") or ""), call.fast)
    input_tokens = scaled(text_tokens + input_image_tokens, call.prompt_scale)
    answer: dict = {
        "created": int(time.time()),
        "data": [{"b64_json": image} for _ in range(count)],
        "background": "opaque",
        "output_format": "png",
        "quality": call.body.get("quality") or "auto",
        "size": call.body.get("size") or "auto",
    }
    if not call.no_usage:
        answer["usage"] = {
            "input_tokens": input_tokens,
            "input_tokens_details": {
                "text_tokens": input_tokens - input_image_tokens,
                "image_tokens": input_image_tokens,
            },
            "output_tokens": per_image * count,
            "total_tokens": input_tokens + per_image * count,
        }
    return JSONResponse(answer)


async def generations(request: Request) -> Response:
    call = await receive(request)
    if refused := await preamble(call):
        return refused
    if call.die_after is not None:
        return dropped(request)
    return await _answer(request, call, 0)


async def edits(request: Request) -> Response:
    """Edits bill their input images too: here by the vision tile formula, from each image's size."""
    call = await receive(request)
    if refused := await preamble(call):
        return refused
    if call.die_after is not None:
        return dropped(request)
    uploads = [data for name in ("image", "image[]") for _, data in call.files.get(name, [])]
    if not uploads:
        return failure(400, "image is required")
    return await _answer(request, call, sum(openai_image_bytes_tokens(data) for data in uploads))


async def image_file(request: Request) -> Response:
    """Where dall-e style `url` answers point."""
    return Response(tiny_png(), media_type="image/png")
