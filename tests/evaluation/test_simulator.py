"""Tests for mixllm_router.evaluation.simulator: the query-stream simulation under load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mixllm_router import MixLLMRouter
from mixllm_router._exceptions import ConfigError, DataError
from mixllm_router.data import RoutingDataset
from mixllm_router.encoders import HashingEncoder
from mixllm_router.evaluation.simulator import (
    FALLBACK_PROFILE,
    Burst,
    LatencyProfile,
    Simulator,
    default_profile,
    poisson_arrivals,
)
from mixllm_router.policy.load import LatencySettings, LoadTracker

ROUTERBENCH = Path(__file__).parents[2].parent / "shared" / "data" / "routerbench"

# A service time that is exactly `ttft_s` whatever the output length: no noise, "instant" tokens.
FIXED_2S = LatencyProfile(ttft_s=2.0, tokens_per_s=1e9, noise_sigma=0.0)


def _words(rng: np.random.Generator, i: int) -> str:
    vocab = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi".split()
    return " ".join(rng.choice(vocab, 6)) + f" number {i}"


@pytest.fixture(scope="module")
def solo() -> tuple[MixLLMRouter, RoutingDataset]:
    """One candidate, three queries, no response column (output tokens = the default)."""
    data = RoutingDataset.from_records(
        {"query": f"question {i}", "model": "solo", "quality": 1.0, "cost": 0.001} for i in range(3)
    )
    router = MixLLMRouter(encoder=HashingEncoder(dim=32), quality_model="ridge").fit(data, calibrate=False)
    return router, data


@pytest.fixture(scope="module")
def pair() -> tuple[MixLLMRouter, RoutingDataset]:
    """'big' answers 95% right at 10x the cost of 'small' (70% right): at λ=1 the router wants big."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(150):
        q = _words(rng, i)
        records.append({"query": q, "model": "big", "quality": float(rng.random() < 0.95), "cost": 0.01})
        records.append({"query": q, "model": "small", "quality": float(rng.random() < 0.7), "cost": 0.001})
    data = RoutingDataset.from_records(records)
    router = MixLLMRouter(encoder=HashingEncoder(dim=64), quality_model="ridge").fit(data, calibrate=False)
    return router, data


