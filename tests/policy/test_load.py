"""Tests for mixllm_router.policy.load: the latency penalty, settings, service estimates and the tracker."""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading

import numpy as np
import pytest
from pydantic import ValidationError

from mixllm_router._exceptions import CheckpointError, ConfigError, DataError, UnknownCandidateError
from mixllm_router.policy.load import (
    MAX_EXPONENT,
    LatencySettings,
    LoadTracker,
    ServiceTimeEstimate,
    latency_penalty,
)


class ManualClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


def ten_second_tracker(limit: int = 2) -> tuple[LoadTracker, ManualClock]:
    """A tracker with one candidate 'a' whose every request is expected to take exactly 10 s."""
    clock = ManualClock()
    tracker = LoadTracker(clock)
    tracker.register("a", limit, ttft_s=10.0, s_per_token=0.0)
    return tracker, clock


# ---------------------------------------------------------------------------------------------
# penalty
# ---------------------------------------------------------------------------------------------

TAU, XI = 30.0, 0.8


def test_penalty_is_zero_up_to_xi_tau():
    w = np.linspace(-5.0, XI * TAU, 101)
    assert np.all(latency_penalty(w, tolerance_s=TAU, xi=XI) == 0.0)


def test_penalty_is_continuous_at_xi_tau_and_matches_formula():
    start, scale = XI * TAU, (1 - XI) * TAU + 1e-6
    for delta in (1e-9, 1e-6, 1e-3):
        p = latency_penalty(start + delta, tolerance_s=TAU, xi=XI)
        assert 0.0 < p < 2 * delta / scale
    w = 27.5
    assert latency_penalty(w, tolerance_s=TAU, xi=XI) == pytest.approx(math.exp((w - start) / scale) - 1)
    # at W = τ the penalty is about e − 1
    assert latency_penalty(TAU, tolerance_s=TAU, xi=XI) == pytest.approx(math.e - 1, rel=1e-5)


def test_penalty_increasing_and_convex_past_the_start():
    w = np.linspace(XI * TAU, TAU * 3, 400)
    p = latency_penalty(w, tolerance_s=TAU, xi=XI)
    d1 = np.diff(p)
    assert np.all(d1 > 0)
    assert np.all(np.diff(d1) >= -1e-9 * np.abs(d1[1:]))


@pytest.mark.parametrize("xi", [0.3, 0.5, 0.8, 1.0])
def test_penalty_is_finite_and_capped_for_huge_waits(xi):
    w = np.array([TAU * 10, 1e12, np.inf, 1e308])
    p = latency_penalty(w, tolerance_s=TAU, xi=xi)
    assert np.all(np.isfinite(p))
    assert p.max() <= math.expm1(MAX_EXPONENT)
    assert np.isfinite(-1e6 * p).all()  # β·P stays finite for big β too


def test_xi_one_is_a_near_step_at_tau():
    assert latency_penalty(TAU, tolerance_s=TAU, xi=1.0) == 0.0
    assert latency_penalty(TAU - 1.0, tolerance_s=TAU, xi=1.0) == 0.0
    past = latency_penalty(TAU + 0.01, tolerance_s=TAU, xi=1.0)
    assert math.isfinite(past) and past > 1e40


def test_penalty_vectorised_equals_scalar_and_keeps_shape():
    rng = np.random.default_rng(0)
    w = rng.uniform(0, 60, size=(7, 5))
    p = latency_penalty(w, tolerance_s=TAU, xi=0.5)
    assert p.shape == w.shape
    for idx in np.ndindex(w.shape):
        scalar = latency_penalty(float(w[idx]), tolerance_s=TAU, xi=0.5)
        assert isinstance(scalar, float)
        assert scalar == p[idx]
    assert isinstance(latency_penalty([1.0, 40.0], tolerance_s=TAU, xi=0.5), np.ndarray)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tolerance_s": 0.0, "xi": 0.5},
        {"tolerance_s": -1.0, "xi": 0.5},
        {"tolerance_s": math.nan, "xi": 0.5},
        {"tolerance_s": math.inf, "xi": 0.5},
        {"tolerance_s": 10.0, "xi": 0.0},
        {"tolerance_s": 10.0, "xi": 1.5},
        {"tolerance_s": 10.0, "xi": -0.2},
        {"tolerance_s": 10.0, "xi": 0.5, "eps": 0.0},
        {"tolerance_s": "ten", "xi": 0.5},
    ],
)
def test_penalty_rejects_bad_settings(kwargs):
    with pytest.raises(ConfigError):
        latency_penalty(1.0, **kwargs)


