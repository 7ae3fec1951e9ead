from __future__ import annotations

import numpy as np
import pytest

from mixllm_router import ConfigError, DataError
from mixllm_router.predictors import KNNRegressor, MLPRegressorNP


def test_knn_averages_the_nearest_rows_of_its_own():
    bank = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [0.7, 0.7]], dtype=np.float32)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    model = KNNRegressor(k=2).fit(np.array([0, 1, 2, 3]), np.array([1.0, 1.0, 0.0, 0.0]))
    query = np.array([[1.0, 0.05]], dtype=np.float32)
    assert model.predict(query @ bank.T)[0] == pytest.approx(1.0)
    model.update(np.array([4]), np.array([0.0]))  # an appended example joins the neighbourhood
    assert model.targets.size == 5
    few = KNNRegressor(k=10).fit(np.array([0, 2]), np.array([1.0, 0.0]))
    assert few.predict(query @ bank.T)[0] == pytest.approx(0.5)


def test_knn_state_rejects_rows_outside_bank():
    model = KNNRegressor(3).fit(np.array([0, 5]), np.array([1.0, 0.0]))
    with pytest.raises(DataError):
        KNNRegressor.from_state(model.state_arrays(), k=3, bank_size=4)
    with pytest.raises(ConfigError):
        KNNRegressor(0)


def test_mlp_learns_a_nonlinear_pattern_and_round_trips():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4))
    y = ((x[:, 0] * x[:, 1]) > 0).astype(float)  # XOR-like: no linear model gets this
    model = MLPRegressorNP(hidden=32, alpha=1e-4, seed=0, max_iter=500).fit(x, y)
    accuracy = ((model.predict(x) > 0.5) == (y > 0.5)).mean()
    assert accuracy > 0.8
    again = MLPRegressorNP.from_state(model.state_arrays(), hidden=32, alpha=1e-4, seed=0)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


def test_mlp_with_constant_target_is_constant():
    model = MLPRegressorNP().fit(np.ones((30, 3)), np.full(30, 0.7))
    np.testing.assert_allclose(model.predict(np.zeros((2, 3))), 0.7)