def congested(router: MixLLMRouter, data: RoutingDataset, **kw: object) -> Simulator:
    """1.5 queries/s; each candidate serves 2 at once for 2 s (1 query/s): big alone overflows."""
    return Simulator(router, data, rate_per_s=1.5, n_queries=150, concurrency=2,
                     profiles={"big": FIXED_2S, "small": FIXED_2S}, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# hand-checkable scenarios
# ---------------------------------------------------------------------------------------------


def test_three_arrivals_at_once_wait_0_10_20(solo):
    router, data = solo
    ten = LatencyProfile(ttft_s=10.0, tokens_per_s=1.0, noise_sigma=0.0)
    sim = Simulator(router, data, arrivals=[0.0, 0.0, 0.0], concurrency=1, profiles={"solo": ten},
                    default_output_tokens=0, warm_start=True)
    rep = sim.run()
    np.testing.assert_allclose(rep.wait_s, [0.0, 10.0, 20.0])
    np.testing.assert_allclose(rep.end_s, [10.0, 20.0, 30.0])
    # the router saw the queue grow: its W for each decision, from the tracker on the virtual clock
    np.testing.assert_allclose(rep.expected_wait_s[:, 0], [0.0, 10.0, 20.0])
    # load sampled every second: 3 in flight (2 queued) until t=10, then 2, 1, 0
    at = {t: (rep.load[k, 0], rep.queued[k, 0]) for k, t in enumerate(rep.load_times)}
    assert at[0.0] == (3, 2) and at[9.0] == (3, 2) and at[10.0] == (2, 1) and at[20.0] == (1, 0) and at[30.0] == (0, 0)
    s = rep.summary()
    assert s["mean_wait_s"] == pytest.approx(10.0) and s["max_wait_s"] == pytest.approx(20.0)
    # τ = 30 by default: nobody waited longer; with τ = 15 one of three did
    assert rep.past_tolerance_pct == 0.0
    rep15 = sim.run(latency={"tolerance_s": 15.0})
    assert rep15.past_tolerance_pct == pytest.approx(100 / 3)


def test_a_request_ending_at_an_arrival_frees_its_slot_first(solo):
    router, data = solo
    ten = LatencyProfile(ttft_s=10.0, tokens_per_s=1.0, noise_sigma=0.0)
    sim = Simulator(router, data, arrivals=[0.0, 10.0, 15.0], concurrency=1, profiles={"solo": ten},
                    default_output_tokens=0)
    rep = sim.run()
    np.testing.assert_allclose(rep.wait_s, [0.0, 0.0, 5.0])
    assert rep.expected_wait_s[1, 0] == 0.0  # the slot freed at t=10 was seen free at t=10
    assert rep.expected_wait_s[2, 0] > 0.0  # at t=15 the router knew the slot was busy


def test_service_time_from_response_length_and_profile(solo):
    router, _ = solo
    data = RoutingDataset.from_records(
        {"query": f"question {i}", "model": "solo", "quality": 1.0, "cost": 0.001, "response": "x" * (400 * (i + 1))}
        for i in range(3)
    )
    prof = LatencyProfile(ttft_s=1.0, tokens_per_s=50.0, noise_sigma=0.0)
    sim = Simulator(router, data, arrivals=[0.0, 100.0, 200.0], concurrency=1, profiles={"solo": prof})
    rep = sim.run()
    by_query = dict(zip(rep.query_ids, rep.end_s - rep.start_s))
    tokens = {qid: 100.0 * (i + 1) for i, qid in enumerate(data.query_ids)}  # 400 chars / 4 per token
    for qid, service in by_query.items():
        assert service == pytest.approx(1.0 + tokens[qid] / 50.0)


def test_the_tracker_learns_service_times_from_finished_requests(solo):
    router, data = solo
    slow = LatencyProfile(ttft_s=40.0, tokens_per_s=1.0, noise_sigma=0.0)
    sim = Simulator(router, data, arrivals=[0.0, 41.0, 41.5], concurrency=1, profiles={"solo": slow},
                    default_output_tokens=0)
    rep = sim.run()
    # the first request (40 s) finished at t=40; the second, sent at t=41, is expected to take as long
    # as the tracker has learnt from that one observation, far more than its generic prior of ~5.6 s
    assert rep.expected_wait_s[2, 0] > 10.0


# ---------------------------------------------------------------------------------------------
# determinism, arrivals, profiles
# ---------------------------------------------------------------------------------------------


def test_same_seed_same_run_other_seed_other_run(pair):
    router, data = pair
    sim = congested(router, data)
    a, b, c = sim.run(seed=3, cost_weight=1.0), sim.run(seed=3, cost_weight=1.0), sim.run(seed=4, cost_weight=1.0)
    for field in ("arrival_s", "start_s", "end_s", "chosen", "expected_wait_s", "load"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.query_ids == b.query_ids and a.summary() == b.summary()
    assert not np.array_equal(a.arrival_s, c.arrival_s)


def test_run_restores_the_routers_tracker_and_config(pair):
    router, data = pair
    tracker, config = router.load_tracker, router.config
    congested(router, data).run(latency=LatencySettings(weight=1.0), cost_weight=1.0)
    assert router.load_tracker is tracker and router.config is config


def test_poisson_arrivals_rate_and_bursts():
    rng = np.random.default_rng(1)
    t = poisson_arrivals(20_000, 10.0, rng)
    assert np.all(np.diff(t) >= 0) and t.size == 20_000
    assert np.mean(np.diff(t)) == pytest.approx(0.1, rel=0.03)
    t = poisson_arrivals(20_000, 10.0, rng, [Burst(start_s=100.0, duration_s=50.0, rate_per_s=30.0)])
    in_burst = np.sum((t >= 100.0) & (t < 150.0))
    assert in_burst == pytest.approx(40.0 * 50.0, rel=0.1)  # base 10/s + burst 30/s
    assert np.sum((t >= 300.0) & (t < 350.0)) == pytest.approx(10.0 * 50.0, rel=0.2)


def test_bursts_parse_and_reject_bad_text():
    assert Burst.parse("60:20:15") == Burst(start_s=60, duration_s=20, rate_per_s=15)
    for bad in ("1:2", "a:b:c", "1:0:3", "-1:2:3"):
        with pytest.raises(ConfigError):
            Burst.parse(bad)


def test_default_profiles_by_name_pattern():
    assert default_profile("mistralai/mixtral-8x7b-chat") == default_profile("x-8x7b")
    assert default_profile("mistralai/mixtral-8x7b-chat") != default_profile("mistralai/mistral-7b-chat")
    assert default_profile("claude-instant-v1").tokens_per_s > default_profile("claude-v2").tokens_per_s
    assert default_profile("gpt-4-1106-preview").tokens_per_s < default_profile("gpt-3.5-turbo-1106").tokens_per_s
    assert default_profile("my-own-model") == FALLBACK_PROFILE


def test_bad_scenarios_raise_our_errors(pair, solo):
    router, data = pair
    with pytest.raises(ConfigError):
        Simulator(router, data, concurrency=0)
    with pytest.raises(ConfigError):
        Simulator(router, data, concurrency={"nobody": 2})
    with pytest.raises(ConfigError):
        Simulator(router, data, profiles={"nobody": FIXED_2S})
    with pytest.raises(ConfigError):
        Simulator(router, data, rate_per_s=0.0)
    with pytest.raises(ConfigError):
        Simulator(router, data, arrivals=[0.0, -1.0])
    with pytest.raises(ConfigError):
        congested(router, data).run(latency={"xi": 2.0})
    with pytest.raises(DataError):
        Simulator(solo[0], data)  # 'solo' has no outcomes in this data


# ---------------------------------------------------------------------------------------------
# the latency penalty and the hard limit under congestion
# ---------------------------------------------------------------------------------------------


def test_penalty_cuts_waits_past_tolerance_in_a_congested_stream(pair):
    router, data = pair
    sim = congested(router, data)
    tau = 5.0
    plain = sim.run(latency=LatencySettings(weight=0.0, hard_limit=False, tolerance_s=tau), cost_weight=1.0)
    penal = sim.run(latency=LatencySettings(weight=1.0, xi=0.5, hard_limit=False, tolerance_s=tau), cost_weight=1.0)
    # unpenalised: everything goes to 'big', whose queue grows without bound
    assert plain.candidate_shares()["big"] == 100.0
    assert plain.past_tolerance_pct > 50.0
    # penalised: the overflow goes to 'small' and (almost) nobody waits past τ
    assert penal.past_tolerance_pct < 0.1 * plain.past_tolerance_pct
    assert penal.summary()["p95_wait_s"] < tau
    assert 0.0 < penal.candidate_shares()["small"] < 100.0
    assert penal.cost_pct < plain.cost_pct


def test_hard_limit_is_respected_and_without_it_is_not(pair):
    router, data = pair
    sim = congested(router, data)
    tau = 5.0

    def violations(hard: bool) -> int:
        rep = sim.run(latency=LatencySettings(weight=0.0, hard_limit=hard, tolerance_s=tau), cost_weight=1.0)
        w = rep.expected_wait_s
        chosen_w = w[np.arange(len(w)), rep.chosen]
        return int(np.sum((chosen_w > tau) & ~np.all(w > tau, axis=1)))

    assert violations(hard=True) == 0
    assert violations(hard=False) > 0  # so the check above can fail


def test_report_json_and_plot(pair, tmp_path):
    router, data = pair
    rep = congested(router, data).run(latency=LatencySettings(weight=0.1), cost_weight=1.0)
    blob = json.loads(json.dumps(rep.to_json()))
    assert set(blob["load"]) == {"big", "small"} and len(blob["load_times_s"]) == len(blob["load"]["big"])
    assert sum(blob["candidate_shares_pct"].values()) == pytest.approx(100.0)
    assert "waited longer than τ" in rep.table()
    png = rep.plot(tmp_path / "load.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_shared_tracker_is_not_touched(pair):
    router, data = pair
    outside = LoadTracker()
    router.load_tracker, saved = outside, router.load_tracker
    try:
        congested(router, data).run(cost_weight=1.0)
        assert all(outside.in_flight(n) == 0 for n in outside.names)
    finally:
        router.load_tracker = saved


# ---------------------------------------------------------------------------------------------
# RouterBench scale (slow)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def routerbench_dir() -> Path:
    if not ROUTERBENCH.is_dir():
        pytest.skip(f"RouterBench data not found at {ROUTERBENCH}")
    return ROUTERBENCH


@pytest.mark.slow
def test_penalty_on_routerbench_test_stream(routerbench_dir):
    from mixllm_router.data import load_routerbench

    with pytest.warns(UserWarning):
        train = load_routerbench(routerbench_dir, split="train")
        test = load_routerbench(routerbench_dir, split="test")
    router = MixLLMRouter(encoder=HashingEncoder(), quality_model="ridge",
                          reference_model="gpt-4-1106-preview").fit(train, calibrate=False)
    gpt4 = "gpt-4-1106-preview"
    sim = Simulator(router, test, rate_per_s=2.0, n_queries=400, concurrency={gpt4: 2}, reference=gpt4)
    plain = sim.run(latency=LatencySettings(weight=0.0, hard_limit=False), cost_weight=0.0)
    penal = sim.run(latency=LatencySettings(weight=1.0, xi=0.5, hard_limit=False), cost_weight=0.0)
    assert plain.past_tolerance_pct > 20.0  # GPT-4 demand ≈ 2.5x its capacity here (measured: ~80% past τ)
    assert penal.past_tolerance_pct < 0.25 * plain.past_tolerance_pct  # measured: ~5% (8.5% before the residual-time rule)
    assert penal.quality_pct > plain.quality_pct - 5.0


# ---------------------------------------------------------------------------------------------
# `mixllm simulate`
# ---------------------------------------------------------------------------------------------


def test_cli_simulate_end_to_end(pair, tmp_path, capsys):
    from mixllm_router.cli.main import main

    _, data = pair
    csv = tmp_path / "outcomes.csv"
    data.to_csv(csv)
    router = MixLLMRouter(encoder=HashingEncoder(), quality_model="ridge").fit(data, calibrate=False)
    router.save(tmp_path / "router")
    out_json = tmp_path / "sim.json"
    code = main([
        "simulate", "--router", str(tmp_path / "router"), "--data", str(csv), "--encoder", "hashing",
        "--rate", "1.5", "--n-queries", "120", "--concurrency", "3", "--concurrency", "big=2",
        "--profile", "big=2:1e9:0", "--profile", "small=2:1e9", "--cost-weight", "1",
        "--beta", "1", "--xi", "0.5", "--tau", "5", "--no-hard-limit", "--burst", "20:10:2",
        "--json", str(out_json),
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "waited longer than τ" in printed and "β=1" in printed and "hard limit off" in printed
    blob = json.loads(out_json.read_text())
    assert blob["meta"]["limits"] == {"big": 2, "small": 3}
    assert blob["latency"]["weight"] == 1.0 and blob["latency"]["tolerance_s"] == 5.0
    assert blob["meta"]["profiles"]["big"]["noise_sigma"] == 0.0
    assert blob["summary"]["queries"] == 120


def test_cli_simulate_reports_bad_options(pair, tmp_path, capsys):
    from mixllm_router.cli.main import main

    _, data = pair
    csv = tmp_path / "outcomes.csv"
    data.to_csv(csv)
    MixLLMRouter(encoder=HashingEncoder(), quality_model="ridge").fit(data, calibrate=False).save(tmp_path / "r")
    base = ["simulate", "--router", str(tmp_path / "r"), "--data", str(csv), "--encoder", "hashing"]
    for bad in (["--concurrency", "big=two"], ["--profile", "big=fast"], ["--burst", "1:2"], ["--xi", "3"],
                ["--concurrency", "nobody=2"]):
        assert main(base + bad) == 2
        assert "mixllm: error:" in capsys.readouterr().err