def test_penalty_rejects_nan_wait():
    with pytest.raises(DataError):
        latency_penalty(np.array([1.0, np.nan]), tolerance_s=TAU, xi=XI)


# ---------------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------------


def test_settings_defaults_validation_and_json():
    s = LatencySettings()
    assert (s.tolerance_s, s.xi, s.weight, s.hard_limit) == (30.0, 0.8, 0.0, True)
    for bad in ({"tolerance_s": 0}, {"xi": 0}, {"xi": 1.01}, {"weight": -1}, {"tolerance_s": math.inf}, {"foo": 1}):
        with pytest.raises(ConfigError, match="invalid LatencySettings"):
            LatencySettings(**bad)
        with pytest.raises(ConfigError, match="invalid LatencySettings"):
            LatencySettings.create(**bad)
    with pytest.raises(ValidationError):
        s.xi = 0.5  # frozen
    again = LatencySettings.model_validate(json.loads(json.dumps(s.model_dump())))
    assert again == s
    assert LatencySettings.create(xi=1.0).xi == 1.0


def test_settings_penalty_and_hard_limit():
    s = LatencySettings(tolerance_s=10.0, xi=0.5, weight=0.1)
    waits = np.array([0.0, 6.0, 12.0])
    np.testing.assert_array_equal(s.penalty(waits), latency_penalty(waits, tolerance_s=10.0, xi=0.5))
    np.testing.assert_array_equal(s.allowed(waits), [True, True, False])
    np.testing.assert_array_equal(s.allowed([11.0, 30.0]), [True, True])  # all past τ: all allowed
    np.testing.assert_array_equal(s.allowed([10.0, 30.0]), [True, False])  # exactly τ is within
    soft = LatencySettings(tolerance_s=10.0, hard_limit=False)
    np.testing.assert_array_equal(soft.allowed(waits), [True, True, True])


# ---------------------------------------------------------------------------------------------
# waiting times with a manual clock
# ---------------------------------------------------------------------------------------------


def test_wait_is_zero_while_a_slot_is_free():
    tracker, _ = ten_second_tracker(limit=2)
    assert tracker.expected_wait("a") == 0.0
    tracker.start("a")
    assert tracker.expected_wait("a") == 0.0
    tracker.start("a")
    assert tracker.expected_wait("a") == pytest.approx(10.0)


def test_wait_example_from_the_docs():
    # limit 2, three 10-s requests at t=0: slots free at 10, 10; the queued one runs 10→20.
    tracker, clock = ten_second_tracker(limit=2)
    tickets = [tracker.start("a") for _ in range(3)]
    assert tracker.in_flight("a") == 3
    assert tracker.expected_wait("a") == pytest.approx(10.0)
    clock.advance(4.0)
    assert tracker.expected_wait("a") == pytest.approx(6.0)
    # the first fails early at t=4 (a failed call teaches nothing, so the estimate and the
    # residual-time history stay as they were): the queued one gets its slot now (ends at 14);
    # the other running one still ends at 10, so a new request waits 6 s.
    assert tracker.finish(tickets[0], error=True) is True
    assert tracker.expected_wait("a") == pytest.approx(6.0)
    clock.advance(8.0)  # t=12: the one due at 10 is overdue -> floored at 0.1 s
    assert tracker.expected_wait("a") == pytest.approx(0.1)
    tracker.finish(tickets[1])
    assert tracker.expected_wait("a") == 0.0


