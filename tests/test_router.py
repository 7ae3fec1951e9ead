from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mixllm_router import (
    Candidate,
    ConfigError,
    DataError,
    MixLLMRouter,
    NotFittedError,
    RoutingDataset,
    UnknownCandidateError,
)

MATH_Q = "Solve this integral problem: compute the integral value step by step."
POEM_Q = "Write a sonnet poem about the sea, with a sonnet rhyme scheme."


def test_routes_each_domain_to_its_specialist(fitted_router):
    assert fitted_router.route(MATH_Q, cost_weight=0).chosen == "math-pro"
    assert fitted_router.route(POEM_Q, cost_weight=0).chosen == "poet"


def test_high_cost_weight_picks_the_cheap_candidate(fitted_router):
    assert fitted_router.route(MATH_Q, cost_weight=1e6).chosen == "cheap"


def test_decision_explains_every_candidate(fitted_router):
    decision = fitted_router.route(MATH_Q, cost_weight=10)
    assert {s.name for s in decision.scores} == {"math-pro", "poet", "cheap"}
    chosen = decision.score_of(decision.chosen)
    assert chosen.score == max(s.score for s in decision.scores)
    for s in decision.scores:
        assert s.score == pytest.approx(s.quality - 10 * s.cost_usd + fitted_router.config.exploration * s.uncertainty)
        assert 0 <= s.quality <= 1 and s.cost_usd > 0 and s.uncertainty > 0
    assert decision.ranking[0] == decision.chosen and set(decision.ranking) == {"math-pro", "poet", "cheap"}
    text = decision.explain()
    assert "* math-pro" in text
    json.dumps(decision.to_dict())  # plain JSON


def test_route_batch_matches_route(fitted_router):
    batch = fitted_router.route_batch([MATH_Q, POEM_Q], cost_weight=5)
    single = [fitted_router.route(q, cost_weight=5) for q in (MATH_Q, POEM_Q)]
    assert [d.chosen for d in batch] == [d.chosen for d in single]
    for a, b in zip(batch, single):
        assert [s.score for s in a.scores] == pytest.approx([s.score for s in b.scores])
    assert len({d.decision_id for d in batch + single}) == 4


def test_cost_share_is_calibrated_and_monotone(fitted_router):
    cal = fitted_router.calibration_
    assert cal is not None
    lam_low = fitted_router.resolve_cost_weight(cost_share=0.15)
    lam_high = fitted_router.resolve_cost_weight(cost_share=1.0)
    assert lam_low >= lam_high
    # a small budget keeps to the cheap candidate, a full budget pays for the specialist
    assert fitted_router.route(MATH_Q, cost_share=0.12).chosen == "cheap"
    assert fitted_router.route(MATH_Q, cost_share=1.0).chosen == "math-pro"


def test_max_cost_and_candidate_restriction(fitted_router):
    decision = fitted_router.route(MATH_Q, cost_weight=0, max_cost_usd=0.005)
    assert decision.chosen == "cheap"
    assert "max_cost_usd" in decision.score_of("math-pro").reason
    assert fitted_router.route(MATH_Q, cost_weight=0, max_cost_usd=0.0).chosen == "cheap"  # cheapest stays
    assert fitted_router.route(MATH_Q, cost_weight=0, candidates=["poet"]).chosen == "poet"
    with pytest.raises(UnknownCandidateError):
        fitted_router.route(MATH_Q, candidates=["nope"])


def test_bad_arguments(fitted_router):
    with pytest.raises(ConfigError):
        fitted_router.route(MATH_Q, cost_weight=1, cost_share=0.2)
    with pytest.raises(ConfigError):
        fitted_router.route(MATH_Q, cost_weight=-1)
    with pytest.raises(TypeError):
        fitted_router.route(["not", "a", "string"])  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        MixLLMRouter(cost_weight=-3)
    with pytest.raises(ConfigError):
        MixLLMRouter(quality_model="forest")


def test_not_fitted(hashing_encoder):
    router = MixLLMRouter(encoder=hashing_encoder)
    with pytest.raises(NotFittedError):
        router.route("hi")
    with pytest.raises(NotFittedError):
        router.save("/tmp/never")


