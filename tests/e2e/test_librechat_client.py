"""LibreChat's own client code against real proxies: @librechat/agents, pinned in
tests/librechat_client/package.json and driven by run_case.mjs as LibreChat's server drives
it for a custom endpoint. What it sends, who pays how much, and the exact text LibreChat
stores and shows its user.

A wire recorder (tests/support/librechat_client.py) between the client and each proxy
counts the requests the client really sends, its own retries included. Both proxies allow
2 requests per user and minute (every case but the per-minute ones stays within that);
one answers refusals as errors, the other as messages.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import openai
import psycopg
import pytest

from solaris_hooks.messages import render
from tests.support.fake_provider import count_prompt_tokens
from tests.support.harness import AdminClient, ProxyProcess
from tests.support.librechat_client import LibreChatClient, WireRecorder
from tests.support.proxy_calls import exhaust, fresh_window
from tests.support.suite import artifacts_dir, charged, credits_email, master_key, proxy_of_its_own

requests_per_minute = 2
settings = {
    "default_tokens_per_user": 1000,
    "conversion_factor": 0.376,
    "credits_email": credits_email,
    "title_calls": "free",
    "requests_per_minute": requests_per_minute,
}
# How an error reaches LibreChat's user: AgentClient (api/server/controllers/agents/client.js)
# stores "An error occurred while processing the request: <error>", the browser's Error.tsx
# shows it after "Something went wrong. …"; LangChain's OpenAI wrapper puts the status first
# and its troubleshooting link after our message.
browser_wrapper = "Something went wrong. Here's the specific error message we encountered: "
server_wrapper = "An error occurred while processing the request: "
langchain_rate_limit_link = (
    "\n\nTroubleshooting URL: https://docs.langchain.com/oss/javascript/langchain/errors/MODEL_RATE_LIMIT/\n"
)


def answer(tokens: int) -> str:
    """The fake provider's streamed answer of `tokens` tokens, as LibreChat stores it."""
    return " ".join("no" if position and position % 50 == 0 else "ok" for position in range(tokens))


@dataclass
class Proxy:
    process: ProxyProcess
    wire: WireRecorder
    admin: AdminClient

    @property
    def database_url(self) -> str:
        return self.process.database_url  # type: ignore[attr-defined]


def proxy_with(refusal_style: str, database_url, fake_provider, tmp_path_factory):
    with proxy_of_its_own(
        database_url,
        fake_provider.base_url,
        tmp_path_factory.mktemp(f"librechat-{refusal_style}"),
        {**settings, "refusal_style": refusal_style},
        f"librechat-client-{refusal_style}.log",
    ) as process:
        wire = WireRecorder(process.base_url).start()
        try:
            yield Proxy(process, wire, AdminClient(process.base_url, master_key))
        finally:
            wire.stop()


@pytest.fixture(scope="module")
def errors(database_url, fake_provider, tmp_path_factory):
    """Refusals as errors (refusal_style: error, the default)."""
    yield from proxy_with("error", database_url, fake_provider, tmp_path_factory)


@pytest.fixture(scope="module")
def messages(database_url, fake_provider, tmp_path_factory):
    """Refusals as the assistant's answer (refusal_style: message)."""
    yield from proxy_with("message", database_url, fake_provider, tmp_path_factory)


@pytest.fixture(scope="module")
def client():
    artifacts_dir.mkdir(exist_ok=True)
    librechat = LibreChatClient(artifacts_dir / "librechat-client.log")
    yield librechat
    librechat.close()


@pytest.fixture
def email() -> str:
    return f"lc-{uuid.uuid4().hex[:10]}@example.com"


@pytest.fixture
def librechat_user() -> str:
    return uuid.uuid4().hex[:24]  # LibreChat's MongoDB ObjectId, sent as the body's `user`


def turn(client: LibreChatClient, proxy: Proxy, case: str, email: str, librechat_user: str, text: str, **extra):
    """One LibreChat turn through the proxy's recorder; also checks that every request the
    client sent for this LibreChat user carried the e-mail header."""
    result = client.run(f"{proxy.wire.base_url}/v1", master_key, case, email, librechat_user, text, **extra)
    by_body = [
        exchange for exchange in proxy.wire.exchanges() if (exchange["body"] or {}).get("user") == librechat_user
    ]
    assert by_body == proxy.wire.sent_for(email)
    return result


def settles(proxy: Proxy, user_id: str) -> list[tuple[int, int]]:
    """(tokens charged, raw tokens) of the user's settles, oldest first."""
    with psycopg.connect(proxy.database_url) as connection:
        return connection.execute(
            "SELECT tokens, raw_tokens FROM solaris.ledger WHERE user_id = %s AND kind = 'settle' ORDER BY id",
            (user_id,),
        ).fetchall()


def charge(raw: int) -> tuple[int, int]:
    return charged(raw), raw


def paths_and_statuses(sent: list[dict]) -> list[tuple[str, int]]:
    return [(exchange["path"], exchange["status"]) for exchange in sent]


def used_up(proxy: Proxy, email: str) -> dict:
    return exhaust(openai.OpenAI(base_url=f"{proxy.process.base_url}/v1", api_key=master_key), proxy.admin, email)


