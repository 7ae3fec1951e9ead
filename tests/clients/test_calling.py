"""FallbackCaller and SpendingGuard semantics, with scripted FakeClients and an injected clock."""

from __future__ import annotations

import asyncio
import random

import pytest

from mixllm_router._exceptions import (
    AllCandidatesFailedError,
    BudgetExceededError,
    ConfigError,
    ContextLengthError,
    PermanentClientError,
    StreamInterruptedError,
    TransientClientError,
)
from mixllm_router.clients import Completion, FakeClient
from mixllm_router.clients.fallback import CallResult, FallbackCaller, SpendingGuard

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def make_caller(clock, **kw):
    return FallbackCaller(clock=clock, sleep=clock.sleep, asleep=clock.asleep, rng=random.Random(0), **kw)


def test_backoff_is_bounded_and_jittered(clock):
    caller = make_caller(clock, backoff_base_s=0.5, backoff_max_s=2.0)
    for attempt, top in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 2.0), (10, 2.0)]:
        waits = [caller.backoff(attempt) for _ in range(200)]
        assert all(top / 2 <= w <= top for w in waits)
        assert max(waits) - min(waits) > top / 10  # jittered, not constant


def test_retries_up_to_the_limit_then_next_candidate(clock, cand):
    a = FakeClient([TransientClientError("busy")] * 3, model_name="a")
    b = FakeClient("from b", model_name="b")
    caller = make_caller(clock, max_attempts_per_candidate=3, cooldown_s=10)
    result = caller.call([(cand("a"), a), (cand("b"), b)], "q")
    assert result.text == "from b" and len(a.calls) == 3 and len(clock.sleeps) == 2
    assert caller.cooldowns() == {"a": pytest.approx(10)}


def test_all_in_cooldown_are_still_tried(clock, cand):
    a = FakeClient([TransientClientError("busy"), "a ok"], model_name="a")
    caller = make_caller(clock, max_attempts_per_candidate=1)
    with pytest.raises(AllCandidatesFailedError) as info:
        caller.call([(cand("a"), a)], "q")
    assert isinstance(info.value.errors["a"], TransientClientError)
    assert caller.call([(cand("a"), a)], "q").text == "a ok"  # cooling, but the only one: tried
    assert caller.cooldowns() == {}  # success clears the cooldown


def test_permanent_error_raises_at_once(clock, cand):
    b = FakeClient("b")
    with pytest.raises(PermanentClientError, match="bad request"):
        make_caller(clock).call([(cand("a"), FakeClient([PermanentClientError("bad request")])), (cand("b"), b)], "q")
    assert b.calls == []


def test_context_length_without_larger_window_fails(clock, cand):
    a = FakeClient([ContextLengthError("too long")])
    b = FakeClient("b")
    with pytest.raises(AllCandidatesFailedError):
        make_caller(clock).call([(cand("a", context_window=100_000), a), (cand("b", context_window=8000), b)], "q")
    assert b.calls == []


def test_unknown_exceptions_stay_loud(clock, cand):
    with pytest.raises(ZeroDivisionError):
        make_caller(clock).call([(cand("a"), FakeClient([ZeroDivisionError()])), (cand("b"), FakeClient("b"))], "q")


def test_tools_only_go_to_candidates_that_support_them(clock, cand):
    no_tools = FakeClient("x", supports_tools=False)
    yes = FakeClient("y")
    ranked = [(cand("a", supports_tools=True), no_tools), (cand("b"), yes), (cand("c", supports_tools=True), yes)]
    result = make_caller(clock).call(ranked, "q", tools=[TOOL])
    assert result.candidate == "c" and no_tools.calls == []
    assert yes.calls[0][1]["tools"] == [TOOL]
    with pytest.raises(AllCandidatesFailedError, match="tools"):
        make_caller(clock).call(ranked[:2], "q", tools=[TOOL])


def test_hooks_see_every_attempt(clock, cand):
    events = []
    caller = make_caller(
        clock, max_attempts_per_candidate=1,
        on_start=lambda c: events.append(("start", c.name)),
        on_end=lambda c, outcome, s: events.append(("end", c.name, type(outcome).__name__)),
    )
    caller.call([(cand("a"), FakeClient([TransientClientError("x")])), (cand("b"), FakeClient("ok"))], "q")
    assert events == [("start", "a"), ("end", "a", "TransientClientError"),
                      ("start", "b"), ("end", "b", "CallResult")]


def test_broken_hook_does_not_break_the_call(clock, cand):
    def bad(*args):
        raise RuntimeError("hook bug")

    result = make_caller(clock, on_start=bad, on_end=bad).call([(cand("a"), FakeClient("ok"))], "q")
    assert result.text == "ok"


def test_latency_and_estimated_cost(clock, cand):
    class Slow(FakeClient):
        def complete(self, messages, **kw):
            clock.advance(1.25)
            return super().complete(messages, **kw)

    result = make_caller(clock).call([(cand("a"), Slow("abcdefgh", report_usage=False))], "12345678")
    assert result.latency_s == pytest.approx(1.25)
    assert result.cost_estimated and (result.input_tokens, result.output_tokens) == (2, 2)
    assert result.cost_usd == pytest.approx((1.0 * 2 + 2.0 * 2) / 1e6)


def test_stream_midway_failure_sync_fake(clock, cand):
    a = FakeClient([["Hel", "lo", TransientClientError("reset")]])
    caller = make_caller(clock)
    stream = caller.stream([(cand("a"), a), (cand("b"), FakeClient("other"))], "q")
    with pytest.raises(StreamInterruptedError) as info:
        list(stream)
    assert info.value.partial_text == "Hello" and stream.result is None
    assert "a" in caller.cooldowns()


