"""A new candidate's prior fitted to scored examples (mixllm_router.learning.onboarding, add_candidate)."""

from __future__ import annotations

import numpy as np
import pytest

from mixllm_router import MixLLMRouter, RoutingDataset
from mixllm_router._exceptions import DataError
from mixllm_router.encoders import HashingEncoder
from mixllm_router.learning.onboarding import fit_mix

ENC = HashingEncoder(dim=64)
SKILL = {"big": (0.9, 0.9, 1e-3), "math-small": (0.85, 0.15, 1e-4), "poet-small": (0.15, 0.85, 1e-4)}


def _records(models: dict, n: int, seed: int, start: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(start, start + n):
        topic = "math" if i % 2 else "poem"
        words = "integral derivative sum proof" if topic == "math" else "rose sonnet verse rhyme"
        for model, (p_math, p_poem, price) in models.items():
            p = p_math if topic == "math" else p_poem
            out.append({"query_id": f"q{i}", "query": f"{topic} {words} item {i}", "model": model,
                        "quality": float(rng.random() < p), "cost": price * (1 + 0.1 * rng.random())})
    return out


def _router() -> MixLLMRouter:
    config = {"encoder": {"kind": "hashing", "use_cache": False}}
    return MixLLMRouter(config=config, encoder=ENC).fit(RoutingDataset.from_records(_records(SKILL, 200, 0)))


def test_fit_mix_recovers_a_mix_and_drops_unrelated_donors():
    rng = np.random.default_rng(0)
    z = rng.random((200, 3))
    y = 0.1 + 0.8 * z[:, 0] + 0.2 * z[:, 2]
    beta, c, tau, err = fit_mix(z, y)
    np.testing.assert_allclose(beta, [0.8, 0.0, 0.2], atol=0.02)
    assert c == pytest.approx(0.1, abs=0.02) and err < 0.01
    noise = rng.random(200)  # outcomes unrelated to the others: no weight on them, the level in the intercept
    beta, c, tau, _ = fit_mix(z, noise)
    assert np.abs(beta).max() < 0.15 and c + z.mean(axis=0) @ beta == pytest.approx(noise.mean())


def test_a_fitted_prior_predicts_the_new_candidate_where_the_mean_prior_cannot():
    router = _router()
    # the new candidate is a poet whose costs are a tenth of poet-small's
    new = {"poet-pro": (0.1, 0.95, 1e-5)}
    examples = [r for r in _records(new, 30, 1, start=1000)]
    assert router.add_candidate("poet-pro", examples=examples, prior="fitted") == "fitted"
    mean = _router()
    assert mean.add_candidate("poet-pro", examples=examples, prior="mean") == "mean"
    assert mean.add_candidate("bare") == "mean"  # no examples: as before
    test = [f"{t} item {i}" for i in range(2000, 2040) for t in ("math integral derivative sum proof",
                                                                 "poem rose sonnet verse rhyme")]
    truth = np.array([0.1 if t.startswith("math") else 0.95 for t in test])
    def err(r):
        p = r.predict(test)
        return float(np.abs(p.quality[:, p.names.index("poet-pro")] - truth).mean())

    assert err(router) < err(mean) - 0.05
    p = router.predict(test)
    cost = p.cost[:, p.names.index("poet-pro")]
    poet_cost = p.cost[:, p.names.index("poet-small")]
    assert np.median(cost) < 0.3 * np.median(poet_cost)  # its cheaper price is in the prior too


def test_fitted_prior_needs_examples_and_survives_save_load(tmp_path):
    router = _router()
    with pytest.raises(DataError, match="at least"):
        router.add_candidate("x", examples=_records({"x": (0.5, 0.5, 1e-4)}, 3, 2), prior="fitted")
    assert router.add_candidate("few", examples=_records({"few": (0.5, 0.5, 1e-4)}, 6, 2)) == "mean"  # the default
    router.add_candidate("poet-pro", examples=_records({"poet-pro": (0.1, 0.95, 1e-5)}, 20, 3), prior="fitted")
    router.save(tmp_path / "ckpt")
    loaded = MixLLMRouter.load(tmp_path / "ckpt", encoder=ENC)
    assert loaded.learning.priors["poet-pro"] == "fitted"
    q = ["poem rose sonnet new"]
    np.testing.assert_allclose(loaded.predict(q).quality, router.predict(q).quality)
