"""ChatMixLLM behaves like a native chat model (issue #18): accounting, shared cooldowns and budget,
init keywords, event streams, offline token counts, message ids, stream usage, JSON structured
output, the library's own clients as candidates, tracing of the chosen candidate.

Real ChatOpenAI candidates (real openai SDK, real HTTP) against the rule-based local server; a
real router fitted on synthetic outcomes.
"""

from __future__ import annotations

import warnings
from typing import Any

import openai
import pytest
from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, trim_messages
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tracers.base import BaseTracer
from langchain_core.tracers.schemas import Run
from langchain_mixllm import ChatMixLLM, ClientChatModel
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from mixllm_router import BudgetExceededError, ClientError, MixLLMRouter
from mixllm_router.clients import OpenAIClient
from mixllm_router.clients.fallback import FallbackCaller, SpendingGuard
from tests.openai_compat_server import RuleBasedOpenAIServer
from tests.router_fixture import LARGE, SMALL, fit_router

HARD = "prove that the square root of two is irrational, step by step"
EASY = "hey, how are you today?"


@pytest.fixture(scope="module")
def server() -> Any:
    srv = RuleBasedOpenAIServer().start()
    yield srv
    srv.stop()


def _cand(server: RuleBasedOpenAIServer, name: str, **kw: Any) -> ChatOpenAI:
    return ChatOpenAI(model=name, api_key="local", base_url=server.base_url, max_retries=0,
                      http_async_client=openai.DefaultAsyncHttpxClient(), **kw)


def _llm(server: RuleBasedOpenAIServer, router: MixLLMRouter | None = None, **kw: Any) -> ChatMixLLM:
    return ChatMixLLM(router=router or fit_router(), candidates={SMALL: _cand(server, SMALL), LARGE: _cand(server, LARGE)},
                      **kw)


class Tracer(BaseTracer):
    def __init__(self) -> None:
        super().__init__()
        self.runs: list[Run] = []

    def _persist_run(self, run: Run) -> None:
        self.runs.append(run)


def _server_tokens(server: RuleBasedOpenAIServer, since: int) -> int:
    from tests.openai_compat_server import _usage, answer

    total = 0
    for body in server.requests[since:]:
        text, calls = answer(body)
        total += _usage(body, text, calls)["total_tokens"]
    return total


def test_usage_callback_counts_each_token_once_and_matches_the_server(server: RuleBasedOpenAIServer) -> None:
    llm = _llm(server)
    chain = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")]) | llm | StrOutputParser()
    before = len(server.requests)
    with get_usage_metadata_callback() as cb:
        chain.invoke({"q": EASY})
        chain.invoke({"q": HARD})
        for _ in llm.stream(EASY):
            pass
    assert list(cb.usage_metadata) == [SMALL, LARGE] or set(cb.usage_metadata) == {SMALL, LARGE}
    counted = sum(u["total_tokens"] for u in cb.usage_metadata.values())
    assert counted == _server_tokens(server, before)  # exactly what the server billed: no double counting


def test_a_failing_candidate_cools_down_for_chatmixllm_and_router_alike(server: RuleBasedOpenAIServer) -> None:
    router = fit_router()
    llm = _llm(server, router)
    server.fail(LARGE, 500, times=10)
    before = len(server.requests)
    first = llm.invoke(HARD)
    assert first.response_metadata["model_name"] == SMALL
    tried = [b["model"] for b in server.requests[before:]]
    assert tried == [LARGE] * router.caller.max_attempts_per_candidate + [SMALL]
    assert router.caller.in_cooldown(LARGE)  # the router's own cooldown table
    before = len(server.requests)
    assert llm.invoke(HARD).response_metadata["model_name"] == SMALL
    assert _llm(server, router, max_retries=5).invoke(HARD).response_metadata["model_name"] == SMALL
    assert [b["model"] for b in server.requests[before:]] == [SMALL, SMALL]  # LARGE is skipped while cooling
    assert router.invoke(HARD).candidate == SMALL  # router.invoke sees the same cooldown
    server.recover(LARGE)
    router.caller.clear_cooldown(LARGE)
    assert llm.invoke(HARD).response_metadata["model_name"] == LARGE


def test_the_spending_guard_applies_to_chatmixllm(server: RuleBasedOpenAIServer) -> None:
    router = fit_router()
    router._caller = FallbackCaller(guard=SpendingGuard(per_call_usd=1e-12, when_exhausted="raise"))
    before = len(server.requests)
    with pytest.raises(BudgetExceededError):
        _llm(server, router).invoke(HARD)
    assert len(server.requests) == before  # refused before any request


