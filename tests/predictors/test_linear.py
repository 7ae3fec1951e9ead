from __future__ import annotations

import numpy as np
import pytest

from mixllm_router import ConfigError, DataError
from mixllm_router.predictors import LinUCBRidge, features
from mixllm_router.predictors.linear import add_bias


@pytest.fixture()
def xy():
    rng = np.random.default_rng(0)
    x = add_bias(rng.normal(size=(50, 6)))
    w = rng.normal(size=(7, 2))
    y = x @ w + 3.0 + 0.1 * rng.normal(size=(50, 2))
    return x, y


def test_fit_is_centred_ridge(xy):
    x, y = xy
    model = LinUCBRidge(7, 2, prior_strength=2.0).fit(x, y)
    m = y.mean(axis=0)
    w = np.linalg.solve(2.0 * np.eye(7) + x.T @ x, x.T @ (y - m))
    np.testing.assert_allclose(model.predict(x), x @ w + m, atol=1e-10)


def test_sherman_morrison_updates_equal_batch_refit(xy):
    x, y = xy
    batch = LinUCBRidge(7, 2, prior_strength=1.0).fit(x[:20], y[:20])
    online = LinUCBRidge(7, 2, prior_strength=1.0).fit(x[:20], y[:20])
    online.update(x[20:], y[20:])
    a = 1.0 * np.eye(7) + x.T @ x
    np.testing.assert_allclose(online.a_inv, np.linalg.inv(a), atol=1e-8)
    w = np.linalg.solve(a, x.T @ (y - batch.offset))
    np.testing.assert_allclose(online.predict(x), x @ w + batch.offset, atol=1e-8)
    assert online.n_seen == 50


def test_uncertainty_shrinks_with_data_and_matches_formula(xy):
    x, y = xy
    empty = LinUCBRidge(7, 2, prior_strength=4.0)
    np.testing.assert_allclose(empty.uncertainty(x[:3]), np.linalg.norm(x[:3], axis=1) / 2.0)
    fitted = LinUCBRidge(7, 2, prior_strength=4.0).fit(x, y)
    a_inv = np.linalg.inv(4.0 * np.eye(7) + x.T @ x)
    expected = np.sqrt(np.einsum("ij,jk,ik->i", x[:5], a_inv, x[:5]))
    # uncertainty reads a float32 copy of A⁻¹ (half the memory traffic on the hot path)
    np.testing.assert_allclose(fitted.uncertainty(x[:5]), expected, rtol=1e-6)
    assert (fitted.uncertainty(x) < empty.uncertainty(x)).all()


def test_state_round_trip(xy):
    x, y = xy
    model = LinUCBRidge(7, 2).fit(x, y)
    again = LinUCBRidge.from_state(model.state_arrays(), prior_strength=1.0)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


def test_bad_shapes_and_values(xy):
    x, y = xy
    model = LinUCBRidge(7, 2)
    with pytest.raises(DataError):
        model.fit(x[:, :3], y)
    with pytest.raises(DataError):
        model.fit(x, y[:-1])
    bad = y.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError):
        model.fit(x, bad)
    with pytest.raises(ConfigError):
        LinUCBRidge(7, 2, prior_strength=0)


def test_features_append_length_and_bias():
    e = np.eye(3, dtype=np.float32)
    x = features(e, np.array([0, 8192, 10]))
    assert x.shape == (3, 5)
    np.testing.assert_allclose(x[:, -1], 1.0)
    assert x[0, 3] == 0.0 and x[1, 3] == pytest.approx(1.0)


def test_fewer_examples_than_features_uses_an_exact_identity():
    rng = np.random.default_rng(3)
    x = add_bias(rng.normal(size=(5, 9)))
    y = rng.normal(size=(5, 2))
    model = LinUCBRidge(10, 2, prior_strength=0.5).fit(x, y)
    np.testing.assert_allclose(model.a_inv, np.linalg.inv(0.5 * np.eye(10) + x.T @ x), atol=1e-10)


def test_uncertainty_follows_every_change_of_a_inv(xy):
    """The float32 copy behind ``uncertainty`` is refreshed after fit, update and assignment."""
    x, y = xy
    model = LinUCBRidge(7, 2, prior_strength=4.0).fit(x[:20], y[:20])

    def exact() -> np.ndarray:
        return np.sqrt(np.einsum("ij,jk,ik->i", x[:5], model.a_inv, x[:5]))

    before = model.uncertainty(x[:5])
    model.update(x[20:40], y[20:40])
    after = model.uncertainty(x[:5])
    assert (after < before).all()
    np.testing.assert_allclose(after, exact(), rtol=1e-6)
    model.a_inv = np.eye(7) / 4.0
    np.testing.assert_allclose(model.uncertainty(x[:5]), np.linalg.norm(x[:5], axis=1) / 2.0, rtol=1e-6)


def test_soften_keeps_the_prior_and_weighs_new_data_more(xy):
    x, y = xy
    soft = LinUCBRidge(7, 2, prior_strength=2.0).fit(x[:40], y[:40])
    hard = LinUCBRidge(7, 2, prior_strength=2.0).fit(x[:40], y[:40])
    before_u = soft.uncertainty(x)
    soft.soften(0.1)
    a = 2.0 * np.eye(7) + 0.1 * x[:40].T @ x[:40]  # the prior kept whole, a tenth of the data
    np.testing.assert_allclose(soft.a_inv, np.linalg.inv(a), atol=1e-10)
    w = np.linalg.solve(a, 0.1 * x[:40].T @ (y[:40] - soft.offset))
    np.testing.assert_allclose(soft.predict(x), x @ w + soft.offset, atol=1e-9)
    assert (soft.uncertainty(x) > before_u).all()
    shifted = y[40:] + 5.0  # the outcomes change
    soft.update(x[40:], shifted)
    hard.update(x[40:], shifted)
    err_soft = np.abs(soft.predict(x[40:]) - shifted).mean()
    err_hard = np.abs(hard.predict(x[40:]) - shifted).mean()
    assert err_soft < 0.5 * err_hard
    with pytest.raises(ConfigError):
        soft.soften(0.0)