def test_fit_with_declared_candidates_and_prices(synthetic_data, hashing_encoder):
    pool = [Candidate(name="math-pro", input_price=10, output_price=30), Candidate(name="cheap", input_price=1, output_price=2)]
    with pytest.warns(UserWarning, match="not candidates"):
        router = MixLLMRouter(pool, encoder=hashing_encoder).fit(synthetic_data)
    assert router.candidate_names == ["math-pro", "cheap"]
    missing = MixLLMRouter(["math-pro", "ghost"], encoder=hashing_encoder)
    with pytest.raises(DataError, match="ghost"):
        missing.fit(synthetic_data)


def test_token_cost_mode_uses_prices(hashing_encoder):
    rows = []
    for i in range(40):
        q = f"question {i} " + "word " * (i % 7)
        for name in ("a", "b"):
            rows.append({"query": q, "model": name, "quality": float(i % 2), "cost": 0.0,
                         "input_tokens": 10, "output_tokens": 100 if name == "a" else 1000})
    data = RoutingDataset.from_records(rows)
    pool = [Candidate(name="a", input_price=1.0, output_price=2.0), Candidate(name="b", input_price=1.0, output_price=2.0)]
    router = MixLLMRouter(pool, encoder=hashing_encoder)
    router.fit(data, calibrate=False)
    preds = router.predict(["question 3 word word"])
    tokens = preds.input_tokens[0]
    # predicted output tokens ≈ 100 and 1000: cost = (p_in·t_in + p_out·o) / 1e6
    assert preds.cost[0, 0] == pytest.approx((1.0 * tokens + 2.0 * 100) / 1e6, rel=0.1)
    assert preds.cost[0, 1] == pytest.approx((1.0 * tokens + 2.0 * 1000) / 1e6, rel=0.1)


def test_remove_candidate_leaves_others_untouched(fitted_router):
    before = {k: v.copy() for k, v in fitted_router.predictors_["math-pro"].state_arrays().items()}
    fitted_router.remove_candidate("poet")
    assert fitted_router.candidate_names == ["math-pro", "cheap"]
    after = fitted_router.predictors_["math-pro"].state_arrays()
    for key, value in before.items():
        np.testing.assert_array_equal(value, after[key])
    assert fitted_router.route(POEM_Q, cost_weight=0).chosen in {"math-pro", "cheap"}
    with pytest.raises(UnknownCandidateError):
        fitted_router.remove_candidate("poet")


