"""A synthetic routing table with known structure, shared by tests."""

from __future__ import annotations

import numpy as np

MATH_TOPICS = ["integral", "derivative", "matrix", "prime number", "equation", "probability", "geometry", "algebra"]
POEM_TOPICS = ["sonnet", "haiku", "ballad", "ode", "limerick", "elegy", "free verse", "rhyme"]


def make_synthetic(n_per_domain: int = 60, seed: int = 0) -> list[dict[str, object]]:
    """Two domains with different winners and a cheap generalist.

    ``math-pro`` answers math well (0.9) and poems badly (0.2); ``poet`` the reverse; ``cheap`` is
    0.5 everywhere at a tenth of the price. Outcomes are Bernoulli draws, so a router must learn
    the pattern from noisy 0/1 labels.
    """
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    skill = {"math-pro": (0.9, 0.2), "poet": (0.2, 0.9), "cheap": (0.5, 0.5)}
    price = {"math-pro": 0.010, "poet": 0.010, "cheap": 0.001}
    for domain, topics in ((0, MATH_TOPICS), (1, POEM_TOPICS)):
        for i in range(n_per_domain):
            topic = topics[i % len(topics)]
            if domain == 0:
                query = f"Solve this {topic} problem number {i}: compute the {topic} value step by step."
            else:
                query = f"Write a {topic} poem number {i} about the sea, with a {topic} rhyme scheme."
            for model, p in skill.items():
                rows.append({
                    "query": query,
                    "model": model,
                    "quality": float(rng.random() < p[domain]),
                    "cost": price[model] * (1 + 0.1 * rng.random()),
                    "task": "math" if domain == 0 else "poetry",
                })
    return rows
