"""OpenAIClient and AnthropicClient, driven through the real SDKs against a real local server,
alone and inside FallbackCaller (retries, fallback, cooldown, streams, tools, concurrency)."""

from __future__ import annotations

import asyncio

import pytest
from servers import Reply

from mixllm_router._exceptions import (
    AllCandidatesFailedError,
    ContextLengthError,
    PermanentClientError,
    StreamInterruptedError,
    TransientClientError,
)
from mixllm_router.clients import AnthropicClient, OpenAIClient, accumulate_chunks
from mixllm_router.clients.fallback import FallbackCaller

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL = {"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}


@pytest.fixture(params=["openai", "anthropic"])
def make_client(request, server, api_key):
    """``make_client(model, **kw)`` for each provider, pointed at the local server."""

    def make(model: str, **kw):
        if request.param == "openai":
            return OpenAIClient(model, api_key=api_key, base_url=server.openai_url, **kw)
        return AnthropicClient(model, api_key=api_key, base_url=server.anthropic_url, **kw)

    make.provider = request.param
    return make


def caller_for(clock, **kw) -> FallbackCaller:
    return FallbackCaller(clock=clock, sleep=clock.sleep, asleep=clock.asleep, **kw)


def test_success_with_usage_and_cost(make_client, server, cand, clock):
    server.script("m-a", Reply.ok("Paris is the capital.", usage=(120, 30)))
    result = caller_for(clock).call([(cand("a"), make_client("m-a"))], "Capital of France?")
    assert result.text == "Paris is the capital."
    assert result.candidate == "a"
    assert (result.input_tokens, result.output_tokens) == (120, 30)
    assert result.cost_usd == pytest.approx((1.0 * 120 + 2.0 * 30) / 1e6)
    assert result.cost_estimated is False
    assert result.completion.model == "m-a"
    assert [a.error for a in result.attempts] == [None]
    body = server.bodies("m-a")[0]
    assert body["messages"][-1]["content"] in ("Capital of France?", [{"type": "text", "text": "Capital of France?"}])


def test_system_prompt_placement(make_client, server):
    make_client("m-a").complete([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    body = server.bodies("m-a")[0]
    if make_client.provider == "anthropic":
        assert body["system"] == "Be brief."
        assert [m["role"] for m in body["messages"]] == ["user"]
        assert body["max_tokens"] == 1024
    else:
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}


def test_429_then_success_same_candidate(make_client, server, cand, clock):
    server.script("m-a", Reply.error(429, headers={"retry-after": "1.5"}), Reply.ok("ok now"))
    result = caller_for(clock).call([(cand("a"), make_client("m-a")), (cand("b"), make_client("m-b"))], "q")
    assert result.candidate == "a" and result.text == "ok now"
    assert clock.sleeps == [1.5]  # the server's Retry-After, honoured
    assert isinstance(result.attempts[0].error, TransientClientError)
    assert result.attempts[0].error.retry_after == 1.5
    assert server.bodies("m-b") == []


def test_long_retry_after_skips_to_next_and_cools_down(make_client, server, cand, clock):
    server.script("m-a", Reply.error(429, headers={"retry-after": "120"}))
    caller = caller_for(clock, cooldown_s=30)
    result = caller.call([(cand("a"), make_client("m-a")), (cand("b"), make_client("m-b"))], "q")
    assert result.candidate == "b" and clock.sleeps == []
    assert caller.cooldowns()["a"] == pytest.approx(120)


def test_500_falls_back_to_next(make_client, server, cand, clock):
    server.script("m-a", Reply.error(500), Reply.error(503))
    caller = caller_for(clock)
    result = caller.call([(cand("a"), make_client("m-a")), (cand("b"), make_client("m-b"))], "q")
    assert result.candidate == "b" and result.text == "answer from m-b"
    assert [a.candidate for a in result.attempts] == ["a", "a", "b"]
    assert len(clock.sleeps) == 1 and 0.125 <= clock.sleeps[0] <= 0.25  # b0 * U(0.5, 1)
    assert "a" in caller.cooldowns()


def test_timeout_falls_back_and_cools_down(make_client, server, cand, clock):
    server.script("m-a", Reply.slow(0.6))
    caller = caller_for(clock, max_attempts_per_candidate=1, cooldown_s=30)
    ranked = [(cand("a"), make_client("m-a", timeout=0.15)), (cand("b"), make_client("m-b"))]
    result = caller.call(ranked, "q")
    assert result.candidate == "b"
    err = result.attempts[0].error
    assert isinstance(err, TransientClientError) and "timed out" in str(err)
    assert type(err.__cause__).__name__ == "APITimeoutError"
    # next call: a is cooling down and not even tried
    n_a = len(server.bodies("m-a"))
    assert caller.call(ranked, "q2").candidate == "b"
    assert len(server.bodies("m-a")) == n_a
    clock.advance(31)  # cooldown over: a is tried again
    assert caller.call(ranked, "q3").candidate == "a"


def test_401_raises_permanent_with_sdk_error_chained(make_client, server, cand, clock, api_key):
    server.script("m-a", Reply.error(401, message=f"Incorrect API key provided: {api_key}"))
    with pytest.raises(PermanentClientError) as info:
        caller_for(clock).call([(cand("a"), make_client("m-a")), (cand("b"), make_client("m-b"))], "q")
    assert type(info.value.__cause__).__name__ == "AuthenticationError"
    assert info.value.candidate == "a"
    assert api_key not in str(info.value) and api_key not in repr(info.value)
    assert server.bodies("m-b") == []  # no fallback on permanent errors


def test_context_length_moves_to_larger_window(make_client, server, cand, clock):
    msg = "This model's maximum context length is 8192 tokens" if make_client.provider == "openai" \
        else "prompt is too long: 210000 tokens > 200000 maximum"
    server.script("m-small", Reply.error(400, message=msg))
    ranked = [
        (cand("small", context_window=8192), make_client("m-small")),
        (cand("same", context_window=8192), make_client("m-same")),
        (cand("big", context_window=128000), make_client("m-big")),
    ]
    result = caller_for(clock).call(ranked, "a long prompt")
    assert result.candidate == "big"
    assert isinstance(result.attempts[0].error, ContextLengthError)
    assert server.bodies("m-same") == []  # same window: skipped, not tried


def test_stream_with_usage(make_client, server, cand, clock):
    server.script("m-a", Reply.ok("streamed answer here", usage=(40, 9), pieces=4))
    caller = caller_for(clock)
    stream = caller.stream([(cand("a"), make_client("m-a"))], "q")
    chunks = list(stream)
    assert "".join(c.text for c in chunks) == "streamed answer here"
    assert sum(1 for c in chunks if c.text) == 4
    result = stream.result
    assert result is not None and (result.input_tokens, result.output_tokens) == (40, 9)
    assert result.cost_estimated is False and result.time_to_first_token_s is not None
    body = server.bodies("m-a")[0]
    assert body["stream"] is True
    if make_client.provider == "openai":
        assert body["stream_options"] == {"include_usage": True}


async def test_astream_with_usage(make_client, server, cand, clock):
    server.script("m-a", Reply.ok("async stream", usage=(5, 3)))
    stream = caller_for(clock).astream([(cand("a"), make_client("m-a"))], "q")
    text = "".join([c.text async for c in stream])
    assert text == "async stream"
    assert (stream.result.input_tokens, stream.result.output_tokens) == (5, 3)


def test_stream_failing_before_first_token_falls_back(make_client, server, cand, clock):
    server.script("m-a", Reply.error(500), Reply.broken_stream("never shown", break_after=0))
    stream = caller_for(clock).stream([(cand("a"), make_client("m-a")), (cand("b"), make_client("m-b"))], "q")
    assert "".join(c.text for c in stream) == "answer from m-b"
    assert stream.result.candidate == "b"


def test_stream_failing_midway_raises_interrupted(make_client, server, cand, clock):
    server.script("m-a", Reply.broken_stream("one two three four", break_after=2))
    caller = caller_for(clock)
    got = []
    with pytest.raises(StreamInterruptedError) as info:
        for chunk in caller.stream([(cand("a"), make_client("m-a")), (cand("b"), make_client("m-b"))], "q"):
            got.append(chunk.text)
    assert info.value.partial_text == "".join(got) and info.value.partial_text
    assert "one two three four".startswith(info.value.partial_text)
    assert isinstance(info.value.__cause__, TransientClientError)
    assert server.bodies("m-b") == []  # never spliced with another model's text


def test_tool_call_passed_through(make_client, server):
    server.script("m-a", Reply.ok("", tool_calls=[CALL]))
    client = make_client("m-a")
    completion = client.complete("Weather in Paris?", tools=[TOOL])
    assert [c.model_dump() for c in completion.tool_calls] == [CALL]
    assert completion.finish_reason == "tool_calls"
    body = server.bodies("m-a")[0]
    if make_client.provider == "openai":
        assert body["tools"] == [TOOL]  # unchanged
    else:
        assert body["tools"] == [{"name": "get_weather", "description": "Weather for a city",
                                  "input_schema": TOOL["function"]["parameters"]}]
    # the tool result goes back in the provider's shape
    followup = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
    ]
    client.complete(followup, tools=[TOOL])
    sent = server.bodies("m-a")[1]["messages"]
    if make_client.provider == "openai":
        assert sent[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
        assert sent[2] == {"role": "tool", "content": "18C, sunny", "tool_call_id": "call_1"}
    else:
        assert sent[1]["content"] == [{"type": "tool_use", "id": "call_1", "name": "get_weather",
                                       "input": {"city": "Paris"}}]
        assert sent[2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1",
                                                        "content": "18C, sunny"}]}


