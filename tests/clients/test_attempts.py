"""The fallback core (AttemptPlan) driven by hand, the call options check, and the names the split
fallback module still exports."""

from __future__ import annotations

import random

import pytest

from mixllm_router._exceptions import AllCandidatesFailedError, PermanentClientError, TransientClientError
from mixllm_router.clients import (
    CallableClient,
    CallOptions,
    Completion,
    FakeClient,
    OpenAIClient,
    ReplayClient,
)
from mixllm_router.clients._attempts import AttemptPlan
from mixllm_router.clients.fallback import FallbackCaller


def make_caller(clock, **kw):
    return FallbackCaller(clock=clock, sleep=clock.sleep, asleep=clock.asleep, rng=random.Random(0), **kw)


def test_plan_retries_then_moves_on_then_succeeds(clock, cand):
    caller = make_caller(clock, max_attempts_per_candidate=2, cooldown_s=5)
    a, b = FakeClient("a"), FakeClient("b")
    plan = AttemptPlan(caller, [(cand("a"), a), (cand("b"), b)], "q", None, {}, None)

    assert plan.next_attempt() == (plan.order[0][0], a)
    wait = plan.record_failure(TransientClientError("busy"))
    assert wait is not None and 0 < wait <= caller.backoff_max_s  # retry the same candidate
    assert plan.next_attempt()[1] is a
    assert plan.record_failure(TransientClientError("busy")) is None  # attempts used up: next candidate
    assert caller.cooldowns() == {"a": pytest.approx(5)}

    assert plan.next_attempt()[1] is b
    clock.advance(0.5)
    result = plan.record_success(Completion(text="ok", input_tokens=3, output_tokens=1))
    assert (result.candidate, result.text, result.latency_s) == ("b", "ok", pytest.approx(0.5))
    assert [(x.candidate, x.error is None) for x in result.attempts] == [("a", False), ("a", False), ("b", True)]


def test_plan_raises_permanent_errors_and_says_when_exhausted(clock, cand):
    plan = AttemptPlan(make_caller(clock), [(cand("a"), FakeClient("a"))], "q", None, {}, None)
    plan.next_attempt()
    with pytest.raises(PermanentClientError):
        plan.record_failure(PermanentClientError("401"))

    plan = AttemptPlan(make_caller(clock, max_attempts_per_candidate=1), [(cand("a"), FakeClient("a"))],
                       "q", None, {}, None)
    plan.next_attempt()
    assert plan.record_failure(TransientClientError("busy")) is None
    assert plan.next_attempt() is None
    assert isinstance(plan.exhausted(), AllCandidatesFailedError)


def test_plan_needs_a_running_attempt(clock, cand):
    plan = AttemptPlan(make_caller(clock), [(cand("a"), FakeClient("a"))], "q", None, {}, None)
    with pytest.raises(RuntimeError, match="next_attempt"):
        plan.record_success(Completion(text="x"))


@pytest.mark.parametrize("client", [
    FakeClient("x"),
    ReplayClient({"q": "a"}, model_name="r"),
    CallableClient(lambda messages: "a"),
    OpenAIClient("m", base_url="http://127.0.0.1:9/v1"),
])
def test_a_misspelt_call_option_is_a_type_error(client):
    with pytest.raises(TypeError, match="max_token"):
        client.complete("q", max_token=5)


async def test_a_misspelt_option_is_a_type_error_in_every_path():
    client = FakeClient("x")
    with pytest.raises(TypeError, match="top_p"):
        list(client.stream("q", top_p=0.5))
    with pytest.raises(TypeError, match="top_p"):
        await ReplayClient({"q": "a"}, model_name="r").acomplete("q", top_p=0.5)
    with pytest.raises(TypeError, match="top_p"):
        [c async for c in client.astream("q", top_p=0.5)]


def test_the_caller_passes_options_on_and_the_client_checks_them(clock, cand):
    client = FakeClient("x")
    caller = make_caller(clock)
    options: CallOptions = {"max_tokens": 7, "stop": ["\n"]}
    caller.call([(cand("a"), client)], "q", **options)
    assert client.calls[-1][1] == {"tools": None, "max_tokens": 7, "temperature": None, "stop": ["\n"],
                                   "timeout": None}
    with pytest.raises(TypeError, match="seed"):
        caller.call([(cand("a"), client)], "q", seed=1)  # type: ignore[call-arg]


def test_the_fallback_module_still_exports_its_names():
    from mixllm_router.clients import fallback

    for name in ("Attempt", "AsyncCallStream", "CallResult", "CallStream", "FallbackCaller", "SpendingGuard",
                 "DEFAULT_OUTPUT_TOKENS_GUESS", "Ranked", "StartHook", "EndHook"):
        assert hasattr(fallback, name), name
    assert set(fallback.__all__) == {"Attempt", "CallResult", "CallStream", "AsyncCallStream", "FallbackCaller",
                                     "SpendingGuard"}