def test_queued_requests_advance_in_waves():
    # limit 2, five 10-s requests at t=0: running end at 10, 10; queued: 10→20, 10→20, 20→30.
    tracker, clock = ten_second_tracker(limit=2)
    for _ in range(5):
        tracker.start("a")
    assert tracker.expected_wait("a") == pytest.approx(20.0)
    clock.advance(3.0)
    assert tracker.expected_wait("a") == pytest.approx(17.0)
    # limit 1, three at t=0: 10, then 20, then 30
    single, _ = ten_second_tracker(limit=1)
    for _ in range(3):
        single.start("a")
    assert single.expected_wait("a") == pytest.approx(30.0)


def test_durations_follow_expected_output_tokens():
    clock = ManualClock(100.0)
    tracker = LoadTracker(clock)
    tracker.register("a", 1, ttft_s=1.0, s_per_token=0.1)
    ticket = tracker.start("a", expected_output_tokens=90)  # 1 + 90 * 0.1 = 10 s
    assert ticket.expected_s == pytest.approx(10.0)
    tracker.start("a", expected_output_tokens=40)  # queued: 5 s after the first
    assert tracker.expected_wait("a") == pytest.approx(15.0)
    assert tracker.expected_latency("a", output_tokens=20) == pytest.approx(15.0 + 3.0)


def test_overdue_request_never_gives_a_negative_wait():
    tracker, clock = ten_second_tracker(limit=1)
    tracker.start("a")
    for t in (9.95, 10.0, 15.0, 1000.0):
        clock.t = t
        assert tracker.expected_wait("a") == pytest.approx(0.1)


def test_lowering_the_limit_below_the_running_count():
    clock = ManualClock()
    tracker = LoadTracker(clock)
    tracker.register("a", 3, ttft_s=0.0, s_per_token=1.0)
    for tokens in (10, 20, 30):
        tracker.start("a", expected_output_tokens=tokens)  # end at 10, 20, 30
    assert tracker.expected_wait("a") == pytest.approx(10.0)
    tracker.set_max_concurrency("a", 2)  # after the 10-s one there are still 2 running
    assert tracker.expected_wait("a") == pytest.approx(20.0)


def test_external_in_flight_counts():
    clock = ManualClock()
    tracker = LoadTracker(clock)
    tracker.register("a", 2, ttft_s=2.0, s_per_token=0.0)  # every request: 2 s
    tracker.set_in_flight("a", 3)
    # two running, assumed half-way (free at 1 s); the third queues 1 → 3; a new one waits 1 s
    assert tracker.in_flight("a") == 3
    assert tracker.expected_wait("a") == pytest.approx(1.0)
    clock.advance(0.5)
    assert tracker.expected_wait("a") == pytest.approx(0.5)
    tracker.set_in_flight("a", 1)
    assert tracker.expected_wait("a") == 0.0
    with pytest.raises(DataError):
        tracker.set_in_flight("a", -1)
    tracker.observe("a", 4.0, 0)
    assert tracker.estimate("a").expected(0) == pytest.approx(3.0)  # first step is 1/2


def test_waits_matches_expected_wait_and_rejects_unknown():
    clock = ManualClock()
    tracker = LoadTracker(clock)
    for i, name in enumerate("abc"):
        tracker.register(name, 1, ttft_s=float(i + 1), s_per_token=0.0)
        tracker.start(name)
    w = tracker.waits(["c", "a", "b"])
    assert w.dtype == np.float64
    np.testing.assert_allclose(w, [3.0, 1.0, 2.0])
    assert [tracker.expected_wait(n) for n in "cab"] == list(w)
    with pytest.raises(UnknownCandidateError):
        tracker.waits(["a", "zzz"])
    with pytest.raises(UnknownCandidateError):
        tracker.expected_wait("zzz")


