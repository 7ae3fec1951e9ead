"""MixLLM as a native LlamaIndex chat / function-calling LLM (issue #18): query and chat engines route
on the user's question (and send the candidate the whole prompt), FunctionAgent and ReActAgent
work, function-calling structured_predict works, calls with tools go only to candidates with tools,
and streamed pieces name the candidate that actually streams.

Candidates: the library's OpenAIClient (real openai SDK, real HTTP) against the rule-based
OpenAI-compatible server on 127.0.0.1, or local LlamaIndex LLMs; a real router with MiniLM.
"""

from __future__ import annotations

from typing import Any

import pytest
from li_testing import LARGE, SMALL, RouteSpy, SelfNamingLLM, fit_router, openai_compat_server
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent, ReActAgent
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool
from llama_index.embeddings.mixllm import MixLLMEmbedding
from llama_index.llms.mixllm import MixLLM
from pydantic import BaseModel

from mixllm_router import TransientClientError
from mixllm_router.clients import FakeClient, OpenAIClient

pytestmark = pytest.mark.encoder

DOCS = [Document(text="The city library opens at 9 am and closes at 6 pm from Monday to Saturday."),
        Document(text="Recycling is collected every second Tuesday; glass goes in the green bin.")]


@pytest.fixture(scope="module")
def server() -> Any:
    srv = openai_compat_server()
    yield srv
    srv.stop()


def _openai(server: Any, name: str, **kw: Any) -> OpenAIClient:
    return OpenAIClient(name, base_url=server.base_url, api_key="local", **kw)


def magic_function(input: int) -> int:
    """Apply a magic function to an input."""
    return input + 2


def test_query_engine_routes_on_the_question_and_sends_the_whole_prompt(minilm: Any) -> None:
    router = fit_router(minilm)
    small, large = SelfNamingLLM(name=SMALL), SelfNamingLLM(name=LARGE)
    llm = MixLLM(router=router, candidates={SMALL: small, LARGE: large})
    index = VectorStoreIndex.from_documents(DOCS, embed_model=MixLLMEmbedding.from_router(router))
    spy = RouteSpy(router)
    question = "When does the library open?"
    response = index.as_query_engine(llm=llm, similarity_top_k=1).query(question)
    assert spy.texts == [question]  # not the 100+ tokens of the filled RAG template
    answered_by = SMALL if str(response).startswith(f"[{SMALL}]") else LARGE
    assert "9 am" in (small if answered_by == SMALL else large).prompts[-1]  # the candidate got the context
    streamed = index.as_query_engine(llm=llm, similarity_top_k=1, streaming=True).query("Which bin is for glass?")
    assert "".join(streamed.response_gen) and spy.texts[-1] == "Which bin is for glass?"


def test_chat_engine_routes_on_the_users_turn(minilm: Any) -> None:
    router = fit_router(minilm)
    llm = MixLLM(router=router, candidates={SMALL: SelfNamingLLM(name=SMALL), LARGE: SelfNamingLLM(name=LARGE)})
    index = VectorStoreIndex.from_documents(DOCS, embed_model=MixLLMEmbedding.from_router(router))
    engine = index.as_chat_engine(chat_mode="condense_plus_context", llm=llm)
    spy = RouteSpy(router)
    engine.chat("When does the library open?")
    engine.chat("And when does it close?")
    assert spy.texts and set(spy.texts) <= {"When does the library open?", "And when does it close?"}
    assert spy.texts[-1] == "And when does it close?"


def test_function_agent_calls_a_tool_through_mixllm(minilm: Any, server: Any) -> None:
    router = fit_router(minilm)
    llm = MixLLM(router=router, candidates={SMALL: _openai(server, SMALL, supports_tools=False),
                                            LARGE: _openai(server, LARGE)})
    assert isinstance(llm, FunctionCallingLLM) and llm.metadata.is_function_calling_model
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(magic_function)], llm=llm)
    before = len(server.requests)

    async def run() -> Any:
        return await agent.run("what is magic_function(3)?")

    import asyncio

    result = asyncio.run(run())
    assert "5" in str(result)  # the tool's result came back through the candidate
    bodies = server.requests[before:]
    assert bodies[0]["tools"][0]["function"]["name"] == "magic_function"
    assert {b["model"] for b in bodies} == {LARGE}  # SMALL has no tools: never offered the call
    assert any(m.get("role") == "tool" and "5" in str(m.get("content")) for m in bodies[-1]["messages"])


def test_chat_with_tools_and_tool_calls_from_response(minilm: Any, server: Any) -> None:
    router = fit_router(minilm)
    llm = MixLLM(router=router, candidates={SMALL: _openai(server, SMALL), LARGE: _openai(server, LARGE)})
    tool = FunctionTool.from_defaults(magic_function)
    response = llm.chat_with_tools([tool], user_msg="what is magic_function(3)?")
    [call] = llm.get_tool_calls_from_response(response)
    assert (call.tool_name, call.tool_kwargs) == ("magic_function", {"input": 3})
    assert response.additional_kwargs["candidate"] in (SMALL, LARGE)
    assert llm.predict_and_call([tool], user_msg="what is magic_function(3)?").response == "5"
    with pytest.raises(ValueError, match="tool call"):
        llm.get_tool_calls_from_response(llm.chat([ChatMessage(role="user", content="hello")]))


class Person(BaseModel):
    """A person mentioned in a text."""

    name: str
    age: int


def test_function_calling_structured_predict(minilm: Any, server: Any) -> None:
    router = fit_router(minilm)
    llm = MixLLM(router=router, candidates={SMALL: _openai(server, SMALL), LARGE: _openai(server, LARGE)})
    before = len(server.requests)
    person = llm.structured_predict(Person, PromptTemplate("Extract the person: {text}"), text="Bob is 42 years old")
    assert isinstance(person, Person) and person.age == 42
    assert server.requests[before]["tools"][0]["function"]["name"] == "Person"  # by function calling


def test_react_agent_works_through_mixllm(minilm: Any) -> None:
    router = fit_router(minilm)
    script = ['Thought: I need the tool.\nAction: magic_function\nAction Input: {"input": 3}',
              "Thought: I can answer without using any more tools.\nAnswer: magic_function(3) is 5"]
    llm = MixLLM(router=router, candidates={SMALL: FakeClient(script, model_name=SMALL),
                                            LARGE: FakeClient(script, model_name=LARGE)})
    agent = ReActAgent(tools=[FunctionTool.from_defaults(magic_function)], llm=llm)

    import asyncio

    async def run() -> Any:
        return await agent.run("what is magic_function(3)?")

    assert "5" in str(asyncio.run(run()))


def test_streamed_pieces_name_the_candidate_that_streams_after_a_fallback(minilm: Any) -> None:
    router = fit_router(minilm)
    broken = FakeClient([TransientClientError("HTTP 503")] * 4, model_name=SMALL)
    llm = MixLLM(router=router, candidates={SMALL: broken, LARGE: SelfNamingLLM(name=LARGE)})
    pieces = list(llm.stream_complete("what colour is the sky on a clear day?"))
    assert pieces[-1].additional_kwargs["decision"]["chosen"] == SMALL  # SMALL was chosen, and failed
    assert {p.additional_kwargs["candidate"] for p in pieces} == {LARGE}
    chat = list(llm.stream_chat([ChatMessage(role="user", content="what colour is the sky on a clear day?")]))
    assert {c.additional_kwargs["candidate"] for c in chat} == {LARGE}
