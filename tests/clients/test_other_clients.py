"""LangChain, LlamaIndex, callable, replay and fake clients, and message normalisation."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pandas as pd
import pytest

from mixllm_router._exceptions import ConfigError, DataError, PermanentClientError, TransientClientError
from mixllm_router.clients import (
    CallableClient,
    ChatClient,
    Completion,
    FakeClient,
    LangChainClient,
    LlamaIndexClient,
    Message,
    ReplayClient,
    accumulate_chunks,
    normalize_messages,
)
from mixllm_router.clients.fallback import FallbackCaller

# -- messages ---------------------------------------------------------------------------------


def test_normalize_messages_shapes():
    assert normalize_messages("hi") == [Message(role="user", content="hi")]
    msgs = normalize_messages([
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ])
    assert [m.role for m in msgs] == ["system", "user", "assistant", "tool"]
    assert msgs[1].content == "ab"
    assert msgs[2].tool_calls[0].arguments == {"x": 1}
    assert normalize_messages(msgs) == msgs


@pytest.mark.parametrize("bad", [[], [{"content": "no role"}], [{"role": "robot", "content": "x"}], 42,
                                 [{"role": "user", "content": [{"type": "image_url"}]}]])
def test_normalize_messages_rejects_bad_input(bad):
    with pytest.raises(ConfigError):
        normalize_messages(bad)


def test_completion_repr_and_dump_exclude_raw():
    c = Completion(text="x", raw={"secret": "sk-raw-object"})
    assert "sk-raw-object" not in repr(c) and "raw" not in c.model_dump()


# -- LangChain --------------------------------------------------------------------------------


def _fake_chat(*texts, usage=None):
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    msgs = [AIMessage(content=t, usage_metadata=usage) if usage else AIMessage(content=t) for t in texts]
    return GenericFakeChatModel(messages=iter(msgs))


def test_langchain_client_complete_and_usage():
    usage = {"input_tokens": 12, "output_tokens": 4, "total_tokens": 16}
    client = LangChainClient(_fake_chat("hello world", usage=usage))
    assert isinstance(client, ChatClient)
    out = client.complete([{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}])
    assert out.text == "hello world" and (out.input_tokens, out.output_tokens) == (12, 4)
    assert client.supports_tools is False  # GenericFakeChatModel has no bind_tools
    with pytest.raises(PermanentClientError):
        client.complete("hi", tools=[{"type": "function", "function": {"name": "f"}}])


def test_langchain_client_stream_and_async():
    client = LangChainClient(_fake_chat("one two three", "four five"))
    chunks = list(client.stream("hi"))
    assert "".join(c.text for c in chunks) == "one two three"
    assert sum(1 for c in chunks if c.text) >= 3  # really streamed, not one piece

    async def run():
        return await client.acomplete("hi")

    assert asyncio.run(run()).text == "four five"


async def test_langchain_client_astream_and_fallback(cand):
    client = LangChainClient(_fake_chat("a b c"))
    stream = FallbackCaller().astream([(cand("lc"), client)], "hi")
    assert "".join([c.text async for c in stream]) == "a b c"
    assert stream.result.candidate == "lc" and stream.result.cost_estimated is True  # no usage reported


def test_langchain_client_maps_provider_errors(cand):
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    class Flaky(FakeListChatModel):
        def _call(self, *args, **kwargs):
            raise TimeoutError("provider timed out")

    client = LangChainClient(Flaky(responses=["x"]))
    with pytest.raises(TransientClientError) as info:
        client.complete("hi")
    assert isinstance(info.value.__cause__, TimeoutError)


def test_langchain_client_rejects_non_models():
    with pytest.raises(ConfigError):
        LangChainClient(object())


# -- LlamaIndex -------------------------------------------------------------------------------


def test_llamaindex_client_over_mockllm():
    from llama_index.core.llms import MockLLM

    client = LlamaIndexClient(MockLLM(max_tokens=4))
    out = client.complete([{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}])
    assert out.text == "text text text text"
    assert out.input_tokens is None and out.output_tokens is None  # MockLLM reports no usage
    chunks = list(client.stream("hi"))
    assert "".join(c.text for c in chunks) == "text text text text" and len(chunks) >= 4

    async def run():
        a = await client.acomplete("hi")
        s = [c.text async for c in client.astream("hi")]
        return a, s

    a, s = asyncio.run(run())
    assert a.text == "text text text text" and "".join(s) == a.text


def test_llamaindex_usage_from_raw():
    from llama_index.core.llms import ChatMessage, ChatResponse

    from mixllm_router.clients.llamaindex import _usage

    r = ChatResponse(message=ChatMessage(role="assistant", content="x"), raw={"usage": {"prompt_tokens": 7,
                                                                                        "completion_tokens": 2}})
    assert _usage(r) == (7, 2)
    r = ChatResponse(message=ChatMessage(role="assistant", content="x"),
                     additional_kwargs={"prompt_tokens": 3, "completion_tokens": 1})
    assert _usage(r) == (3, 1)


# -- callable ---------------------------------------------------------------------------------


def test_callable_client_sync_and_async():
    def echo(messages):
        return "echo: " + messages[-1].content

    async def aecho(messages):
        await asyncio.sleep(0)
        return Completion(text="a" + messages[-1].content, input_tokens=1, output_tokens=2)

    assert CallableClient(echo).complete("x").text == "echo: x"
    assert CallableClient(aecho).complete("x").text == "ax"  # no loop running: asyncio.run

    async def run():
        loop_thread = threading.get_ident()
        seen = []

        def blocking(messages):
            seen.append(threading.get_ident())
            return "b"

        r1 = await CallableClient(aecho).acomplete("y")
        r2 = await CallableClient(blocking).acomplete("y")
        return r1, r2, seen[0] != loop_thread

    r1, r2, off_loop = asyncio.run(run())
    assert (r1.text, r1.output_tokens, r2.text) == ("ay", 2, "b")
    assert off_loop  # a sync function never blocks the event loop
    with pytest.raises(ConfigError):
        CallableClient(lambda m: 3).complete("x")


# -- replay -----------------------------------------------------------------------------------


def test_replay_client_mapping():
    client = ReplayClient({"What is 2+2?": "4"}, model_name="m", tokens_per_char=0.5)
    out = client.complete("What is 2+2?")
    assert out.text == "4" and out.usage_estimated
    assert out.input_tokens == 6 and out.output_tokens == 1  # ceil(12 * .5), ceil(1 * .5)
    assert client.complete(" What is 2+2?\n").text == "4"  # whitespace-tolerant
    with pytest.raises(PermanentClientError):
        client.complete("unknown")
    assert ReplayClient({}, model_name="m", default="?").complete("unknown").text == "?"
    assert ReplayClient(lambda q: q.upper(), model_name="m").complete("abc").text == "ABC"


def test_replay_client_from_dataframe_with_recorded_tokens():
    frame = pd.DataFrame({
        "query": ["q1", "q1", "q2"], "model": ["a", "b", "a"], "response": ["A1", "B1", None],
        "input_tokens": [10, 10, 3], "output_tokens": [2, 5, 1],
    })
    client = ReplayClient.from_dataset(frame, "a")
    out = client.complete("q1")
    assert (out.text, out.input_tokens, out.output_tokens, out.usage_estimated) == ("A1", 10, 2, False)
    with pytest.raises(PermanentClientError):
        client.complete("q2")  # no recorded answer
    with pytest.raises(DataError):
        ReplayClient.from_dataset(frame, "zzz")
    with pytest.raises(DataError):
        ReplayClient.from_dataset(frame.drop(columns="response"), "a")


@pytest.fixture
def routerbench_dir() -> Path:
    path = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "routerbench"
    if not path.is_dir():
        pytest.skip(f"RouterBench data not found at {path}")
    return path


@pytest.mark.filterwarnings("ignore:.*dropped bad data")
def test_replay_client_from_routerbench(routerbench_dir, cand):
    data = pytest.importorskip("mixllm_router.data")
    files = sorted(routerbench_dir.glob("*_test.csv"))
    if not files:
        pytest.skip("no RouterBench test files")
    ds = data.load_routerbench(files[0])
    model = ds.models[0]
    frame = ds.frame
    row = frame[(frame["model"] == model) & frame["response"].notna()].iloc[0]
    client = ReplayClient.from_dataset(ds, model)
    result = FallbackCaller().call([(cand(model), client)], row["query"])
    assert result.text == row["response"] and result.cost_estimated


# -- fake -------------------------------------------------------------------------------------


def test_fake_client_script_and_stream():
    fake = FakeClient(["one", TransientClientError("busy"), ["a", "b", RuntimeError("x")]], model_name="f")
    assert fake.complete("q").text == "one"
    with pytest.raises(TransientClientError):
        fake.complete("q")
    it = fake.stream("q")
    assert next(it).text == "a" and next(it).text == "b"
    with pytest.raises(RuntimeError):
        next(it)
    with pytest.raises(PermanentClientError, match="exhausted"):
        fake.complete("q")
    assert len(fake.calls) == 4
    assert accumulate_chunks(FakeClient("x y z").stream("q")).text == "x y z"