def test_init_keywords_reach_the_provider(server: RuleBasedOpenAIServer) -> None:
    with pytest.warns(UserWarning, match="frequency_penalty"):
        llm = _llm(server, top_p=0.5, seed=7, model_kwargs={"presence_penalty": 0.1}, frequency_penalty=0.2)
    assert llm.model_kwargs == {"presence_penalty": 0.1, "frequency_penalty": 0.2}
    before = len(server.requests)
    llm.invoke(EASY)
    body = server.requests[before]
    assert (body["top_p"], body["seed"], body["presence_penalty"], body["frequency_penalty"]) == (0.5, 7, 0.1, 0.2)
    llm.invoke(EASY, top_p=0.9)  # a call keyword wins, as with ChatOpenAI
    assert server.requests[-1]["top_p"] == 0.9


async def test_event_streams_see_the_candidates_run_by_default(server: RuleBasedOpenAIServer) -> None:
    llm = _llm(server)
    events = [e async for e in llm.astream_events(EASY, version="v2")]
    starts = [e["name"] for e in events if e["event"] == "on_chat_model_start"]
    assert starts == ["ChatMixLLM", "ChatOpenAI"]
    nested = [e for e in events if e["event"] == "on_chat_model_stream" and e["name"] == "ChatOpenAI"]
    assert nested and "".join(e["data"]["chunk"].text for e in nested).startswith(f"[{SMALL}]")


