"""The outcome adapter: a representation learned from recorded quality (issue #19, item 1)."""

from __future__ import annotations

import numpy as np
import pytest

from mixllm_router import ConfigError, MixLLMRouter, RoutingDataset
from mixllm_router.encoders import HashingEncoder
from mixllm_router.encoders.outcome_adapter import fit_outcome_adapter, outcome_adapter_encoder
from mixllm_router.encoders.tag_enhanced import TagEnhancedEncoder


def _step_data(n=400, d=16, seed=0):
    """Quality is a step in one direction of e: a linear probe on e fits it poorly, one on tanh(eA)B well."""
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(n, d)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    good = (e[:, 0] > 0).astype(float)
    quality = np.column_stack([good, 1 - good, np.full(n, 0.5)])
    return e, quality


def test_the_adapter_learns_what_the_frozen_embedding_hides_and_stops_early():
    e, quality = _step_data()
    fit = fit_outcome_adapter(e, quality, rank=8, activation="tanh", contrastive_weight=0.5, keep_weight=0.1,
                              epochs=300, lr=2e-2, patience=30, seed=0)
    assert fit.a.shape == (16, 8) and fit.b.shape == (8, 16)
    assert 0 < fit.best_epoch <= 300 and fit.val_history[fit.best_epoch - 1] == min(fit.val_history)
    assert fit.val_history[fit.best_epoch - 1] < fit.val_history[0]
    # a linear probe (what the router's ridge is) on the adapted embedding beats one on the frozen one
    from mixllm_router.encoders.tag_enhanced import _project

    z = _project(e, fit.a, fit.b, "tanh")

    def probe_error(x):
        x1 = np.hstack([x, np.ones((len(x), 1))])
        tr, te = slice(0, 300), slice(300, None)
        w = np.linalg.solve(x1[tr].T @ x1[tr] + 1e-2 * np.eye(x1.shape[1]), x1[tr].T @ quality[tr, 0])
        return float(np.mean((x1[te] @ w - quality[te, 0]) ** 2))

    assert probe_error(z) < 0.9 * probe_error(e)


def test_the_adapter_is_seeded_and_validates_its_input():
    e, quality = _step_data(n=120)
    one = fit_outcome_adapter(e, quality, rank=4, epochs=20, seed=3)
    two = fit_outcome_adapter(e, quality, rank=4, epochs=20, seed=3)
    assert np.array_equal(one.a, two.a) and np.array_equal(one.b, two.b)
    with pytest.raises(ConfigError):
        fit_outcome_adapter(e, quality[:10])
    with pytest.raises(ConfigError):
        fit_outcome_adapter(e, quality, rank=0)
    with pytest.raises(ConfigError):
        fit_outcome_adapter(e, quality, val_share=0.9)


def test_a_router_on_the_adapter_saves_loads_and_adds_a_candidate(tmp_path):
    from synthetic import make_synthetic

    data = RoutingDataset.from_records(make_synthetic(40, seed=0))
    base = HashingEncoder()
    names = data.models
    enc = outcome_adapter_encoder(base, base.encode(data.queries), data.matrix("quality", names),
                                  candidates=names, rank=8, epochs=40)
    assert isinstance(enc, TagEnhancedEncoder) and enc.info["trained_on"] == "outcomes"
    assert enc.fingerprint != base.fingerprint  # the weights' hash keys the embedding cache
    router = MixLLMRouter(encoder=enc, config={"calibration_folds": 3, "encoder": {"kind": "hashing", "use_cache": False}})
    router.fit(data, calibrate=False)
    router.save(tmp_path / "ckpt")
    assert list((tmp_path / "ckpt").glob("*.safetensors"))
    loaded = MixLLMRouter.load(tmp_path / "ckpt")
    assert loaded.encoder.fingerprint == enc.fingerprint and loaded.encoder.info["trained_on"] == "outcomes"
    queries = ["Solve this integral problem: compute it.", "Write a haiku about the moon."]
    assert [d.chosen for d in loaded.route_batch(queries, cost_weight=5.0)] == \
           [d.chosen for d in router.route_batch(queries, cost_weight=5.0)]
    # a candidate added later lives in the learned space unchanged
    from mixllm_router import Candidate

    loaded.add_candidate(Candidate(name="newcomer", input_price=1.0, output_price=2.0))
    assert "newcomer" in loaded.candidate_names
    assert loaded.encoder.fingerprint == enc.fingerprint
    d = loaded.route(queries[0], cost_weight=5.0)
    assert {s.name for s in d.scores} >= {"newcomer", "math-pro"}