def test_save_load_in_fresh_process_gives_identical_decisions(fitted_router, tmp_path):
    queries = [MATH_Q, POEM_Q, "Compute the derivative of x squared", "A haiku about rain"]
    expected = [[round(s.score, 12) for s in d.scores] for d in fitted_router.route_batch(queries, cost_share=0.5)]
    fitted_router.save(tmp_path / "ckpt")
    script = textwrap.dedent(f"""
        import json
        from mixllm_router import MixLLMRouter
        from mixllm_router.encoders import HashingEncoder
        router = MixLLMRouter.load({str(tmp_path / 'ckpt')!r}, encoder=HashingEncoder())
        ds = router.route_batch({queries!r}, cost_share=0.5)
        print(json.dumps([[round(s.score, 12) for s in d.scores] for d in ds]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected


def test_load_keeps_config_and_calibration(fitted_router, tmp_path, hashing_encoder):
    fitted_router.save(tmp_path / "c")
    loaded = MixLLMRouter.load(tmp_path / "c", encoder=hashing_encoder)
    assert loaded.config == fitted_router.config
    assert loaded.candidate_names == fitted_router.candidate_names
    np.testing.assert_array_equal(loaded.calibration_.cost_share, fitted_router.calibration_.cost_share)
    assert loaded.reference_ == fitted_router.reference_


def test_sparse_logs_calibrate_cost_share_on_predicted_costs(hashing_encoder):
    """Production logs: every query went to ONE model. No query can score a λ on recorded costs, so
    cost_share is mapped on the predicted costs of the training queries (a warning says so), and
    the handle still works: a tiny share picks the cheap model, a full share the strong one."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(120):
        model = ["strong", "cheap"][i % 2]
        topic = ["algebra proof", "sonnet rhyme"][(i // 2) % 2]
        p = 0.9 if model == "strong" else (0.6 if topic == "sonnet rhyme" else 0.2)
        rows.append({"query": f"{topic} question {i}", "model": model, "quality": float(rng.random() < p),
                     "cost": 0.02 if model == "strong" else 0.001})
    with pytest.warns(UserWarning, match="predicted costs"):
        router = MixLLMRouter(encoder=hashing_encoder, prior_strength=1.0).fit(RoutingDataset.from_records(rows))
    assert router.calibration_ is not None
    assert router.route("algebra proof question 7", cost_share=0.01).chosen == "cheap"
    assert router.route("algebra proof question 7", cost_share=1.0).chosen == "strong"
    unfitted = MixLLMRouter(encoder=hashing_encoder).fit(RoutingDataset.from_records(rows[:40]), calibrate=False)
    with pytest.raises(NotFittedError, match="calibrated"):
        unfitted.route("q1", cost_share=0.3)


def test_thompson_exploration_samples_around_the_greedy_choice(synthetic_data, hashing_encoder):
    def routes(**overrides):
        router = MixLLMRouter(encoder=hashing_encoder, prior_strength=1.0, calibration_folds=3, **overrides)
        router.fit(synthetic_data)
        return [d.chosen for d in router.route_batch([MATH_Q] * 300, cost_weight=0)]

    greedy = routes()
    assert set(greedy) == {"math-pro"}
    assert routes(exploration_policy="thompson", thompson_scale=0.0) == greedy
    sampled = routes(exploration_policy="thompson", thompson_scale=1.0)
    assert sampled.count("math-pro") > 150  # still mostly the best candidate
    assert len(set(sampled)) > 1  # but the others get tried
    assert routes(exploration_policy="thompson", thompson_scale=1.0) == sampled  # seeded
    with pytest.raises(ConfigError):
        MixLLMRouter(exploration_policy="epsilon")


def test_recalibrate_holds_the_cost_share_on_new_queries(fitted_router, synthetic_data):
    """After recalibrate, the λ for a share spends about that share of the reference's predicted cost
    on the queries it was solved on, with no outcome labels."""
    from mixllm_router.policy.tradeoff import pick

    queries = synthetic_data.queries[::2]
    fitted_router.recalibrate(queries)
    preds = fitted_router.predict(queries)
    ref = preds.names.index(fitted_router.reference_)
    rows = np.arange(len(queries))
    for share in (0.2, 0.5, 0.9):
        lam = fitted_router.resolve_cost_weight(cost_share=share)
        chosen = pick(preds.quality, preds.cost, lam)
        spent = preds.cost[rows, chosen].sum() / preds.cost[:, ref].sum()
        assert spent <= share + 1e-9
    # a larger share buys more quality (or the same)
    assert fitted_router.resolve_cost_weight(cost_share=0.9) <= fitted_router.resolve_cost_weight(cost_share=0.2)
    with pytest.raises(DataError, match="at least 2"):
        fitted_router.recalibrate(queries[:1])


def test_knn_prediction_in_blocks_equals_one_pass(synthetic_data, hashing_encoder, monkeypatch):
    """Large data is predicted in row blocks to bound memory; the blocks change nothing beyond the
    last bit of a matrix product."""
    import mixllm_router.model as model_module

    router = MixLLMRouter(config={"quality_model": "ridge+knn", "knn_k": 5}, encoder=hashing_encoder)
    router.fit(synthetic_data, calibrate=False)
    queries = synthetic_data.queries
    whole = router.predict(queries)
    monkeypatch.setattr(model_module, "_SIMILARITY_BLOCK", 3 * router.bank_.shape[0] + 1)  # 3 rows a block
    blocks = router.predict(queries)
    assert len(queries) > 3
    np.testing.assert_allclose(blocks.quality, whole.quality, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(blocks.cost, whole.cost, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(blocks.uncertainty, whole.uncertainty, rtol=1e-6)  # from a float32 A⁻¹


def test_tied_costs_make_the_best_model_the_reference():
    """Equal prices: cost_share is a share of the best of the costliest models, not of the first name."""
    from mixllm_router.encoders import HashingEncoder

    rows = []
    for i in range(30):
        for model, quality in (("a-weak", 0.2), ("b-strong", 0.9), ("c-mid", 0.5)):
            rows.append({"query": f"question number {i}", "model": model, "quality": quality, "cost": 0.01})
    router = MixLLMRouter(encoder=HashingEncoder(dim=32), calibration_folds=3)
    router.fit(RoutingDataset.from_records(rows))
    assert router.reference_ == "b-strong"
