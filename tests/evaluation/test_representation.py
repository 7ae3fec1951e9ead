"""Tuning that cannot choose worse than a plain ridge or kNN, and the representation's CV (issue #19)."""

from __future__ import annotations

import numpy as np
import pytest

from mixllm_router import RoutingDataset
from mixllm_router.encoders import HashingEncoder
from mixllm_router.evaluation.representation import _auroc, cv_representations, within_task_auroc
from mixllm_router.evaluation.shapes import make_shaped
from mixllm_router.evaluation.tuning import DEFAULT_GRID, one_se_choice, tune


def test_the_paired_rule_sees_a_setting_that_loses_on_every_fold():
    # folds differ a lot in difficulty (±5) but the second setting wins on each by 0.5
    base = np.array([90.0, 95.0, 85.0, 100.0, 92.0])
    chosen, gaps, se = one_se_choice([base, base + 0.5])
    assert chosen == 1 and gaps[1] == 0.0 and gaps[0] == pytest.approx(0.5) and se[0] == pytest.approx(0.0)
    # the unpaired rule (best mean minus the s.e. of its fold scores) would have kept the first
    assert base.mean() >= (base + 0.5).mean() - (base + 0.5).std(ddof=1) / np.sqrt(5)
    noisy = base + np.array([1.0, -1.0, 0.8, -0.6, 0.3])  # better on average by 0.1, but not on every fold
    assert one_se_choice([base, noisy])[0] == 0


def test_the_default_grid_holds_the_plain_baselines():
    assert {"quality_model": "ridge", "prior_strength": 1.0} in DEFAULT_GRID  # the ridge baseline's penalty
    assert {"quality_model": "knn", "knn_k": 40} in DEFAULT_GRID  # the kNN baseline


@pytest.fixture(scope="module")
def shaped():
    mk = make_shaped(n_queries=500, n_models=5, n_tasks=4, dim=32, scores="binary", seed=1)
    data = RoutingDataset.from_records(mk.records)
    train = data.splits()["train"]
    emb = dict(zip(mk.query_ids, mk.embeddings))
    return train, np.stack([emb[q] for q in train.query_ids])


def test_tune_chooses_knn_where_it_wins_on_every_fold(shaped):
    train, e = shaped
    grid = [{"quality_model": "ridge", "prior_strength": 1e5}, {"quality_model": "knn", "knn_k": 20}]
    result = tune(train, grid=grid, encoder=HashingEncoder(dim=8), embeddings=e, folds=5)
    assert result.rows[1][1]["auc"] > result.rows[0][1]["auc"]
    assert result.setting == grid[1] and "gap" in result.table()


def test_auroc_and_within_task_auroc():
    assert _auroc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1], dtype=bool)) == 1.0
    assert _auroc(np.array([0.5, 0.5, 0.5, 0.5]), np.array([0, 1, 0, 1], dtype=bool)) == 0.5
    # a predictor that only knows the task has within-task AUROC 0.5 even when it is right on average
    tasks = np.array(["a"] * 4 + ["b"] * 4)
    quality = np.array([[1], [0], [1], [0], [0], [0], [1], [0]], dtype=float)
    task_mean = np.array([[0.5]] * 4 + [[0.25]] * 4)
    assert within_task_auroc(task_mean, quality, tasks) == 0.5
    assert within_task_auroc(quality, quality, tasks) == 1.0


def test_cv_representations_table_and_choice(shaped):
    train, e = shaped
    result = cv_representations(
        train, config={"quality_model": "ridge"}, encoder=HashingEncoder(dim=8), embeddings=e,
        representations=("frozen", "fine-tuned"),
        adapter_grid=({"rank": 4, "activation": "linear", "contrastive_weight": 0.0, "epochs": 30},), folds=3,
    )
    assert [r["name"] for r in result.rows] == ["frozen", "fine-tuned"]
    assert 0 <= result.chosen < 2 and result.metric == "auc"
    for r in result.rows:
        assert 0.0 <= r["auroc"] <= 1.0 and np.isfinite(r["score"]) and len(r["fold_scores"]) == 3
    assert result.rows[0]["gap"] >= 0 and "AUROC" in result.table() and "fine-tuned (rank=4" in result.table()