def exhausted_notice(account: dict) -> str:
    return render(
        "quota_exhausted",
        credited_tokens=account["credited_tokens"],
        used_tokens=account["used_tokens"],
        reserved_tokens=0,
        credits_email=credits_email,
    )


def rate_limited_notice() -> re.Pattern:
    """Our per-minute notice, whatever the seconds left in the minute."""
    text = re.escape(render("rate_limited_requests", limit=requests_per_minute, retry_after_s=999))
    return re.compile(text.replace("999", r"\d+"))


class TestServedCalls:
    def test_a_streamed_chat_is_one_request_charged_to_the_header_email(self, client, errors, email, librechat_user):
        """{model, user, stream, messages}: no max_tokens, no stream_options; the e-mail pays
        the prompt and the 15 streamed tokens, the 24-hex id gets no account."""
        result = turn(client, errors, "chat", email, librechat_user, "[[tokens=15]] Olá!")
        sent = errors.wire.sent_for(email)
        assert paths_and_statuses(sent) == [("/v1/chat/completions", 200)]
        assert sent[0]["body"] == {
            "model": "fake-model",
            "user": librechat_user,
            "stream": True,
            "messages": [{"role": "user", "content": "[[tokens=15]] Olá!"}],
        }
        assert result["parts"] == [{"type": "text", "text": answer(15)}] and result["shown"] == answer(15)
        errors.admin.settled_account(email)
        assert settles(errors, email) == [charge(count_prompt_tokens(sent[0]["body"]["messages"]) + 15)]
        assert errors.admin.account(librechat_user) is None

    def test_a_title_is_a_second_request_unstreamed_and_recorded_free(self, client, errors, email, librechat_user):
        """The SDK's completion title prompt, not streamed, same header: a title call (title_calls: free)."""
        result = turn(client, errors, "title", email, librechat_user, "[[tokens=8]] Olá, tudo bem?")
        sent = errors.wire.sent_for(email)
        assert paths_and_statuses(sent) == [("/v1/chat/completions", 200)] * 2
        title_body = sent[1]["body"]
        assert title_body["stream"] is False and title_body["user"] == librechat_user
        assert title_body["messages"] == [
            {
                "role": "user",
                "content": "Provide a concise, 5-word-or-less title for the conversation, using title case "
                "conventions. Only return the title itself.\n\nConversation:\nUser: [[tokens=8]] Olá, tudo bem?\n"
                f"AI: {answer(8)}",
            }
        ]
        assert result["shown"] == answer(8) and result["title"] == answer(8)
        errors.admin.settled_account(email)
        errors.admin.settles(email, 2)  # the free title call reserved nothing: charged by the next batch
        chat_raw = count_prompt_tokens(sent[0]["body"]["messages"]) + 8
        title_raw = count_prompt_tokens(title_body["messages"]) + 8
        assert settles(errors, email) == [charge(chat_raw), (0, title_raw)]

    def test_with_the_responses_api_a_turn_is_one_request_to_responses(self, client, errors, email, librechat_user):
        """useResponsesApi: /v1/responses, streamed, same header; charged the usage the client itself received."""
        result = turn(client, errors, "responses", email, librechat_user, "[[tokens=9]] Olá!")
        sent = errors.wire.sent_for(email)
        assert paths_and_statuses(sent) == [("/v1/responses", 200)]
        assert sent[0]["body"]["stream"] is True and sent[0]["body"]["user"] == librechat_user
        assert "max_output_tokens" not in sent[0]["body"]
        assert result["shown"] == answer(9)
        [usage] = result["usage"]
        assert usage["output_tokens"] == 9
        errors.admin.settled_account(email)
        assert settles(errors, email) == [charge(usage["total_tokens"])]

    def test_a_long_conversation_adds_a_summary_request_charged_to_the_same_email(
        self, client, errors, email, librechat_user
    ):
        """Past the context budget (summarization is on by default in LibreChat), the SDK first
        asks the same endpoint, with the same header, to summarize the older turns."""
        words = "palavra " * 150
        history = [{"role": "user", "content": f"[[tokens=12]] pergunta 0 {words}"}]
        history += [{"role": "assistant", "content": f"resposta 0 {words}"}]
        for number in (1, 2, 3):
            history += [
                {"role": "user", "content": f"pergunta {number} {words}"},
                {"role": "assistant", "content": f"resposta {number} {words}"},
            ]
        result = turn(
            client,
            errors,
            "summary",
            email,
            librechat_user,
            "[[tokens=7]] e agora?",
            history=history,
            maxContextTokens=800,
        )
        sent = errors.wire.sent_for(email)
        assert paths_and_statuses(sent) == [("/v1/chat/completions", 200)] * 2
        summary_request, chat_request = (exchange["body"] for exchange in sent)
        assert "checkpoint" in summary_request["messages"][-1]["content"]
        # Streamed like the turn, so metered too: LibreChat's only unstreamed call is the title.
        assert summary_request["stream"] is True and "max_tokens" not in summary_request
        assert chat_request["messages"][0]["content"].startswith("<summary>\n" + answer(12))
        assert result["parts"] == [{"type": "summary", "summary": answer(12)}, {"type": "text", "text": answer(7)}]
        assert result["shown"] == answer(7)
        errors.admin.settled_account(email)
        assert settles(errors, email) == [
            charge(count_prompt_tokens(summary_request["messages"]) + 12),
            charge(count_prompt_tokens(chat_request["messages"]) + 7),
        ]


