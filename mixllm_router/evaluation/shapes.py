"""Synthetic routing data of given shapes, with embeddings, for checking the router against baselines.

Real routing logs differ from RouterBench in ways that change which predictor wins: more
candidates, graded scores in [0, 1] instead of 0/1, costs that follow the prompt's length, equal
prices. :func:`make_shaped` draws such a table with a known structure:

- ``n_tasks`` tasks (none of them RouterBench's); each query has a task ``k`` and a latent
  within-task difficulty ``h ~ N(0, 1)``. Its embedding is ``normalize(μ_k + σ_t·ε + s·h·v_k)``
  (``μ_k`` a random task centre, ``v_k`` a task's difficulty direction, ``ε`` isotropic noise), so
  the embedding tells the task and, weakly (``s``), the difficulty;
- candidate ``j`` has a skill ``a_jk`` per task and a sensitivity ``b_j`` to difficulty; its mean
  quality on the query is ``m = sigmoid(a_jk − b_j·h)``; the recorded score is a Bernoulli draw of
  ``m`` (``scores="binary"``) or ``m`` plus noise, clipped to [0, 1] (``"graded"``);
- prompt length ``t_in`` is log-normal per task; candidate ``j`` writes ``t_out ≈ verbosity_j``
  tokens; cost = ``(p_in_j·t_in + p_out_j·t_out) / 1e6`` with list-like prices spread over two
  orders of magnitude, or one price for all (``equal_prices``: costs still follow the length, but
  every candidate costs the same on a query).

The query texts are placeholders whose word count is ``t_in`` (so a token counter sees the
length); the embeddings are returned alongside and are what a router is fitted on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["ShapedData", "make_shaped"]


@dataclass
class ShapedData:
    records: list[dict[str, object]]  # long table rows: query_id, query, model, quality, cost, task, split
    embeddings: np.ndarray  # (n_queries, dim), in query order
    query_ids: list[str]
    models: list[str]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def make_shaped(
    *,
    n_queries: int = 2500,
    n_models: int = 9,
    n_tasks: int = 6,
    dim: int = 384,
    scores: Literal["graded", "binary"] = "graded",
    equal_prices: bool = False,
    difficulty_signal: float = 0.25,
    task_spread: float = 0.6,
    score_noise: float = 0.15,
    test_size: float = 0.3,
    seed: int = 0,
) -> ShapedData:
    """Draw the table described in the module docstring (``split``: a seeded ``test_size`` held out)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_tasks, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    directions = rng.normal(size=(n_tasks, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    task = rng.integers(0, n_tasks, size=n_queries)
    h = rng.normal(size=n_queries)
    noise = rng.normal(size=(n_queries, dim)) / np.sqrt(dim)
    emb = centres[task] + task_spread * noise + difficulty_signal * h[:, None] * directions[task]
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)

    skill = rng.normal(0.6, 0.9, size=(n_models, n_tasks)) + np.linspace(-0.6, 0.9, n_models)[:, None]
    sensitivity = rng.uniform(0.3, 1.5, size=n_models)
    mean_q = _sigmoid(skill[:, task].T - sensitivity[None, :] * h[:, None])  # (n, m)
    if scores == "binary":
        quality = (rng.random(mean_q.shape) < mean_q).astype(float)
    else:
        quality = np.clip(mean_q + score_noise * rng.normal(size=mean_q.shape), 0.0, 1.0)

    length_by_task = rng.uniform(3.5, 6.5, size=n_tasks)
    t_in = np.maximum(1, np.round(np.exp(length_by_task[task] + 0.5 * rng.normal(size=n_queries)))).astype(int)
    if equal_prices:
        p_in = np.full(n_models, 1.0)
        p_out = np.full(n_models, 2.0)
        t_out = np.tile(np.round(0.3 * t_in + 50)[:, None], (1, n_models))
    else:
        # stronger models cost more, roughly: list prices over two orders of magnitude
        p_in = np.exp(np.linspace(np.log(0.1), np.log(15.0), n_models) + 0.4 * rng.normal(size=n_models))
        p_out = 3.0 * p_in
        verbosity = rng.uniform(100, 500, size=n_models)
        t_out = np.round(verbosity[None, :] * np.exp(0.3 * rng.normal(size=(n_queries, n_models))))
    cost = (p_in[None, :] * t_in[:, None] + p_out[None, :] * t_out) / 1e6

    models = [f"model-{j}" for j in range(n_models)]
    query_ids = [f"s{seed}-q{i}" for i in range(n_queries)]
    test = rng.random(n_queries) < test_size
    records: list[dict[str, object]] = []
    for i, qid in enumerate(query_ids):
        text = f"query {qid} task {task[i]} " + " ".join(["w"] * int(t_in[i]))
        for j, name in enumerate(models):
            records.append({
                "query_id": qid, "query": text, "model": name, "quality": float(quality[i, j]),
                "cost": float(cost[i, j]), "task": f"task-{task[i]}", "split": "test" if test[i] else "train",
            })
    return ShapedData(records, emb.astype(np.float32), query_ids, models)
