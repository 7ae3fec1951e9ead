"""Quality-cost trade-off curves: sweeping the cost weight λ and summarising the curve.

Shared by the router (to calibrate friendly cost handles on held-out training predictions) and by
the evaluation (to report the metrics of DESIGN §2), so both use the same arithmetic.

For predictions ``q̂, ĉ`` (queries × candidates) and a cost weight ``λ``, the router picks
``argmax_l q̂_l − λ·ĉ_l`` per query; on recorded outcomes ``Q, C`` that choice has

    quality share = mean_i Q[i, pick_i] / mean_i Q[i, ref]
    cost share    = Σ_i C[i, pick_i]   / Σ_i C[i, ref]

relative to a reference candidate ``ref``. Sweeping λ over a grid gives points (cost share,
quality share). The *best quality reachable within a cost share s* is the highest quality share
among points whose cost share is ≤ s (0 if none), and

- ``quality_at(s)``     that value at s (0.10 and 0.25 are reported),
- ``cost_to_reach(r)``  the smallest cost share of a point with quality share ≥ r (∞ if none),
- ``auc``               the mean of ``quality_at(s)`` over s = 0, 0.01, …, 1.00.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "TradeoffCurve",
    "bootstrap_quality",
    "bootstrap_summary",
    "choose_reference",
    "default_cost_weights",
    "is_quality_only",
    "paired_bootstrap",
    "pick",
    "quality_only_score",
    "sweep",
]


def default_cost_weights(typical_cost_usd: float, n: int = 200) -> np.ndarray:
    """A λ grid (0 plus log-spaced values) scaled to the data's typical per-query cost.

    ``λ·c`` must range from negligible to dominant against quality differences of about 0.01–1,
    so λ spans ``[1e-3, 1e3] / typical_cost``.
    """
    typical = max(float(typical_cost_usd), 1e-12)
    return np.concatenate([[0.0], np.logspace(-3, 3, n - 1) / typical])


def pick(quality_pred: np.ndarray, cost_pred: np.ndarray, cost_weight: float, eligible: np.ndarray | None = None) -> np.ndarray:
    """Index of ``argmax q̂ − λ ĉ`` per row; ties go to the cheaper prediction."""
    score = quality_pred - cost_weight * cost_pred
    if eligible is not None:
        score = np.where(eligible, score, -np.inf)
    best = score.max(axis=1, keepdims=True)
    tied = score >= best - 1e-12
    return np.argmin(np.where(tied, cost_pred, np.inf), axis=1)


@dataclass(frozen=True)
class TradeoffCurve:
    """Points of a λ sweep, in shares of the reference candidate's quality and cost."""

    cost_weights: np.ndarray
    cost_share: np.ndarray
    quality_share: np.ndarray

    def quality_at(self, share: float) -> float:
        ok = self.cost_share <= share + 1e-12
        return float(self.quality_share[ok].max()) if ok.any() else 0.0

    def cost_to_reach(self, quality_share: float) -> float:
        ok = self.quality_share >= quality_share - 1e-12
        return float(self.cost_share[ok].min()) if ok.any() else float("inf")

    def auc(self) -> float:
        return float(np.mean([self.quality_at(s) for s in np.linspace(0.0, 1.0, 101)]))

    def envelope(self) -> tuple[np.ndarray, np.ndarray]:
        """The upper-left frontier: for increasing cost share, the best quality so far."""
        order = np.argsort(self.cost_share, kind="stable")
        return self.cost_share[order], np.maximum.accumulate(self.quality_share[order])

    def cost_weight_for_share(self, share: float) -> float:
        """The λ with the best quality among sweep points within ``share`` (the cheapest if none)."""
        ok = self.cost_share <= share + 1e-12
        if not ok.any():
            return float(self.cost_weights[np.argmin(self.cost_share)])
        idx = np.flatnonzero(ok)
        best = idx[np.argmax(self.quality_share[idx])]
        return float(self.cost_weights[best])

    def summary(self) -> dict[str, float]:
        return {
            "auc": 100 * self.auc(),
            "quality_at_10": 100 * self.quality_at(0.10),
            "quality_at_25": 100 * self.quality_at(0.25),
            "cost_to_97_25": 100 * self.cost_to_reach(0.9725),
        }