class TestUsedUpUser:
    def test_with_refusal_style_error_our_text_comes_wrapped_in_english_after_one_request(
        self, client, errors, email, librechat_user
    ):
        """429 without retry-after: LangChain gives up at once (a "headerless 429"), and the
        user reads our text between LibreChat's and LangChain's English."""
        account = used_up(errors, email)
        result = turn(client, errors, "chat", email, librechat_user, "mais uma")
        sent = errors.wire.sent_for(email)
        assert paths_and_statuses(sent) == [("/v1/chat/completions", 429)]
        assert "retry-after" not in sent[0]["headers"] and sent[0]["headers"]["x-should-retry"] == "false"
        notice = exhausted_notice(account)
        assert result["shown"] == browser_wrapper + server_wrapper + "429 " + notice + langchain_rate_limit_link
        assert balance(errors.admin.settled_account(email)) == balance(account) and len(settles(errors, email)) == 1

    def test_with_refusal_style_message_one_request_answers_our_notice_and_nothing_else(
        self, client, messages, email, librechat_user
    ):
        """A 200 whose whole answer is our notice: stored as the assistant's text, shown as is, charged nothing."""
        account = used_up(messages, email)
        result = turn(client, messages, "chat", email, librechat_user, "mais uma")
        sent = messages.wire.sent_for(email)
        assert paths_and_statuses(sent) == [("/v1/chat/completions", 200)]
        assert sent[0]["headers"]["x-solaris-refusal"] == "quota_exhausted"
        notice = exhausted_notice(account)
        assert result["parts"] == [{"type": "text", "text": notice}] and result["shown"] == notice
        assert result["error"] is None
        assert balance(messages.admin.settled_account(email)) == balance(account) and len(settles(messages, email)) == 1

    def test_with_refusal_style_message_the_responses_api_also_answers_our_notice(
        self, client, messages, email, librechat_user
    ):
        account = used_up(messages, email)
        result = turn(client, messages, "responses", email, librechat_user, "mais uma")
        sent = messages.wire.sent_for(email)
        assert paths_and_statuses(sent) == [("/v1/responses", 200)]
        assert sent[0]["headers"]["x-solaris-refusal"] == "quota_exhausted"
        assert result["parts"] == [{"type": "text", "text": exhausted_notice(account)}]
        assert balance(messages.admin.settled_account(email)) == balance(account)


def balance(account: dict) -> tuple[int, int, int]:
    """What a refused call must leave as it was (its refusal is counted on the account)."""
    return account["credited_tokens"], account["used_tokens"], account["reserved_tokens"]


class TestPerMinuteLimits:
    def test_with_refusal_style_message_a_per_minute_refusal_is_one_request_answering_our_notice(
        self, client, messages, email, librechat_user
    ):
        """The third request of the minute: answered 200 with the notice, never retried."""
        fresh_window()
        turn(client, messages, "title", email, librechat_user, "[[tokens=5]] um")
        result = turn(client, messages, "chat", email, librechat_user, "[[tokens=5]] dois")
        sent = messages.wire.sent_for(email)
        assert [exchange["status"] for exchange in sent] == [200, 200, 200]
        assert sent[2]["headers"]["x-solaris-refusal"] == "rate_limited_requests"
        assert rate_limited_notice().fullmatch(result["shown"]), result["shown"]
        assert [part["type"] for part in result["parts"]] == ["text"]
        messages.admin.settled_account(email)
        messages.admin.settles(email, 2)  # the free title call reserved nothing: charged by the next batch
        assert len(settles(messages, email)) == 2

    def test_with_refusal_style_error_langchain_waits_out_retry_after_and_retries_once(
        self, client, errors, email, librechat_user
    ):
        """Our 429 carries retry-after (the seconds left in the minute, so at most 60): LangChain
        waits that long and retries once, in the next minute, where it is served. The user
        waits, then reads a normal answer; the refusal never shows."""
        fresh_window()
        turn(client, errors, "title", email, librechat_user, "[[tokens=5]] um")
        result = turn(client, errors, "chat", email, librechat_user, "[[tokens=5]] dois")
        sent = errors.wire.sent_for(email)
        assert [exchange["status"] for exchange in sent] == [200, 200, 429, 200]
        refused = sent[2]
        assert 1 <= int(refused["headers"]["retry-after"]) <= 60
        assert rate_limited_notice().search(refused["error_body"])
        assert sent[3]["body"] == refused["body"]
        assert result["shown"] == answer(5) and result["error"] is None
        errors.admin.settled_account(email)
        errors.admin.settles(email, 3)  # the free title call reserved nothing: charged by the next batch
        assert len(settles(errors, email)) == 3
