"""The fitted model: what ``fit`` learns, apart from the router that serves it.

A :class:`FittedModel` holds the candidate pool, one :class:`~mixllm_router.predictors.CandidatePredictor`
per candidate, the embedding bank the kNN predictors search, the ``cost_share`` → λ calibration,
the reference candidate and the fingerprint of the encoder the bank came from. It is the one
object that the online learner updates, a checkpoint serialises, shared state publishes and
evaluation sweeps; none of them needs the :class:`~mixllm_router.MixLLMRouter` façade, which
only wires this model to an encoder, a learner, a load tracker and the clients.

Prediction for a query with embedding ``e`` and ``t`` prompt tokens, per candidate ``l``::

    x = [e, z(t), 1]                         (features)
    q̂_l = ridge/kNN/MLP quality of x          (predictors/candidate.py)
    ĉ_l = p_in·t + p_out·t̂_out(x)  or  the recorded cost predicted directly
    u_l = sqrt(xᵀ A_l⁻¹ x)                   (the ridge's uncertainty)

Thread safety is the caller's: the router takes its learner's lock around every read and update.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._exceptions import ConfigError, DataError, NotFittedError
from .candidates import CandidatePool
from .policy.meta_score import ScoreTerms
from .policy.tradeoff import TradeoffCurve, default_cost_weights, sweep
from .predictors import CandidatePredictor, features

__all__ = ["FittedModel", "Outcomes", "PredictorSettings", "Predictions", "fold_assignment"]

#: Most query-to-bank similarities held at once when kNN predicts (4M float32 = 16 MB, plus the
#: neighbour search's index array): bounds prediction memory on large data.
_SIMILARITY_BLOCK = 1 << 22


def fold_assignment(n: int, folds: int, seed: int) -> np.ndarray:
    """Fold index (0..folds-1) of each of ``n`` items: balanced, shuffled, reproducible."""
    return np.random.default_rng(seed).permutation(np.arange(n) % folds)


@dataclass(frozen=True)
class PredictorSettings:
    """How each candidate's predictors are built (the predictor part of ``RouterConfig``)."""

    kinds: tuple[str, ...] = ("ridge",)
    prior_strength: float = 1.0
    knn_k: int = 20
    mlp_hidden: int = 64
    mlp_alpha: float = 1e-3
    seed: int = 0
    calibration_folds: int = 5

    @classmethod
    def of(cls, config: Any) -> PredictorSettings:
        """The settings a ``RouterConfig`` (or anything with the same fields) describes."""
        return cls(
            kinds=tuple(config.quality_model.split("+")),
            prior_strength=config.prior_strength,
            knn_k=config.knn_k,
            mlp_hidden=config.mlp_hidden,
            mlp_alpha=config.mlp_alpha,
            seed=config.seed,
            calibration_folds=config.calibration_folds,
        )


@dataclass(frozen=True)
class Outcomes:
    """What a fit learns from, one row per training query, one column per candidate.

    ``embeddings`` ``(n, d)`` unit rows; ``tokens`` ``(n,)`` prompt tokens; ``quality`` and
    ``cost`` ``(n, m)``, NaN where a candidate has no recorded outcome; ``out_tokens`` ``(n, m)``
    output tokens (NaN where unknown) or None. Columns follow the ``names`` they are passed with.
    """

    embeddings: np.ndarray
    tokens: np.ndarray
    quality: np.ndarray
    cost: np.ndarray
    out_tokens: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> Outcomes:
        """The same outcomes restricted to ``rows`` (indices or a boolean mask)."""
        return Outcomes(self.embeddings[rows], self.tokens[rows], self.quality[rows], self.cost[rows],
                        None if self.out_tokens is None else self.out_tokens[rows])


@dataclass(frozen=True)
class Predictions:
    """Per-candidate predictions for a batch of queries (rows) and candidates (columns)."""

    names: list[str]
    quality: np.ndarray
    cost: np.ndarray
    uncertainty: np.ndarray
    input_tokens: np.ndarray
    embeddings: np.ndarray

    def terms(self) -> ScoreTerms:
        return ScoreTerms(quality=self.quality, cost=self.cost, uncertainty=self.uncertainty)


