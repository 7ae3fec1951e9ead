"""Shared fixtures: the real RouterBench folder, a synthetic routing table with known structure,
and a fast router fitted on it with the torch-free hashing encoder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tests never write into the user's real cache; one throw-away cache is shared by the session.
os.environ["MIXLLM_CACHE_DIR"] = tempfile.mkdtemp(prefix="mixllm-test-cache-")

ROUTERBENCH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "routerbench"

MATH_TOPICS = ["integral", "derivative", "matrix", "prime number", "equation", "probability", "geometry", "algebra"]
POEM_TOPICS = ["sonnet", "haiku", "ballad", "ode", "limerick", "elegy", "free verse", "rhyme"]


@pytest.fixture(scope="session")
def routerbench_dir() -> Path:
    if not ROUTERBENCH.is_dir():
        pytest.skip(f"RouterBench data not found at {ROUTERBENCH}")
    return ROUTERBENCH


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


@pytest.fixture(scope="session")
def synthetic_records() -> list[dict[str, object]]:
    return make_synthetic()


@pytest.fixture(scope="session")
def synthetic_data(synthetic_records):
    from mixllm_router import RoutingDataset

    return RoutingDataset.from_records(synthetic_records)


@pytest.fixture()
def hashing_encoder():
    from mixllm_router.encoders import HashingEncoder

    return HashingEncoder()


@pytest.fixture()
def fitted_router(synthetic_data, hashing_encoder):
    from mixllm_router import MixLLMRouter

    return MixLLMRouter(encoder=hashing_encoder, prior_strength=1.0, calibration_folds=3).fit(synthetic_data)
