"""Choosing the router's knobs by cross-validation on the training data only.

For each candidate setting, the router's out-of-fold predictions on the training queries (k-fold:
every query predicted by predictors that never saw it) are swept over λ and scored by the AUC of
the quality-cost curve (DESIGN §2), per fold. Test data never enters this.

The winner follows the paired one-standard-error rule (:func:`one_se_choice`): the first setting
in grid order (the grid lists simpler settings first) whose mean fold gap to the best setting is
within one standard error of that gap, paired over the folds. On 0/1 outcomes the AUCs of
reasonable settings differ by less than their noise, and picking the nominal best would be
picking noise; but a setting that loses on every fold is not noise.

The reference of the shares is the best-quality candidate of the training data (as in the
evaluation). On quality-only data (:func:`~mixllm_router.policy.tradeoff.is_quality_only`: every
candidate costs the same, or nothing) the AUC is the same for every setting, so the score is the
out-of-fold mean quality of the best-predicted candidate (λ = 0), in % of the reference's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._exceptions import DataError
from ..config import RouterConfig, make_config
from ..policy.tradeoff import choose_reference, default_cost_weights, is_quality_only, quality_only_score, sweep

if TYPE_CHECKING:
    from ..data import RoutingDataset
    from ..encoders.base import QueryEncoder

__all__ = ["DEFAULT_GRID", "TuningResult", "one_se_choice", "tune"]

#: The settings tried by default, simplest (most regularised, fewest parts) first. They include
#: the evaluation's plain baselines in the router's form (ridge at the baseline's penalty 1, kNN
#: with k = 40), so tuning can choose them whenever they win by more than the noise.
DEFAULT_GRID: tuple[dict[str, Any], ...] = (
    {"quality_model": "ridge", "prior_strength": 30.0},
    {"quality_model": "ridge", "prior_strength": 10.0},
    {"quality_model": "ridge", "prior_strength": 3.0},
    {"quality_model": "ridge", "prior_strength": 1.0},
    {"quality_model": "knn", "knn_k": 160},
    {"quality_model": "knn", "knn_k": 40},
    {"quality_model": "ridge+knn", "prior_strength": 10.0, "knn_k": 80},
)


@dataclass(frozen=True)
class TuningResult:
    best: RouterConfig
    rows: list[tuple[dict[str, Any], dict[str, float]]]  # (overrides, out-of-fold summary + fold score s.e.)
    metric: str = "auc"  # "auc", or "quality" on quality-only data
    chosen: int = 0  # index of the chosen row
    reference: str = ""

    @property
    def setting(self) -> dict[str, Any]:
        """The chosen overrides (what the table marks with ``*``)."""
        return dict(self.rows[self.chosen][0]) if self.rows else {}

    def table(self) -> str:
        w = max([58] + [len(", ".join(f"{k}={v}" for k, v in o.items())) + 2 for o, _ in self.rows])
        if self.metric == "quality":
            lines = [f"quality only (every candidate costs the same): settings scored by the out-of-fold quality of "
                     f"the best-predicted candidate, in % of {self.reference}",
                     f"{'setting (out-of-fold on the training data)':<{w}} {'quality':>7} {'±s.e.':>6} {'gap':>5} "
                     f"{'±s.e.':>5}"]
        else:
            lines = [f"{'setting (out-of-fold on the training data)':<{w}} {'AUC':>6} {'±s.e.':>6} {'gap':>5} "
                     f"{'±s.e.':>5} {'Q@10%':>6} "
                     f"{'Q@25%':>6} {'C@97.25%':>9}"]
        for i, (overrides, s) in enumerate(self.rows):
            label = ", ".join(f"{k}={v}" for k, v in overrides.items())
            mark = "*" if i == self.chosen else " "
            if self.metric == "quality":
                lines.append(f"{mark}{label:<{w - 1}} {s['score']:7.1f} {s['score_se']:6.2f} {s['gap']:5.2f} "
                             f"{s['gap_se']:5.2f}")
                continue
            c97 = f"{s['cost_to_97_25']:9.1f}" if np.isfinite(s["cost_to_97_25"]) else f"{'never':>9}"
            lines.append(f"{mark}{label:<{w - 1}} {s['auc']:6.1f} {s['auc_se']:6.2f} {s['gap']:5.2f} "
                         f"{s['gap_se']:5.2f} {s['quality_at_10']:6.1f} "
                         f"{s['quality_at_25']:6.1f} {c97}")
        what = "quality" if self.metric == "quality" else "AUC"
        lines.append(f"* chosen: the first setting whose gap to the best mean fold {what} is within one standard error "
                     "of that gap (paired over the folds)")
        return "\n".join(lines)


def one_se_choice(fold_scores: Sequence[Sequence[float]]) -> tuple[int, list[float], list[float]]:
    """The paired one-standard-error rule over settings scored on the same folds.

    ``fold_scores[s][f]``: setting ``s``'s score on fold ``f`` (higher is better). With ``b`` the
    best mean, each setting's gap is ``d_s = mean_f (x_bf − x_sf)`` and its standard error
    ``se_s = std_f(x_bf − x_sf) / √F`` (paired: the folds' shared ups and downs cancel). The choice
    is the first setting (the grid lists simpler ones first) with ``d_s ≤ se_s``.

    Why paired: the unpaired rule (best mean minus the s.e. of the best's fold scores) compares a
    gap against the spread of fold difficulty, which is common to all settings. On synthetic data
    with 9 candidates it kept the first ridge even where kNN won on every fold
    (docs/benchmarks.md §10).
    """
    x = np.asarray(fold_scores, dtype=np.float64)
    best = int(np.argmax(x.mean(axis=1)))
    diff = x[best][None, :] - x
    gaps = diff.mean(axis=1)
    se = diff.std(axis=1, ddof=1) / np.sqrt(x.shape[1]) if x.shape[1] > 1 else np.zeros(len(x))
    chosen = next(i for i in range(len(x)) if gaps[i] <= se[i] + 1e-12)
    return chosen, gaps.tolist(), se.tolist()


def tune(
    data: RoutingDataset,
    *,
    config: RouterConfig | dict[str, Any] | None = None,
    grid: Sequence[dict[str, Any]] = DEFAULT_GRID,
    encoder: QueryEncoder | None = None,
    embeddings: np.ndarray | None = None,
    reference: str | None = None,
    folds: int = 5,
    show_progress: bool = False,
) -> TuningResult:
    """Pick the grid setting with the best out-of-fold AUC on ``data`` (``show_progress``: the embedding's bar)."""
    from ..router import MixLLMRouter, fold_assignment

    base = make_config(config)
    probe = MixLLMRouter(config=base, encoder=encoder)
    names = data.models
    quality, cost = data.matrix("quality", names), data.matrix("cost", names)
    complete = np.isfinite(quality).all(axis=1) & np.isfinite(cost).all(axis=1)
    if complete.sum() < 4 * folds:
        raise DataError(f"tuning needs at least {4 * folds} queries with every model's outcome")
    if embeddings is None:
        embeddings, tokens = probe.embed(data.queries, show_progress=show_progress)
    else:
        tokens = probe.count_tokens(data.queries)
    embeddings, tokens = np.asarray(embeddings)[complete], tokens[complete]
    quality, cost = quality[complete], cost[complete]
    ref_name, _ = choose_reference(names, quality, cost, reference or base.reference_model)
    ref = names.index(ref_name)
    metric = "quality" if is_quality_only(cost) else "auc"
    grid_lam = default_cost_weights(float(cost.mean()))
    assignment = fold_assignment(len(embeddings), folds, base.seed)
    rows: list[tuple[dict[str, Any], dict[str, float]]] = []
    fold_scores: list[list[float]] = []
    for overrides in grid:
        cfg = make_config(base, **overrides)
        router = MixLLMRouter(names, config=cfg, encoder=probe.encoder)
        q_oof, c_oof = router.out_of_fold(names, embeddings, tokens, quality, cost, folds=folds)
        summary = sweep(q_oof, c_oof, quality, cost, ref, grid_lam).summary()
        masks = [assignment == f for f in range(folds)]
        if metric == "quality":
            per_fold = [100 * quality_only_score(q_oof[m], c_oof[m], quality[m], ref) for m in masks]
        else:
            per_fold = [100 * sweep(q_oof[m], c_oof[m], quality[m], cost[m], ref, grid_lam).auc() for m in masks]
        mean, se = float(np.mean(per_fold)), float(np.std(per_fold, ddof=1) / np.sqrt(folds))
        summary.update(score=mean, score_se=se, auc_se=se if metric == "auc" else float("nan"))
        rows.append((dict(overrides), summary))
        fold_scores.append(per_fold)
    chosen, gaps, gap_se = one_se_choice(fold_scores)
    for (_, summary), g, gse in zip(rows, gaps, gap_se):
        summary.update(gap=g, gap_se=gse)
    return TuningResult(make_config(base, **rows[chosen][0]), rows, metric=metric, chosen=chosen, reference=ref_name)