class FittedModel:
    """Pool, predictors, bank, calibration, reference and encoder fingerprint of a fitted router.

    ``settings`` is read when predictors are built (:meth:`fit`, :meth:`new_predictor`), so a
    router whose config changes afterwards builds new candidates with the new settings.
    """

    def __init__(self, pool: CandidatePool | None = None, settings: PredictorSettings | None = None) -> None:
        self.pool = pool if pool is not None else CandidatePool(())
        self.settings = settings or PredictorSettings()
        self.predictors: dict[str, CandidatePredictor] = {}
        self.bank: np.ndarray | None = None
        self.calibration: TradeoffCurve | None = None
        self.reference: str | None = None
        self.encoder_fingerprint: str | None = None

    @property
    def is_fitted(self) -> bool:
        return self.bank is not None and bool(self.predictors)

    def check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError("this MixLLMRouter is not fitted yet: call fit(data) or MixLLMRouter.load(path)")

    # ------------------------------------------------------------------------------ fitting
    def fit(
        self,
        outcomes: Outcomes,
        *,
        encoder_fingerprint: str | None,
        reference_model: str | None = None,
        calibrate: bool = True,
    ) -> None:
        """Fit every candidate of the pool on ``outcomes``, whose columns follow ``pool.names``.

        With ``calibrate``, out-of-fold predictions map ``cost_share`` to λ on recorded costs;
        when fewer than ``4 × calibration_folds`` queries have every candidate's outcome (sparse
        logs), on the predicted costs of the training queries instead.
        """
        names = self.pool.names
        self.predictors = self.fit_predictors(names, outcomes)
        self.bank = outcomes.embeddings
        self.encoder_fingerprint = encoder_fingerprint
        self.reference = self.pick_reference(names, outcomes.cost, outcomes.quality, reference_model)
        self.calibration = None
        if calibrate:
            self.calibration = self._calibrate(names, outcomes)
            if self.calibration is None and outcomes.embeddings.shape[0] >= 2:  # sparse logs: spend from predictions
                self.calibration = self.calibration_on_predictions(self.predict(outcomes.embeddings, outcomes.tokens))

    @staticmethod
    def pick_reference(names: list[str], cost: np.ndarray, quality: np.ndarray, reference_model: str | None) -> str:
        """The model ``cost_share`` is a share of: ``reference_model``, else the costliest one.

        Candidates whose mean cost ties with the most (equal list prices, or no costs at all) are
        told apart by mean quality, so a tie never makes the worst of them the yardstick."""
        if reference_model is not None:
            if reference_model not in names:
                raise ConfigError(f"reference_model {reference_model!r} is not a candidate; candidates: {names}")
            return reference_model
        with warnings.catch_warnings():  # a column of NaN (sparse logs) is skipped, not warned about
            warnings.simplefilter("ignore", RuntimeWarning)
            mean_cost = np.nanmean(cost, axis=0)
            mean_quality = np.nanmean(quality, axis=0)
        top = np.nanmax(mean_cost)
        tied = np.flatnonzero(np.isclose(mean_cost, top, rtol=1e-9, atol=0.0))
        return names[int(tied[np.nanargmax(mean_quality[tied])])]

    def cost_mode(self, name: str, out_tokens: np.ndarray | None, column: int) -> str:
        """``"tokens"`` (prices × predicted output tokens) when prices and token counts are known, else ``"direct"``."""
        cand = self.pool.get(name)
        has_prices = cand.input_price > 0 or cand.output_price > 0
        if has_prices and out_tokens is not None and np.isfinite(out_tokens[:, column]).any():
            return "tokens"
        return "direct"

    def new_predictor(self, name: str, dim: int, cost_mode: str) -> CandidatePredictor:
        """An unfitted predictor for candidate ``name`` built with :attr:`settings`."""
        s = self.settings
        return CandidatePredictor(
            name,
            dim=dim,
            kinds=s.kinds,
            cost_mode=cost_mode,  # type: ignore[arg-type]
            prior_strength=s.prior_strength,
            knn_k=s.knn_k,
            mlp_hidden=s.mlp_hidden,
            mlp_alpha=s.mlp_alpha,
            seed=s.seed,
        )

    def fit_predictors(self, names: list[str], outcomes: Outcomes) -> dict[str, CandidatePredictor]:
        """One fitted predictor per name (column of ``outcomes``), each on the rows where its outcome is complete."""
        embeddings, quality, cost, out_tokens = outcomes.embeddings, outcomes.quality, outcomes.cost, outcomes.out_tokens
        x = features(embeddings, outcomes.tokens)
        predictors: dict[str, CandidatePredictor] = {}
        for j, name in enumerate(names):
            mode = self.cost_mode(name, out_tokens, j)
            rows = np.flatnonzero(np.isfinite(quality[:, j]) & np.isfinite(cost[:, j]))
            if mode == "tokens":
                assert out_tokens is not None
                rows = rows[np.isfinite(out_tokens[rows, j])]
            if rows.size == 0:
                raise DataError(f"candidate {name!r} has no complete outcome in the training data")
            model = self.new_predictor(name, embeddings.shape[1], mode)
            model.fit(
                x[rows],
                rows,
                embeddings[rows],
                quality[rows, j],
                cost[rows, j],
                None if out_tokens is None else out_tokens[rows, j],
            )
            predictors[name] = model
        return predictors

    def _calibrate(self, names: list[str], outcomes: Outcomes) -> TradeoffCurve | None:
        """Out-of-fold predictions on the training data → the λ ↔ cost share curve."""
        quality, cost = outcomes.quality, outcomes.cost
        complete = np.flatnonzero(np.isfinite(quality).all(axis=1) & np.isfinite(cost).all(axis=1))
        folds = self.settings.calibration_folds
        if complete.size < 4 * folds:
            warnings.warn(
                f"only {complete.size} queries have outcomes for every candidate, too few for a calibration on "
                "recorded costs: cost_share is calibrated on the predicted costs of the training queries instead "
                "(as recalibrate() does; call it on live queries to refresh)",
                stacklevel=4,  # the caller of MixLLMRouter.fit
            )
            return None
        q_oof, c_oof = self.out_of_fold(names, outcomes.take(complete))
        ref = names.index(self.reference) if self.reference else 0
        grid = default_cost_weights(float(np.mean(cost[complete])))
        return sweep(q_oof, c_oof, quality[complete], cost[complete], ref, grid)

    def calibration_on_predictions(self, preds: Predictions) -> TradeoffCurve:
        """The ``cost_share`` → λ curve when the predictions stand in for recorded outcomes::

            pick_i(λ) = argmax_l q̂_il − λ·ĉ_il
            cost share(λ)    = Σ_i ĉ[i, pick_i] / Σ_i ĉ[i, ref]
            quality share(λ) = mean_i q̂[i, pick_i] / mean_i q̂[i, ref]
        """
        assert self.reference is not None
        ref = preds.names.index(self.reference)
        grid = default_cost_weights(float(np.mean(preds.cost)))
        return sweep(preds.quality, preds.cost, preds.quality, preds.cost, ref, grid)

    def out_of_fold(self, names: list[str], outcomes: Outcomes, *,
                    folds: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Quality and cost predicted for each query by predictors that never saw it (k-fold).

        Folds are :func:`fold_assignment` of the settings' seed, so every caller sees the same split.
        """
        folds = folds or self.settings.calibration_folds
        embeddings, tokens = outcomes.embeddings, outcomes.tokens
        assignment = fold_assignment(embeddings.shape[0], folds, self.settings.seed)
        q_oof = np.zeros_like(outcomes.quality, dtype=np.float64)
        c_oof = np.zeros_like(outcomes.cost, dtype=np.float64)
        for fold in range(folds):
            train = np.flatnonzero(assignment != fold)
            val = np.flatnonzero(assignment == fold)
            models = self.fit_predictors(names, outcomes.take(train))
            q, c, _ = self.predict_with(models, names, embeddings[val], tokens[val], embeddings[train])
            q_oof[val], c_oof[val] = q, c
        return q_oof, c_oof

    # ------------------------------------------------------------------------------ prediction
    def predict_with(
        self,
        models: dict[str, CandidatePredictor],
        names: Sequence[str],
        embeddings: np.ndarray,
        tokens: np.ndarray,
        bank: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Quality, cost and uncertainty matrices (queries × ``names``) of ``models`` over ``bank``."""
        n, m = embeddings.shape[0], len(names)
        quality, cost, unc = np.empty((n, m)), np.empty((n, m)), np.empty((n, m))
        # similarities to the whole bank feed only kNN predictors: skip the product when none is used
        uses_knn = any("knn" in models[name].kinds and models[name].knn.targets.size for name in names)
        # With kNN, the (rows × bank) similarities and the neighbour search over them grow with both
        # sizes (30k queries against a 30k bank would be several GB): take the rows in blocks of at
        # most _SIMILARITY_BLOCK similarities, which leaves the results unchanged.
        step = max(1, _SIMILARITY_BLOCK // max(bank.shape[0], 1)) if uses_knn else max(n, 1)
        for start in range(0, n, step):
            rows = slice(start, min(start + step, n))
            e, t = embeddings[rows], tokens[rows]
            x = features(e, t)
            sims = e @ bank.T if uses_knn else None
            for j, name in enumerate(names):
                model = models[name]
                cand = self.pool.get(name)
                quality[rows, j] = model.predict_quality(x, e, sims)
                cost[rows, j] = model.predict_cost(x, t, cand.input_price, cand.output_price)
                unc[rows, j] = model.uncertainty(x)
        return quality, cost, unc

    def predict(self, embeddings: np.ndarray, tokens: np.ndarray) -> Predictions:
        """Predictions for the pool as it is now (the caller holds the learner's lock)."""
        assert self.bank is not None
        names = self.pool.names
        q, c, u = self.predict_with(self.predictors, names, embeddings, tokens, self.bank)
        return Predictions(names, q, c, u, tokens, embeddings)

    def take(self, other: FittedModel) -> None:
        """Replace this model's learnt state with ``other``'s (a newer checkpoint), keeping this
        object, so everything that holds it sees the new state; the fingerprint stays when
        ``other`` has none."""
        self.pool = other.pool
        self.predictors = other.predictors
        self.bank = other.bank
        self.calibration = other.calibration
        self.reference = other.reference
        self.encoder_fingerprint = other.encoder_fingerprint or self.encoder_fingerprint