def test_token_counts_use_the_routers_tokenizer_offline(server: RuleBasedOpenAIServer,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import langchain_core.language_models.base as lc_base

    def no_hub() -> Any:
        raise AssertionError("GPT-2's tokenizer (a Hugging Face hub download) must never be loaded")

    monkeypatch.setattr(lc_base, "get_tokenizer", no_hub)
    llm = _llm(server)
    text = "prove that the square root of two is irrational"
    assert llm.get_num_tokens(text) == int(llm.router_.count_tokens([text])[0]) > 0
    history = [SystemMessage("be brief"), HumanMessage("first question " * 20), AIMessage("an answer " * 20),
               HumanMessage("the last question")]
    kept = trim_messages(history, max_tokens=30, token_counter=llm, strategy="last", include_system=True)
    assert kept[0].type == "system" and kept[-1].content == "the last question" and len(kept) < len(history)
    with pytest.raises(Exception, match="get_num_tokens"):
        llm.get_token_ids(text)


def test_decision_for_takes_the_message_id(server: RuleBasedOpenAIServer) -> None:
    router = fit_router()
    llm = _llm(server, router)
    msg = llm.invoke(HARD)
    assert msg.id and msg.id.startswith("lc_run-")
    record = llm.decision_for(msg.id)
    assert record is not None and record.answered_by == LARGE
    assert router.feedback(msg.id, True) >= 0  # the message id is a feedback key too
    for m in llm.batch([EASY, HARD]):  # each message of a batch finds its own decision
        assert llm.decision_for(m.id).decision_id == m.response_metadata["mixllm"]["decision_id"]


def test_streams_carry_usage_without_stream_usage_on_the_candidates(server: RuleBasedOpenAIServer) -> None:
    llm = _llm(server)  # the candidates do not set stream_usage=True
    full = None
    for chunk in llm.stream(HARD):
        full = chunk if full is None else full + chunk
    assert full is not None and full.usage_metadata and full.usage_metadata["output_tokens"] > 0
    record = llm.router_.decisions.get(full.response_metadata["mixllm"]["decision_id"])
    assert record is not None and record.output_tokens == full.usage_metadata["output_tokens"]


class Person(BaseModel):
    """A person."""

    name: str
    age: int


def test_json_schema_and_json_mode_are_honoured(server: RuleBasedOpenAIServer) -> None:
    llm = _llm(server)
    before = len(server.requests)
    person = llm.with_structured_output(Person, method="json_schema").invoke("Bob is 42 years old")
    assert isinstance(person, Person) and person.age == 42
    assert server.requests[before]["response_format"]["type"] == "json_schema"
    assert "tools" not in server.requests[before]  # not silently replaced by tool calling
    out = llm.with_structured_output(None, method="json_mode", include_raw=True).invoke(
        "answer in JSON: hello")
    assert isinstance(out["parsed"], dict) and out["parsing_error"] is None
    assert server.requests[-1]["response_format"] == {"type": "json_object"}
    only_clients = ChatMixLLM(router=fit_router(), candidates={
        SMALL: OpenAIClient(SMALL, base_url=server.base_url, api_key="local")})
    with pytest.raises(ClientError, match="response_format"):
        only_clients.with_structured_output(Person, method="json_schema").invoke("Bob is 42")


def test_the_librarys_own_clients_are_candidates(server: RuleBasedOpenAIServer) -> None:
    router = fit_router()
    llm = ChatMixLLM(router=router, candidates={
        SMALL: OpenAIClient(SMALL, base_url=server.base_url, api_key="local"),
        LARGE: OpenAIClient(LARGE, base_url=server.base_url, api_key="local")})
    assert isinstance(llm.candidates[SMALL], ClientChatModel)
    msg = llm.invoke(HARD)
    assert msg.content.startswith(f"[{LARGE}]") and msg.usage_metadata["input_tokens"] > 0

    def magic_function(input: int) -> int:
        """Apply a magic function to an input."""
        return input + 2

    call = llm.bind_tools([magic_function]).invoke("what is magic_function(3)?")
    assert call.tool_calls[0]["name"] == "magic_function" and call.tool_calls[0]["args"] == {"input": 3}
    text = "".join(c.text for c in llm.stream(EASY))
    assert text.startswith(f"[{SMALL}]")
    assert router.invoke(EASY).candidate == SMALL  # attached to the router as the client itself


def test_tracing_shows_the_chosen_candidate(server: RuleBasedOpenAIServer) -> None:
    tracer = Tracer()
    msg = _llm(server).invoke(HARD, config={"callbacks": [tracer]})
    [root] = tracer.runs
    [child] = root.child_runs
    meta = child.extra["metadata"]
    assert meta["mixllm_candidate"] == LARGE and meta["ls_model_name"] == LARGE
    assert meta["mixllm_decision_id"] == msg.response_metadata["mixllm"]["decision_id"]
    assert root.outputs["llm_output"]["model_name"] == LARGE


def test_model_means_pin_a_candidate_at_init_and_at_call_time(server: RuleBasedOpenAIServer) -> None:
    pinned = _llm(server, model=SMALL)
    assert pinned.invoke(HARD).response_metadata["model_name"] == SMALL  # HARD would route to LARGE
    assert pinned.invoke(EASY, model=LARGE).response_metadata["model_name"] == LARGE
    assert pinned._get_ls_params()["ls_model_name"] == SMALL
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _llm(server)._get_ls_params()["ls_model_name"] == "mixllm"


def test_a_router_trained_with_a_candidates_file_serves_tools_and_reports_real_costs(
        server: RuleBasedOpenAIServer, tmp_path: Any) -> None:
    import csv

    from mixllm_router.cli.main import main
    from tests.router_fixture import training_records

    data = tmp_path / "outcomes.csv"
    with data.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["query", "model", "quality", "cost", "output_tokens"])
        writer.writeheader()
        writer.writerows(training_records())
    prices = {SMALL: (0.15, 0.6), LARGE: (2.5, 10.0)}
    (tmp_path / "candidates.toml").write_text("".join(
        f'[[candidates]]\nname = "{name}"\ninput_price = {p_in}\noutput_price = {p_out}\n'
        f"context_window = 128000\nsupports_tools = true\nmax_concurrency = 4\n\n"
        for name, (p_in, p_out) in prices.items()))
    out = tmp_path / "router"
    assert main(["train", "--data", str(data), "--out", str(out), "--encoder", "hashing",
                 "--candidates", str(tmp_path / "candidates.toml")]) == 0
    llm = ChatMixLLM(checkpoint_path=str(out), candidates={SMALL: _cand(server, SMALL), LARGE: _cand(server, LARGE)})

    def magic_function(input: int) -> int:
        """Apply a magic function to an input."""
        return input + 2

    call = llm.bind_tools([magic_function]).invoke("what is magic_function(3)?")
    assert call.tool_calls[0]["args"] == {"input": 3}
    person = llm.with_structured_output(Person).invoke("Bob is 42 years old")
    assert isinstance(person, Person) and person.age == 42

    before = len(server.requests)
    msg = llm.invoke(HARD)
    name = msg.response_metadata["model_name"]
    usage = server.requests[before:] and msg.usage_metadata
    p_in, p_out = prices[name]
    expected = (p_in * usage["input_tokens"] + p_out * usage["output_tokens"]) / 1e6
    record = llm.decision_for(msg.id)
    assert expected > 0 and record.cost_usd == pytest.approx(expected)