def test_streamed_tool_call(make_client, server):
    server.script("m-a", Reply.ok("Checking.", tool_calls=[CALL]))
    completion = accumulate_chunks(make_client("m-a").stream("Weather?", tools=[TOOL]))
    assert completion.text == "Checking."
    assert [c.model_dump() for c in completion.tool_calls] == [CALL]


async def test_50_concurrent_async_calls(make_client, server, cand, clock):
    client = make_client("m-a")
    caller = caller_for(clock)
    results = await asyncio.gather(*[caller.acall([(cand("a"), client)], f"q{i}") for i in range(50)])
    assert all(r.text == "answer from m-a" and r.candidate == "a" for r in results)
    assert len(server.bodies("m-a")) == 50


async def test_async_fallback(make_client, server, cand, clock):
    server.script("m-a", Reply.error(502), Reply.error(502))
    result = await caller_for(clock).acall([(cand("a"), make_client("m-a")), (cand("b"), make_client("m-b"))], "q")
    assert result.candidate == "b" and len(clock.sleeps) == 1


def test_anthropic_529_overloaded_is_transient(server, cand, clock, api_key):
    server.script("m-a", Reply.error(529), Reply.error(529))
    client = AnthropicClient("m-a", api_key=api_key, base_url=server.anthropic_url)
    with pytest.raises(AllCandidatesFailedError) as info:
        caller_for(clock).call([(cand("a"), client)], "q")
    err = info.value.errors["a"]
    assert isinstance(err, TransientClientError) and "overloaded_error" in str(err)
    assert type(err.__cause__).__name__ == "OverloadedError"


def test_connection_refused_is_transient(cand, clock, api_key):
    client = OpenAIClient("m", api_key=api_key, base_url="http://127.0.0.1:9/v1", timeout=2)
    with pytest.raises(TransientClientError):
        client.complete("q")


def test_api_key_never_in_repr(server, api_key):
    clients = [OpenAIClient("m", api_key=api_key, base_url=server.openai_url),
               AnthropicClient("m", api_key=api_key, base_url=server.anthropic_url)]
    for client in clients:
        assert api_key not in repr(client) and api_key not in str(client)
        assert api_key not in repr(vars(client))


def test_api_key_from_environment(monkeypatch, server):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-key-123456789")
    client = OpenAIClient("m-a", base_url=server.openai_url)
    client.complete("q")
    headers = server.requests[-1][1]
    assert headers.get("authorization") == "Bearer sk-env-key-123456789"
    assert "sk-env-key" not in repr(client)
