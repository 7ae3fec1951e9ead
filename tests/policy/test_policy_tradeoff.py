from __future__ import annotations

import numpy as np
import pytest

from mixllm_router import ConfigError
from mixllm_router.policy.meta_score import ScoreTerms, choose, meta_scores
from mixllm_router.policy.tradeoff import TradeoffCurve, default_cost_weights, pick, sweep


def test_meta_score_combines_every_term():
    terms = ScoreTerms(
        quality=np.array([[0.8, 0.6]]), cost=np.array([[0.01, 0.001]]), uncertainty=np.array([[0.1, 0.5]]),
        penalty=np.array([[2.0, 0.0]]), feedback=np.array([[0.3, -0.2]]), confidence=np.array([[2.0, 1.0]]),
    )
    s = meta_scores(terms, cost_weight=10, exploration=0.2, latency_weight=0.1, feedback_weight=0.5)
    expected = np.array([[0.8 - 0.1 + 0.02 - 0.2 + 0.3, 0.6 - 0.01 + 0.1 - 0.0 - 0.1]])
    np.testing.assert_allclose(s, expected)
    masked = meta_scores(terms, cost_weight=10, eligible=np.array([[False, True]]))
    assert masked[0, 0] == -np.inf and choose(masked)[0] == 1


def test_meta_score_validation():
    with pytest.raises(ConfigError):
        meta_scores(ScoreTerms(np.zeros((1, 2)), np.zeros((1, 2))), cost_weight=-1)
    with pytest.raises(ConfigError):
        ScoreTerms(np.zeros((1, 2)), np.zeros((2, 2)))


def test_ties_go_to_the_cheaper():
    assert choose(np.array([[0.5, 0.5, 0.1]]), tie_break=np.array([[3.0, 1.0, 0.0]]))[0] == 1
    assert pick(np.array([[0.5, 0.5]]), np.array([[2.0, 1.0]]), 0.0)[0] == 1


def test_sweep_on_a_hand_made_case():
    # 4 queries, 2 models: "big" always right at cost 1, "small" right on half at cost 0.1
    q_true = np.array([[1, 1], [1, 1], [1, 0], [1, 0]], dtype=float)
    c_true = np.array([[1, 0.1]] * 4)
    curve = sweep(q_true, c_true, q_true, c_true, reference=0, cost_weights=np.array([0.0, 0.5, 100.0]))
    # λ=0: perfect predictions tie on rows 0-1 and take the cheaper → cost (0.1+0.1+1+1)/4 = 0.55
    np.testing.assert_allclose(curve.cost_share, [0.55, 0.55, 0.1])
    np.testing.assert_allclose(curve.quality_share, [1.0, 1.0, 0.5])
    assert curve.quality_at(0.1) == 0.5 and curve.quality_at(0.6) == 1.0 and curve.quality_at(0.05) == 0.0
    assert curve.cost_to_reach(0.9725) == pytest.approx(0.55)
    assert curve.auc() == pytest.approx((45 * 0.5 + 46 * 1.0) / 101)
    assert curve.cost_weight_for_share(0.2) == 100.0 and curve.cost_weight_for_share(0.01) == 100.0


def test_curve_summary_and_envelope():
    curve = TradeoffCurve(np.array([0, 1, 2.0]), np.array([0.9, 0.3, 0.5]), np.array([1.0, 0.8, 0.7]))
    x, y = curve.envelope()
    np.testing.assert_allclose(x, [0.3, 0.5, 0.9])
    np.testing.assert_allclose(y, [0.8, 0.8, 1.0])
    assert curve.cost_to_reach(1.2) == float("inf")
    assert set(curve.summary()) == {"auc", "quality_at_10", "quality_at_25", "cost_to_97_25"}


def test_default_grid_scales_with_cost():
    grid = default_cost_weights(0.01, n=50)
    assert grid[0] == 0 and len(grid) == 50 and np.all(np.diff(grid) > 0)
    assert grid[1] == pytest.approx(0.1) and grid[-1] == pytest.approx(1e5)