def sweep(
    quality_pred: np.ndarray,
    cost_pred: np.ndarray,
    quality_true: np.ndarray,
    cost_true: np.ndarray,
    reference: int,
    cost_weights: np.ndarray | None = None,
) -> TradeoffCurve:
    """Route every query at every λ and score the choices on the recorded outcomes."""
    if cost_weights is None:
        cost_weights = default_cost_weights(float(np.nanmean(cost_true)))
    rows = np.arange(quality_true.shape[0])
    ref_quality = float(np.mean(quality_true[:, reference]))
    ref_cost = float(np.sum(cost_true[:, reference]))
    cost_share = np.empty(len(cost_weights))
    quality_share = np.empty(len(cost_weights))
    for i, lam in enumerate(cost_weights):
        chosen = pick(quality_pred, cost_pred, float(lam))
        cost_share[i] = cost_true[rows, chosen].sum() / ref_cost if ref_cost > 0 else 0.0
        quality_share[i] = quality_true[rows, chosen].mean() / ref_quality if ref_quality > 0 else 0.0
    return TradeoffCurve(np.asarray(cost_weights, dtype=np.float64), cost_share, quality_share)


def bootstrap_summary(
    quality_pred: np.ndarray,
    cost_pred: np.ndarray,
    quality_true: np.ndarray,
    cost_true: np.ndarray,
    reference: int,
    cost_weights: np.ndarray,
    *,
    n_resamples: int = 200,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of the curve metrics when the test queries are resampled.

    The choices at each λ are fixed (they depend on the predictions only); each resample re-draws
    the queries with replacement and recomputes the shares, so the interval shows how much of a
    difference between two routers the test set can resolve.
    """
    rows = np.arange(quality_true.shape[0])
    picks = np.stack([pick(quality_pred, cost_pred, float(lam)) for lam in cost_weights])  # (L, n)
    q_chosen = quality_true[rows[None, :], picks]
    c_chosen = cost_true[rows[None, :], picks]
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {"auc": [], "quality_at_10": [], "quality_at_25": [], "cost_to_97_25": []}
    for _ in range(n_resamples):
        idx = rng.integers(0, len(rows), size=len(rows))
        ref_q = quality_true[idx, reference].mean()
        ref_c = cost_true[idx, reference].sum()
        curve = TradeoffCurve(cost_weights, c_chosen[:, idx].sum(axis=1) / ref_c, q_chosen[:, idx].mean(axis=1) / ref_q)
        for key, value in curve.summary().items():
            samples[key].append(value)
    return {k: (_order_quantile(v, 0.025), _order_quantile(v, 0.975)) for k, v in samples.items()}


def _order_quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile as an order statistic (the ``⌈q·n⌉``-th smallest value), no interpolation.

    ``cost_to_97_25`` is ``inf`` in resamples that never reach the threshold; interpolating between
    a finite value and ``inf`` gives ``nan`` (and a RuntimeWarning). An order statistic is ``inf``
    exactly when more than ``1 − q`` of the resamples never reach it, which is what the bound means.
    """
    v = np.sort(np.asarray(values, dtype=np.float64))
    k = min(max(int(np.ceil(q * len(v))) - 1, 0), len(v) - 1)
    return float(v[k])


# ------------------------------------------------------------------ a user's data: reference, quality only
def is_quality_only(cost: np.ndarray, *, rtol: float = 1e-6) -> bool:
    """True when cost cannot tell the candidates apart, so a λ sweep has nothing to trade.

    That is the case when, on every query with every candidate's outcome, all candidates cost the
    same (equal prices and equal lengths, or no costs recorded: all 0), within ``rtol`` of the
    query's largest cost. Every routing choice then has cost share 1 (or 0), the AUC is the
    quality at share 1 divided by 101, and Q@10% is 0: meaningless. Such data is reported and tuned
    on quality alone (:func:`quality_only_score`).
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] < 2:
        return False
    c = c[np.isfinite(c).all(axis=1)]
    if c.shape[0] == 0:
        return False
    top = c.max(axis=1)
    return bool(np.all(top - c.min(axis=1) <= rtol * top))


def choose_reference(
    names: list[str], quality: np.ndarray, cost: np.ndarray, requested: str | None = None, *, tolerance: float = 0.05
) -> tuple[str, list[str]]:
    """The reference candidate of the shares, and notes (warnings) about the choice.

    Default: the candidate with the best mean quality on the data given (the training split), so
    "97.25% of the reference's quality" means 97.25% of the best single model. Exact ties go to the
    costliest of the tied (cost shares then stay ≤ 100% for them) and are noted. A requested
    reference whose mean quality is more than ``tolerance`` below the best one's is noted too:
    its shares run above 100% (a router AUC of 180% means a weak reference, not a strong router).
    """
    q = np.nanmean(np.asarray(quality, dtype=np.float64), axis=0)
    c = np.nanmean(np.asarray(cost, dtype=np.float64), axis=0)
    q = np.where(np.isfinite(q), q, -np.inf)
    best = int(np.argmax(q))
    notes: list[str] = []
    if requested is not None:
        if requested not in names:
            from .._exceptions import ConfigError

            raise ConfigError(f"reference {requested!r} is not a candidate; candidates: {names}")
        j = names.index(requested)
        if q[j] < (1 - tolerance) * q[best]:
            notes.append(
                f"the reference {requested} has mean training quality {q[j]:.3f}, below {names[best]}'s "
                f"{q[best]:.3f}: every quality share is relative to a weak model and runs above 100% "
                f"(the default reference is the best-quality model on the training split)"
            )
        return requested, notes
    tied = np.flatnonzero(q >= q[best] - 1e-9)
    if tied.size > 1:
        pick_ = int(tied[np.argmax(c[tied])])
        notes.append(
            f"a tie for the best mean training quality ({q[best]:.3f}) between "
            f"{', '.join(names[t] for t in tied)}: the reference is the costliest of them, {names[pick_]}"
        )
        best = pick_
    return names[best], notes


def quality_only_score(quality_pred: np.ndarray, cost_pred: np.ndarray, quality_true: np.ndarray, reference: int) -> float:
    """Mean quality of the best-predicted candidate per query (λ = 0), as a share of the reference's."""
    rows = np.arange(quality_true.shape[0])
    ref = float(np.mean(quality_true[:, reference]))
    chosen = quality_true[rows, pick(quality_pred, cost_pred, 0.0)].mean()
    return float(chosen / ref) if ref > 0 else 0.0


def bootstrap_quality(
    quality_pred: np.ndarray,
    cost_pred: np.ndarray,
    quality_true: np.ndarray,
    reference: int,
    *,
    n_resamples: int = 200,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95% intervals, test queries resampled, of quality-only metrics of the λ = 0 choice (in %).

    ``quality``: share of the reference's mean quality; ``vs_best_single``: share of the best
    single candidate's mean quality in that resample; ``gain_over_best_single``: the paired
    difference of those two means, in points of the best single model's quality.
    """
    rows = np.arange(quality_true.shape[0])
    chosen = quality_true[rows, pick(quality_pred, cost_pred, 0.0)]
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {"quality": [], "vs_best_single": [], "gain_over_best_single": []}
    for _ in range(n_resamples):
        idx = rng.integers(0, len(rows), size=len(rows))
        mean = chosen[idx].mean()
        single = quality_true[idx].mean(axis=0)
        best = float(single.max())
        ref = float(single[reference])
        out["quality"].append(100 * mean / ref if ref > 0 else 0.0)
        out["vs_best_single"].append(100 * mean / best if best > 0 else 0.0)
        out["gain_over_best_single"].append(100 * (mean - best) / best if best > 0 else 0.0)
    return {k: (_order_quantile(v, 0.025), _order_quantile(v, 0.975)) for k, v in out.items()}


def paired_bootstrap(
    picks_a: np.ndarray,
    picks_b: np.ndarray,
    quality_true: np.ndarray,
    cost_true: np.ndarray,
    reference: int,
    cost_weights: np.ndarray,
    *,
    n_resamples: int = 200,
    seed: int = 0,
) -> dict[str, tuple[float, float, float]]:
    """``(mean, 2.5%, 97.5%)`` of ``metric(b) − metric(a)`` with the *same* resampled test queries.

    ``picks_*`` (L, n): each router's choice per λ of ``cost_weights`` and query. Resampling both
    routers together cancels the queries' shared difficulty, so the interval is much narrower than
    the two routers' own intervals side by side.
    """
    rows = np.arange(quality_true.shape[0])
    qa, ca = quality_true[rows[None, :], picks_a], cost_true[rows[None, :], picks_a]
    qb, cb = quality_true[rows[None, :], picks_b], cost_true[rows[None, :], picks_b]
    rng = np.random.default_rng(seed)
    diffs: dict[str, list[float]] = {"auc": [], "quality_at_10": [], "quality_at_25": [], "cost_to_97_25": []}
    for _ in range(n_resamples):
        idx = rng.integers(0, len(rows), size=len(rows))
        ref_q, ref_c = quality_true[idx, reference].mean(), cost_true[idx, reference].sum()
        sa = TradeoffCurve(cost_weights, ca[:, idx].sum(1) / ref_c, qa[:, idx].mean(1) / ref_q).summary()
        sb = TradeoffCurve(cost_weights, cb[:, idx].sum(1) / ref_c, qb[:, idx].mean(1) / ref_q).summary()
        for k in diffs:
            diffs[k].append(sb[k] - sa[k])
    out = {}
    for k, v in diffs.items():
        arr = np.asarray(v)
        finite = arr[np.isfinite(arr)]
        mean = float(finite.mean()) if finite.size else float("nan")
        out[k] = (mean, _order_quantile(v, 0.025), _order_quantile(v, 0.975))
    return out