def test_cached_schedule_equals_a_fresh_computation():
    """Random operations and clock moves: the cached wait always equals a recomputed one."""
    rng = random.Random(7)
    clock = ManualClock()
    tracker = LoadTracker(clock)
    names = ["a", "b", "c"]
    for name, limit in zip(names, (1, 2, 3)):
        tracker.register(name, limit, ttft_s=rng.uniform(0.5, 3), s_per_token=rng.uniform(0.001, 0.05))
    open_tickets = []
    for _ in range(2000):
        op = rng.random()
        if op < 0.45:
            open_tickets.append(tracker.start(rng.choice(names), rng.choice([None, 10, 100, 500])))
        elif op < 0.8 and open_tickets:
            tracker.finish(open_tickets.pop(rng.randrange(len(open_tickets))), output_tokens=rng.randint(0, 400))
        elif op < 0.85:
            tracker.set_in_flight(rng.choice(names), rng.randint(0, 3))
        else:
            clock.advance(rng.expovariate(1.0))
        cached = tracker.waits(names)
        for load in tracker._loads.values():  # force a full recomputation
            load.dirty, load.r_dirty, load.valid_until = True, True, -math.inf
        fresh = tracker.waits(names)
        np.testing.assert_array_equal(cached, fresh)
        assert np.all(cached >= 0)


# ---------------------------------------------------------------------------------------------
# the residual-time rule for running requests, and re-costing with the current estimate
# ---------------------------------------------------------------------------------------------


def tracker_with_history(seconds: list[float], limit: int = 1) -> tuple[LoadTracker, ManualClock]:
    """Candidate 'a' predicting 10 s a request, with recent finishes of these durations (no length)."""
    tracker, clock = ten_second_tracker(limit)
    state = tracker.state_dict()
    state["candidates"]["a"]["service_history"] = [[d, None] for d in seconds]
    tracker.load_state_dict(state)
    return tracker, clock


def test_running_request_ends_like_recent_requests_that_ran_as_long():
    # the docstring example: finishes of 20, 5, 40, 5 s against a 10-s prediction: ratios
    # {0.5, 0.5, 2, 4}; one request predicted at d = 10 s, sent at 0
    tracker, clock = tracker_with_history([20.0, 5.0, 40.0, 5.0])
    tracker.start("a")
    # a = 0: end = 10 · mean{0.5, 0.5, 2, 4} = 17.5
    assert tracker.expected_wait("a") == pytest.approx(17.5)
    clock.t = 4.0  # a/d = 0.4 < 0.5: still every ratio
    assert tracker.expected_wait("a") == pytest.approx(13.5)
    clock.t = 6.0  # a/d = 0.6: past the short ones, end = 10 · mean{2, 4} = 30
    assert tracker.expected_wait("a") == pytest.approx(24.0)
    clock.t = 25.0  # a/d = 2.5: end = 10 · 4 = 40
    assert tracker.expected_wait("a") == pytest.approx(15.0)
    clock.t = 39.95  # end 40 is within the floor: still busy for 0.1 s
    assert tracker.expected_wait("a") == pytest.approx(0.1)
    clock.t = 41.0  # a/d = 4.1, longer than anything recent: ends within the floor
    assert tracker.expected_wait("a") == pytest.approx(0.1)


def test_queued_requests_take_the_mean_ratio():
    tracker, clock = tracker_with_history([20.0, 5.0, 40.0, 5.0])
    tracker.start("a")
    tracker.start("a")  # queued: expected 10 · 1.75 = 17.5 s
    assert tracker.expected_wait("a") == pytest.approx(17.5 + 17.5)
    clock.t = 6.0  # the running one now ends at 30, the queued one at 47.5
    assert tracker.expected_wait("a") == pytest.approx(47.5 - 6.0)


def test_finished_requests_teach_the_ratios_and_a_long_runner_keeps_its_slot():
    clock = ManualClock()
    tracker = LoadTracker(clock)
    tracker.register("a", 1, ttft_s=10.0, s_per_token=0.0)
    t = tracker.start("a")
    clock.t = 5.0
    tracker.finish(t)  # took 5 s; estimate 10 → 7.5 (step 1/2)
    t = tracker.start("a")
    clock.t = 35.0
    tracker.finish(t)  # took 30 s; estimate 7.5 → 7.5 + 22.5/3 = 15 (step 1/3)
    assert tracker.estimate("a").expected() == pytest.approx(15.0)
    snap = tracker.snapshot()["a"]
    assert snap["recent_finishes"] == 2 and snap["recent_mean_service_s"] == pytest.approx(17.5)
    # ratios to the current prediction of 15 s: {1/3, 2}
    tracker.start("a")  # at t = 35, d = 15: ends at 35 + 15 · mean{1/3, 2} = 35 + 17.5
    assert tracker.expected_wait("a") == pytest.approx(17.5)
    clock.t = 45.0  # a/d = 2/3 > 1/3: a long one, expected to end at 35 + 15 · 2 = 65
    assert tracker.expected_wait("a") == pytest.approx(20.0)
    clock.t = 51.0  # past its prediction of 15 s (the old rule said: ends within 0.1 s)
    assert tracker.expected_wait("a") == pytest.approx(14.0)


