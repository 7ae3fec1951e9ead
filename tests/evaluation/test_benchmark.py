from __future__ import annotations

import json

import numpy as np
import pytest
from synthetic import make_synthetic

from mixllm_router import RoutingDataset
from mixllm_router.evaluation import evaluate, plot_tradeoff
from mixllm_router.evaluation.baselines import knn_baseline, ridge_baseline
from mixllm_router.evaluation.tuning import tune


@pytest.fixture(scope="module")
def split_data():
    train = RoutingDataset.from_records(make_synthetic(60, seed=0))
    test = RoutingDataset.from_records(make_synthetic(20, seed=1))
    return train, test


def test_evaluate_reports_router_baselines_and_oracle(split_data, tmp_path):
    from mixllm_router.encoders import HashingEncoder

    train, test = split_data
    report = evaluate(train, test, config={"prior_strength": 1.0}, encoder=HashingEncoder(), reference="math-pro",
                      decisions_at=3)
    names = [m.name for m in report.methods]
    assert names[0].startswith("mixllm") and "oracle" in names and "random" in names
    assert {"math-pro", "poet", "cheap", "ridge baseline", "knn baseline (k=40)"} <= set(names)
    router, oracle = report.get(names[0]).curve, report.get("oracle").curve
    assert oracle.auc() >= router.auc()
    # the specialists split the domains: a router must beat always-math-pro on quality at equal cost
    assert router.quality_at(1.0) > 1.2
    lo, hi = report.intervals["auc"]
    assert lo <= 100 * router.auc() <= hi
    assert len(report.decisions) == 3 * report.n_test
    payload = report.to_json()
    json.dumps(payload)
    assert payload["reference"] == "math-pro" and payload["n_test"] == 40
    # which encoder made the figures is part of the report (int8 and fp32 tables differ)
    assert payload["encoder"] == HashingEncoder().fingerprint and f"encoder {payload['encoder']}" in report.table()
    assert "C@97.25%" in report.table() and "bootstrap" in report.table()
    assert plot_tradeoff(report, tmp_path / "p.png").stat().st_size > 10_000


def test_baselines_on_known_data():
    train_e = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]], dtype=np.float32)
    train_e /= np.linalg.norm(train_e, axis=1, keepdims=True)
    quality = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=float)
    cost = np.array([[1.0, 2.0]] * 4)
    test_e = np.array([[1, 0.05]], dtype=np.float32)
    q, c = knn_baseline(train_e, quality, cost, test_e, k=2)
    np.testing.assert_allclose(q, [[1, 0]])
    np.testing.assert_allclose(c, [[1.0, 2.0]])
    q, _ = ridge_baseline(train_e, quality, cost, test_e, penalty=1e-3)
    assert q[0, 0] > 0.8 and q[0, 1] < 0.2


def test_tune_picks_the_best_out_of_fold_setting(split_data):
    from mixllm_router.encoders import HashingEncoder

    train, _ = split_data
    grid = [{"quality_model": "ridge", "prior_strength": 1.0}, {"quality_model": "ridge", "prior_strength": 1e6}]
    result = tune(train, grid=grid, encoder=HashingEncoder(), folds=3)
    aucs = {row[0]["prior_strength"]: row[1]["auc"] for row in result.rows}
    # a huge penalty flattens every prediction to the candidate's mean: it cannot tell domains apart
    assert aucs[1.0] > aucs[1e6]
    assert result.best.prior_strength == 1.0
    assert "prior_strength=1.0" in result.table()


def test_evaluate_needs_test_queries_with_every_outcome(split_data):
    """Sparse test outcomes cannot score a λ sweep: a clear error, or a warning for the rows left out."""
    from mixllm_router import DataError
    from mixllm_router.encoders import HashingEncoder

    train, test = split_data
    rows = test.frame
    first = rows["query_id"].iloc[0]
    one_missing = RoutingDataset.from_pandas(rows[~((rows["query_id"] == first) & (rows["model"] == "cheap"))])
    with pytest.warns(UserWarning, match=f"1 of {len(test)} test queries"):
        report = evaluate(train, one_missing, encoder=HashingEncoder(), reference="math-pro", baselines=False)
    assert report.n_test == len(test) - 1 and report.dropped_test_queries == 1
    # every query misses one model (cheap on even queries, poet on odd ones): nothing can be scored
    even = rows["query_id"].map({q: i % 2 == 0 for i, q in enumerate(test.query_ids)})
    drop = (even & (rows["model"] == "cheap")) | (~even & (rows["model"] == "poet"))
    with pytest.raises(DataError, match="every candidate's outcome"):
        evaluate(train, RoutingDataset.from_pandas(rows[~drop]), encoder=HashingEncoder(), reference="math-pro")
