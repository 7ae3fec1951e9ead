"""Route and call: ``invoke`` / ``ainvoke`` / ``stream`` / ``astream`` on a fitted router, with
scripted clients and with the real OpenAI SDK against a local HTTP server."""

from __future__ import annotations

import asyncio

import pytest
from servers import Reply, ScriptedServer

from mixllm_router import Candidate, ClientError, MixLLMRouter, PermanentClientError, TransientClientError
from mixllm_router.clients import FakeClient, OpenAIClient
from mixllm_router.clients.fallback import FallbackCaller

MATH_Q = "Solve this integral problem: compute the integral value step by step."


@pytest.fixture()
def priced_router(synthetic_data, hashing_encoder):
    pool = [
        Candidate(name="math-pro", input_price=10, output_price=30, supports_tools=True),
        Candidate(name="poet", input_price=10, output_price=30, supports_tools=False),
        Candidate(name="cheap", input_price=1, output_price=2, supports_tools=True),
    ]
    caller = FallbackCaller(sleep=lambda s: None, backoff_base_s=0.0)
    return MixLLMRouter(pool, encoder=hashing_encoder, prior_strength=1.0, caller=caller).fit(synthetic_data)


def test_invoke_calls_the_chosen_candidate_and_accounts_cost(priced_router):
    for name in priced_router.candidate_names:
        priced_router.set_client(name, FakeClient(f"I am {name}", model_name=name))
    reply = priced_router.invoke(MATH_Q, cost_weight=0)
    assert reply.decision.chosen == "math-pro" and reply.candidate == "math-pro"
    assert reply.text == "I am math-pro"
    usage = reply.usage
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert reply.cost_usd == pytest.approx((10 * usage["input_tokens"] + 30 * usage["output_tokens"]) / 1e6)
    record = priced_router.decisions.get(reply.decision_id)
    assert record.answered_by == "math-pro" and record.cost_usd == reply.cost_usd
    assert priced_router.load_tracker.in_flight("math-pro") == 0


def test_transient_failure_falls_back_to_the_next_best(priced_router):
    priced_router.set_client("math-pro", FakeClient([TransientClientError("overloaded")] * 4))
    priced_router.set_client("poet", FakeClient("poet here"))
    priced_router.set_client("cheap", FakeClient("cheap here"))
    reply = priced_router.invoke(MATH_Q, cost_weight=0)
    assert reply.decision.chosen == "math-pro"
    assert reply.candidate == reply.decision.ranking[1] != "math-pro"
    assert priced_router.decisions.get(reply.decision_id).answered_by == reply.candidate
    assert priced_router.caller.in_cooldown("math-pro")


def test_permanent_failure_is_not_retried(priced_router):
    priced_router.set_client("math-pro", FakeClient([PermanentClientError("bad key")]))
    priced_router.set_client("cheap", FakeClient("cheap"))
    with pytest.raises(PermanentClientError):
        priced_router.invoke(MATH_Q, cost_weight=0)


def test_only_candidates_with_clients_and_tools_are_routed(priced_router):
    with pytest.raises(ClientError, match="set_client"):
        priced_router.invoke(MATH_Q)
    priced_router.set_client("poet", FakeClient("poet"))
    priced_router.set_client("cheap", FakeClient("cheap"))
    tool = {"type": "function", "function": {"name": "calc", "parameters": {"type": "object", "properties": {}}}}
    reply = priced_router.invoke(MATH_Q, tools=[tool], cost_weight=0)
    assert reply.candidate == "cheap"  # poet has no tool support; math-pro has no client
    assert not reply.decision.score_of("poet").eligible


def test_stream_and_astream(priced_router):
    for name in priced_router.candidate_names:
        priced_router.set_client(name, FakeClient([["a ", "streamed ", name]], model_name=name))
    stream = priced_router.stream(MATH_Q, cost_weight=0)
    text = "".join(chunk.text for chunk in stream)
    assert text == "a streamed math-pro" and stream.result.candidate == "math-pro"

    async def run() -> str:
        s = await priced_router.astream(MATH_Q, cost_weight=0)
        return "".join([c.text async for c in s])

    priced_router.set_client("math-pro", FakeClient([["again"]], model_name="math-pro"))
    assert asyncio.run(run()) == "again"


async def test_many_concurrent_ainvoke_release_every_slot(priced_router):
    for name in priced_router.candidate_names:
        priced_router.set_client(name, FakeClient(f"hi from {name}", model_name=name, latency_s=0.01))
    replies = await asyncio.gather(*(priced_router.ainvoke(f"{MATH_Q} #{i}", cost_weight=0) for i in range(40)))
    assert len({r.decision_id for r in replies}) == 40
    assert all(r.text == f"hi from {r.candidate}" for r in replies)
    assert all(priced_router.load_tracker.in_flight(n) == 0 for n in priced_router.candidate_names)


def test_real_openai_sdk_against_a_local_server_with_fallback(priced_router):
    server = ScriptedServer().start()
    try:
        server.script("math-pro-model", Reply.error(500), Reply.error(500))
        server.script("cheap-model", Reply.ok("cheap answer"))
        server.script("poet-model", Reply.ok("poet answer"))
        for name in priced_router.candidate_names:
            priced_router.set_client(name, OpenAIClient(f"{name}-model", api_key="sk-local", base_url=server.openai_url))
        reply = priced_router.invoke(MATH_Q, cost_weight=0)
        assert reply.decision.chosen == "math-pro"
        assert reply.candidate != "math-pro" and reply.text.endswith("answer")
        assert [a.candidate for a in reply.call.attempts][:2] == ["math-pro", "math-pro"]
    finally:
        server.stop()