def test_failed_calls_and_misqueued_finishes_teach_no_ratio():
    tracker, clock = ten_second_tracker(limit=1)
    first, second = tracker.start("a"), tracker.start("a")
    clock.t = 3.0
    tracker.finish(second)  # still "queued" in our model when it finished: its time includes a wait
    clock.t = 4.0
    tracker.finish(first, error=True)
    third = tracker.start("a")
    clock.t = 5.0
    tracker.finish(third, output_tokens=0)
    snap = tracker.snapshot()["a"]
    assert snap["observations"] == 2 and snap["recent_finishes"] == 1


def test_requests_in_flight_are_recosted_when_the_estimate_learns():
    tracker, clock = ten_second_tracker(limit=1)
    running, queued = tracker.start("a"), tracker.start("a")
    assert tracker.expected_wait("a") == pytest.approx(20.0)
    tracker.observe("a", 30.0, 0)  # measured elsewhere: estimate 10 → 20 (step 1/2), no ratio
    assert tracker.estimate("a").expected() == pytest.approx(20.0)
    # both are re-costed at 20 s: the running one ends at 20, the queued one at 40
    assert tracker.expected_wait("a") == pytest.approx(40.0)
    assert running.expected_s == queued.expected_s == pytest.approx(10.0)  # as predicted when sent


def test_per_request_lengths_are_kept_and_validated():
    clock = ManualClock()
    tracker = LoadTracker(clock)
    tracker.register("a", 1, ttft_s=1.0, s_per_token=0.1)
    tracker.start("a", expected_output_tokens=90)  # 10 s
    tracker.start("a", expected_output_tokens=40)  # 5 s
    tracker.observe("a", 10.0, 40, ttft_s=1.0)  # s_per_token 0.1 → (0.1 + 0.225) / 2 = 0.1625
    # re-costed with their own lengths: 1 + 90 · 0.1625 = 15.625, then 1 + 40 · 0.1625 = 7.5
    assert tracker.expected_wait("a") == pytest.approx(15.625 + 7.5)
    for bad in (-1, math.nan, math.inf, "many"):
        with pytest.raises(DataError):
            tracker.start("a", expected_output_tokens=bad)
    assert tracker.in_flight("a") == 2


def test_tail_window_keeps_only_recent_ratios():
    clock = ManualClock()
    tracker = LoadTracker(clock, tail_window=3)
    tracker.register("a", 1, ttft_s=1.0, s_per_token=0.0)
    for _ in range(5):
        t = tracker.start("a")
        clock.advance(1.0)
        tracker.finish(t, output_tokens=0)
    assert tracker.snapshot()["a"]["recent_finishes"] == 3
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ConfigError):
            LoadTracker(tail_window=bad)


def test_history_survives_the_state_dict_and_old_states_still_load():
    tracker, _ = tracker_with_history([5.0, 40.0])
    state = json.loads(json.dumps(tracker.state_dict()))
    assert state["candidates"]["a"]["service_history"] == [[5.0, None], [40.0, None]]
    restored = LoadTracker(ManualClock())
    restored.load_state_dict(state)
    restored.start("a")
    assert restored.expected_wait("a") == pytest.approx(22.5)  # 10 · mean{0.5, 4}
    del state["candidates"]["a"]["service_history"]  # saved before the residual-time rule
    older = LoadTracker(ManualClock())
    older.load_state_dict(state)
    older.start("a")
    assert older.expected_wait("a") == pytest.approx(10.0)
    for bad in ([[1.0, None], [-2.0, None]], [[1.0]], [[1.0, -3]], [5.0]):
        state["candidates"]["a"]["service_history"] = bad
        with pytest.raises(CheckpointError):
            LoadTracker().load_state_dict(state)