async def test_astream_failure_before_first_token_retries_same_candidate(clock, cand):
    a = FakeClient([[TransientClientError("early")], ["fine"]])
    stream = make_caller(clock).astream([(cand("a"), a)], "q")
    assert "".join([c.text async for c in stream]) == "fine"
    assert [x.error is None for x in stream.result.attempts] == [False, True]
    assert len(clock.sleeps) == 1


async def test_acall_from_many_tasks_shares_cooldown(clock, cand):
    a = FakeClient([TransientClientError("down")] * 200, model_name="a")
    b = FakeClient("b ok", model_name="b")
    caller = make_caller(clock, max_attempts_per_candidate=1, cooldown_s=60)
    ranked = [(cand("a"), a), (cand("b"), b)]
    first = await asyncio.gather(*[caller.acall(ranked, f"q{i}") for i in range(20)])
    assert all(r.candidate == "b" for r in first)
    assert len(a.calls) == 20  # all started before the first failure was seen
    second = await asyncio.gather(*[caller.acall(ranked, f"r{i}") for i in range(20)])
    assert all(r.candidate == "b" and len(r.attempts) == 1 for r in second)
    assert len(a.calls) == 20  # cooling down: skipped by every later task


# -- spending guard -----------------------------------------------------------------------------


def test_guard_cheaper_mode_moves_down_the_ranking(clock, cand):
    guard = SpendingGuard(per_call_usd=0.001, clock=clock)
    pricey = cand("pricey", input_price=100.0, output_price=100.0)
    cheap = cand("cheap", input_price=0.1, output_price=0.1)
    p_client, c_client = FakeClient("p"), FakeClient("c")
    result = make_caller(clock, guard=guard).call([(pricey, p_client), (cheap, c_client)], "q", max_tokens=100)
    assert result.candidate == "cheap" and p_client.calls == []
    assert isinstance(result.attempts[0].error, BudgetExceededError)


def test_guard_raise_mode(clock, cand):
    guard = SpendingGuard(per_call_usd=0.001, when_exhausted="raise", clock=clock)
    pricey = cand("pricey", input_price=100.0, output_price=100.0)
    with pytest.raises(BudgetExceededError):
        make_caller(clock, guard=guard).call([(pricey, FakeClient("p")), (cand("cheap"), FakeClient("c"))], "q")


def test_guard_period_budget_rolls(clock, cand):
    guard = SpendingGuard(per_period_usd=1.0, period_s=60, clock=clock)
    c = cand("a", input_price=0.0, output_price=1e6)  # 1 USD per output token
    client = FakeClient(Completion(text="x", input_tokens=1, output_tokens=1))
    caller = make_caller(clock, guard=guard)
    assert caller.call([(c, client)], "q", estimated_costs={"a": 0.9}).cost_usd == pytest.approx(1.0)
    assert guard.spent() == pytest.approx(1.0) and guard.remaining() == 0.0
    with pytest.raises(BudgetExceededError):
        caller.call([(c, client)], "q", estimated_costs={"a": 0.9})
    clock.advance(61)
    assert guard.spent() == 0.0
    assert isinstance(caller.call([(c, client)], "q", estimated_costs={"a": 0.9}), CallResult)


def test_guard_validates_settings():
    with pytest.raises(ConfigError):
        SpendingGuard(per_call_usd=-1)
    with pytest.raises(ConfigError):
        SpendingGuard(when_exhausted="ignore")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        FallbackCaller(max_attempts_per_candidate=0)


def test_a_sharing_view_has_its_own_retries_and_the_same_cooldowns_and_guard(clock, cand):
    guard = SpendingGuard(per_period_usd=1.0, clock=clock)
    caller = make_caller(clock, max_attempts_per_candidate=1, cooldown_s=10, guard=guard)
    view = caller.sharing(max_attempts_per_candidate=3)
    assert view.max_attempts_per_candidate == 3 and view.guard is guard and caller.max_attempts_per_candidate == 1
    a = FakeClient([TransientClientError("busy")] * 3, model_name="a")
    b = FakeClient("from b", model_name="b")
    assert view.call([(cand("a"), a), (cand("b"), b)], "q").text == "from b"
    assert len(a.calls) == 3  # the view's retries
    assert caller.in_cooldown("a")  # ... and the original sees the view's cooldown
    assert caller.call([(cand("a"), a), (cand("b"), b)], "q").text == "from b" and len(a.calls) == 3
    caller.clear_cooldown("a")
    assert not view.in_cooldown("a")


def test_streamed_chunks_name_the_candidate_that_streams_them(clock, cand):
    a = FakeClient([TransientClientError("busy")], model_name="a")
    b = FakeClient([["from ", "b"]], model_name="b")
    stream = make_caller(clock, max_attempts_per_candidate=1).stream([(cand("a"), a), (cand("b"), b)], "q")
    assert [(c.text, c.candidate) for c in stream if c.text] == [("from ", "b"), ("b", "b")]

    async def run():
        a2 = FakeClient([TransientClientError("busy")], model_name="a")
        s = make_caller(clock, max_attempts_per_candidate=1).astream([(cand("a"), a2), (cand("b"), FakeClient(
            [["x"]], model_name="b"))], "q")
        return [c.candidate async for c in s]

    assert set(asyncio.run(run())) == {"b"}
