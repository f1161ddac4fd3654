"""An OpenAI- and Anthropic-compatible model provider on loopback, for tests and benchmarks.

It stands in for what lies outside this machine, and bills the way those providers
document, so a quota tested against it is tested against real invoices. Every route
LiteLLM's proxy forwards is served (with and without the /v1 prefix):

- ``/v1/chat/completions``: prompt tokens as OpenAI's cookbook counts them (cl100k, 3 per
  message, 1 per name, 3 to prime the reply), plus every content part: ``image_url`` by
  OpenAI's tile formula for gpt-4o-style models (low detail 85; high: fit in 2048², shortest
  side down to 768, 85 + 170 per 512-px tile, from the size of a ``data:`` PNG/JPEG/GIF/WebP;
  1,445 — the formula's most — for a remote URL, never fetched), ``input_audio`` at 1 token
  per 100 ms (the Realtime guide's rate; WAV duration from its header, any other format
  measured as 8 kbit/s, an upper bound), and ``tools``/``functions``/``response_format``
  (json_schema)/named ``tool_choice`` definitions: tokens of their JSON plus 12 each (the
  cookbook's per-function framing). ``n`` choices are each billed: completion tokens are
  the sum over choices. Streams send ``stream_options.include_usage`` usage last.
- ``/v1/completions`` (legacy): every prompt of a batch (string or token array) by its
  tokens, plus ``suffix``; each prompt generates ``best_of`` completions (all billed) and
  returns ``n``; ``max_tokens`` defaults to 16 as documented.
- ``/v1/responses``: ``instructions`` and every ``input`` item (messages with
  ``input_text``/``input_image`` parts, ``function_call``, ``function_call_output``) counted
  as chat messages, plus ``tools``, ``text.format`` and ``tool_choice``; ``usage`` has
  ``input_tokens``/``output_tokens``/``total_tokens`` and their details. Streams send
  ``response.created``, ``response.in_progress``, output item and content part events,
  ``response.output_text.delta``…, then ``response.completed``; a reply cut by
  ``max_output_tokens`` ends ``incomplete`` (status and event), as OpenAI's does.
- ``/v1/messages`` (Anthropic; LiteLLM calls ``{api_base}/v1/messages``): top-level
  ``system``, every message block (images at width × height / 750 after the resize to a
  1568-px long edge, at most 1,600), ``tools`` with the tool-use system prompt Anthropic
  documents (346 tokens; 313 with ``tool_choice`` any/tool); ``max_tokens`` is required.
  Anthropic's tokenizer is not published: text is counted with cl100k. Streams send
  ``message_start`` (input tokens), ``content_block_start/delta/stop``, ``message_delta``
  (output tokens), ``message_stop``.
- ``/v1/embeddings``: each input by its tokens (a token array by its length).
- ``/v1/images/generations`` and ``/v1/images/edits``: a tiny PNG per image (``n``); for
  models named ``*gpt-image*``, usage as gpt-image-1 reports it: prompt tokens (and edited
  images by the tile formula) in, output tokens per image from OpenAI's table by quality and
  size (``auto`` billed as the most: high, 1024x1536); dall-e style models report no usage.
- ``/v1/audio/speech``: a small WAV or MP3 body, no usage (OpenAI bills speech per character).
- ``/v1/audio/transcriptions``: whisper-style models report ``{"type": "duration",
  "seconds"}`` (from the WAV header, rounded up); ``*-transcribe`` models report tokens
  (audio at 1 per 100 ms plus the prompt in, the transcript out).
- ``/v1/moderations``: unflagged results, no usage (moderations are free).

The prompt steers it (directives in any string of the request, so the proxy forwards them
untouched): ``[[tokens=N]]`` N completion tokens per choice (capped by the request's
limit); ``[[fail=CODE]]`` that HTTP error; ``[[sleep=S]]`` wait first; ``[[prompt_scale=X]]``
report input tokens × X rounded up (a tokenizer that counts more than ours);
``[[reasoning=N]]`` N hidden reasoning tokens billed as completion tokens (within the limit) and never
sent; ``[[no_usage]]`` omit the usage block, streamed or not; ``[[chunk_sleep=S]]`` wait S
seconds after each content event of a stream (a slow answer, up to 60 s); ``[[die_after=K]]`` streamed: K
content chunks, then the connection breaks with no final chunk or [DONE]; not streamed:
the connection closes with no answer. Without ``[[tokens=N]]`` it answers with the
request's limit (``max_tokens``…), or 20 when it sets none: the worst case a quota covers.

Every request is recorded (``FakeProvider.requests``, the last 1,000; ``GET /_fake/requests``,
``DELETE`` to clear) so tests can assert what the proxy actually sent upstream; a route the
fake lacks answers 404 and is recorded too. Also served: ``/v1/messages/count_tokens``,
``/v1/models``, and ``/_fake/image.png`` (where dall-e style ``url`` answers point).

Modules: ``_tokens`` (tokenizer, directives), ``_media`` (image and audio sizes, their
prices, tiny bodies), ``_http`` (reading, recording, failing, dropping), one module per
route family, ``_server`` (app and FakeProvider).
"""

from tests.support.fake_provider._chat import count_prompt_tokens
from tests.support.fake_provider._server import FakeProvider, app

__all__ = ["FakeProvider", "app", "count_prompt_tokens"]