# ---------------------------------------------------------------------------------------------
# service-time estimate
# ---------------------------------------------------------------------------------------------


def test_estimate_first_step_is_halfway_then_converges():
    est = ServiceTimeEstimate(ttft_s=0.5, s_per_token=0.02)
    assert est.expected(100) == pytest.approx(2.5)
    est.observe(4.5, 100)  # scaled by 1.8, step 1/2 → halfway to 4.5
    assert est.expected(100) == pytest.approx(3.5)
    assert est.ttft_mean == pytest.approx(0.7) and est.spt_mean == pytest.approx(0.028)


def test_estimate_adapts_toward_observed_parts():
    est = ServiceTimeEstimate()
    rng = np.random.default_rng(1)
    for _ in range(300):
        tokens = int(rng.integers(50, 400))
        est.observe(1.0 + 0.04 * tokens + rng.normal(0, 0.05), tokens, ttft_s=1.0 + rng.normal(0, 0.05))
    assert est.ttft_mean == pytest.approx(1.0, abs=0.1)
    assert est.spt_mean == pytest.approx(0.04, rel=0.1)
    assert est.tokens_mean == pytest.approx(225, rel=0.3)
    assert est.std(100) < 0.5


def test_estimate_rejects_bad_observations_and_priors():
    est = ServiceTimeEstimate()
    for bad in (-1.0, math.nan, math.inf, "x"):
        with pytest.raises(DataError):
            est.observe(bad, 10)
    with pytest.raises(DataError):
        est.observe(1.0, -5)
    with pytest.raises(ConfigError):
        ServiceTimeEstimate(ttft_s=-1)
    with pytest.raises(ConfigError):
        ServiceTimeEstimate(alpha=0)
    assert est.n_obs == 0


def test_finish_teaches_the_estimate_but_not_on_error():
    clock = ManualClock()
    tracker = LoadTracker(clock)
    tracker.register("a", 4, ttft_s=1.0, s_per_token=0.0)
    t = tracker.start("a")
    clock.advance(5.0)
    tracker.finish(t, output_tokens=0)
    assert tracker.estimate("a").ttft_mean == pytest.approx(3.0)  # halfway from 1 to 5
    t = tracker.start("a")
    clock.advance(100.0)
    tracker.finish(t, output_tokens=0, error=True)
    assert tracker.estimate("a").ttft_mean == pytest.approx(3.0)
    assert tracker.estimate("a").n_obs == 1
    # new requests use the updated estimate
    assert tracker.start("a").expected_s == pytest.approx(3.0)


def test_queued_request_learns_service_time_from_its_slot():
    tracker, clock = ten_second_tracker(limit=1)
    first, second = tracker.start("a"), tracker.start("a")
    clock.advance(10.0)
    tracker.finish(first, output_tokens=0)  # served 10 s: estimate unchanged
    clock.advance(10.0)
    tracker.finish(second, output_tokens=0)  # waited 10, served 10
    assert tracker.estimate("a").ttft_mean == pytest.approx(10.0)


# ---------------------------------------------------------------------------------------------
# tickets, context managers, registration
# ---------------------------------------------------------------------------------------------


def test_finish_twice_is_a_noop():
    tracker, _ = ten_second_tracker()
    t = tracker.start("a")
    assert tracker.finish(t) is True
    assert tracker.finish(t) is False
    assert tracker.in_flight("a") == 0
    assert t.done


def test_body_that_raises_releases_its_slot():
    tracker, clock = ten_second_tracker()
    with pytest.raises(ValueError, match="boom"):
        with tracker.track("a") as t:
            assert tracker.in_flight("a") == 1
            clock.advance(50.0)
            t.output_tokens = 3
            raise ValueError("boom")
    assert tracker.in_flight("a") == 0
    assert tracker.estimate("a").n_obs == 0  # a failed call does not teach the estimate


def test_track_records_tokens_set_in_the_body():
    tracker, clock = ten_second_tracker()
    with tracker.track("a", expected_output_tokens=5) as t:
        clock.advance(6.0)
        t.output_tokens = 5
        t.ttft_s = 6.0
    est = tracker.estimate("a")
    assert tracker.in_flight("a") == 0 and est.n_obs == 1
    assert est.ttft_mean == pytest.approx(8.0)  # halfway from 10 to 6
    assert est.tokens_mean == pytest.approx((256 + 5) / 2)


async def test_atrack_body_that_raises_releases_its_slot():
    tracker, _ = ten_second_tracker()
    with pytest.raises(RuntimeError):
        async with tracker.atrack("a"):
            await asyncio.sleep(0)
            raise RuntimeError("provider down")
    assert tracker.in_flight("a") == 0


async def test_cancelled_task_releases_its_slot():
    tracker = LoadTracker()
    tracker.register("a", 2)
    entered = asyncio.Event()

    async def call() -> None:
        async with tracker.atrack("a"):
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(call())
    await asyncio.wait_for(entered.wait(), 5)
    assert tracker.in_flight("a") == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert tracker.in_flight("a") == 0
    assert tracker.estimate("a").n_obs == 0


def test_unregister_leaves_others_untouched():
    tracker, clock = ten_second_tracker(limit=1)
    tracker.register("b", 1, ttft_s=4.0, s_per_token=0.0)
    ta, tb = tracker.start("a"), tracker.start("b")
    tracker.observe("b", 6.0, 0)
    before = (tracker.in_flight("b"), tracker.expected_wait("b"), tracker.estimate("b").to_dict())
    tracker.unregister("a")
    assert "a" not in tracker and tracker.names == ["b"]
    assert (tracker.in_flight("b"), tracker.expected_wait("b"), tracker.estimate("b").to_dict()) == before
    assert tracker.finish(ta) is False  # the old ticket is a no-op
    tracker.register("a", 1)  # a fresh registration does not see the old ticket
    assert tracker.finish(ta) is False and tracker.in_flight("a") == 0
    assert tracker.finish(tb) is True
    with pytest.raises(UnknownCandidateError):
        tracker.unregister("zzz")


def test_register_validation():
    tracker = LoadTracker()
    tracker.register("a", 1)
    with pytest.raises(ConfigError):
        tracker.register("a", 2)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ConfigError):
            tracker.register("b", bad)
    with pytest.raises(ConfigError):
        tracker.register("b", 1, ttft_s=-0.1)
    with pytest.raises(UnknownCandidateError):
        tracker.start("zzz")
    assert tracker.names == ["a"]


# ---------------------------------------------------------------------------------------------
# concurrency
# ---------------------------------------------------------------------------------------------


def test_many_threads_never_lose_or_go_negative():
    tracker = LoadTracker()
    names = ["a", "b", "c"]
    for name in names:
        tracker.register(name, 4, ttft_s=0.001, s_per_token=0.0)
    n_threads, n_calls = 16, 500
    errors: list[BaseException] = []
    stop = threading.Event()
    seen_min = [0]

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for i in range(n_calls):
                name = rng.choice(names)
                if i % 3 == 0:
                    with tracker.track(name) as t:
                        t.output_tokens = rng.randint(0, 20)
                else:
                    t = tracker.start(name, rng.randint(1, 50))
                    if rng.random() < 0.1:
                        threading.Event().wait(0.0001)
                    tracker.finish(t, output_tokens=rng.randint(0, 20), error=rng.random() < 0.1)
                    tracker.finish(t)  # a double finish must not drive the count negative
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def watcher() -> None:
        try:
            while not stop.is_set():
                w = tracker.waits(names)
                assert np.all(w >= 0)
                seen_min[0] = min(seen_min[0], *(s["in_flight"] for s in tracker.snapshot().values()))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    watch = threading.Thread(target=watcher)
    watch.start()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    stop.set()
    watch.join()
    assert not errors
    assert seen_min[0] >= 0
    snap = tracker.snapshot()
    assert all(s["in_flight"] == 0 and s["running"] == 0 and s["queued"] == 0 for s in snap.values())
    # every successful call was learnt exactly once (errors were not): no lost updates
    total_obs = sum(s["observations"] for s in snap.values())
    assert 0.8 * n_threads * n_calls < total_obs <= n_threads * n_calls


async def test_many_asyncio_tasks_end_with_zero_in_flight():
    tracker = LoadTracker()
    tracker.register("a", 8, ttft_s=0.002, s_per_token=0.0)
    tracker.register("b", 2, ttft_s=0.002, s_per_token=0.0)
    peak = {"a": 0, "b": 0}
    rng = random.Random(3)

    async def call(i: int) -> None:
        name = "a" if i % 3 else "b"
        async with tracker.atrack(name, expected_output_tokens=10) as t:
            peak[name] = max(peak[name], tracker.in_flight(name))
            await asyncio.sleep(rng.uniform(0, 0.01))
            assert tracker.waits(["a", "b"]).min() >= 0
            if i % 50 == 0:
                raise ValueError("failed call")
            t.output_tokens = 10

    results = await asyncio.gather(*(call(i) for i in range(500)), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 10 and all(isinstance(f, ValueError) for f in failures)
    assert tracker.in_flight("a") == 0 and tracker.in_flight("b") == 0
    assert peak["a"] > 8 and peak["b"] > 2  # tasks really overlapped beyond the limits
    assert tracker.estimate("a").n_obs + tracker.estimate("b").n_obs == 490


# ---------------------------------------------------------------------------------------------
# persistence
# ---------------------------------------------------------------------------------------------


def test_state_dict_round_trip_through_json():
    clock = ManualClock()
    tracker = LoadTracker(clock)
    tracker.register("a", 3, ttft_s=0.3, s_per_token=0.01)
    tracker.register("b", 1)
    tracker.observe("a", 2.0, 100)
    tracker.observe("a", 1.5, 80, ttft_s=0.2)
    tracker.start("a")  # in flight: not persisted
    text = json.dumps(tracker.state_dict())
    restored = LoadTracker(clock)
    restored.register("c", 5)  # names absent from the state stay
    restored.load_state_dict(json.loads(text))
    assert restored.names == ["c", "a", "b"]
    assert restored.in_flight("a") == 0
    assert restored.estimate("a").to_dict() == tracker.estimate("a").to_dict()
    assert restored.state_dict()["candidates"]["a"] == tracker.state_dict()["candidates"]["a"]
    json.dumps(restored.snapshot())  # the snapshot is JSON-serialisable too


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"version": 99, "candidates": {}},
        {"version": 1, "candidates": {"a": {"max_concurrency": 0, "estimate": {}}}},
        {"version": 1, "candidates": {"a": {"max_concurrency": 1}}},
        {"version": 1, "candidates": ["a"]},
    ],
)
def test_malformed_state_raises_checkpoint_error(state):
    tracker = LoadTracker()
    tracker.register("x", 1)
    with pytest.raises(CheckpointError):
        tracker.load_state_dict(state)
    assert tracker.names == ["x"]


def test_other_processes_requests_take_slots_and_time_ours_from_when_it_gets_one():
    """With another worker's request holding the only slot, ours queues; it is timed from when that
    request ends (a sync shows it gone), not from when it was sent."""
    tracker, clock = ten_second_tracker(limit=1)
    tracker.set_remote({"a": [(2.0, None)]})  # started 2 s ago elsewhere: 8 s left of a 10-s request
    assert tracker.expected_wait("a") == pytest.approx(8.0)
    ticket = tracker.start("a")
    assert tracker.in_flight("a") == 2
    assert tracker.expected_wait("a") == pytest.approx(18.0)  # behind theirs and ours
    clock.advance(8.0)
    tracker.set_remote({})  # theirs ended: ours gets the slot now
    clock.advance(10.0)
    tracker.finish(ticket, output_tokens=None)
    history = tracker.state_dict()["candidates"]["a"]["service_history"]
    assert history[-1][0] == pytest.approx(10.0)  # not 18 s: the wait behind the other worker is not service
    tracker.set_remote({"a": [(0.0, None), (0.0, None)], "unknown": [(1.0, None)]})  # unknown names ignored
    assert tracker.in_flight("a") == 2
