"""Choosing the query representation by cross-validation on the training data (issue #19).

Candidates, simplest first: ``frozen`` (the base encoder as it is), ``tag-enhanced`` (the
projection trained on topic domains, :mod:`~mixllm_router.encoders.tag_enhanced`; it uses no
outcomes, so it is fitted once on all training texts) and ``fine-tuned`` (the outcome adapter,
:mod:`~mixllm_router.encoders.outcome_adapter`, at a few settings). The outcome adapter sees the
outcomes, so in every fold it is fitted on that fold's training part only, early stopping
included; the held-out fold is then embedded with it and predicted by the router's predictors
(the chosen predictor setting) fitted on the same part.

Each representation is scored per fold by the AUC of the quality-cost curve (or, on quality-only
data, the quality of the best-predicted candidate) and chosen by the paired one-standard-error
rule (:func:`~mixllm_router.evaluation.tuning.one_se_choice`), so a representation replaces the frozen one
only where it wins by more than the noise on the user's own data.

Beside the AUC the table gives the *within-task AUROC of per-query correctness*: for each task
(the data's ``task`` column; the whole set when there is none) and candidate, the AUROC of the
out-of-fold predicted quality against "the answer scored ≥ 0.5", averaged over the (task,
candidate) pairs with both outcomes. 0.5 means the representation tells nothing beyond the task.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import RouterConfig, make_config
from ..model import Outcomes
from ..policy.tradeoff import choose_reference, default_cost_weights, is_quality_only, quality_only_score, sweep

if TYPE_CHECKING:
    from ..data import RoutingDataset
    from ..encoders.base import QueryEncoder

__all__ = ["ADAPTER_GRID", "RepresentationResult", "cv_representations", "within_task_auroc"]

#: Outcome-adapter settings tried by ``--tune`` (the fine-tuned rows), simplest first.
ADAPTER_GRID: tuple[dict[str, Any], ...] = (
    {"rank": 16, "activation": "linear", "contrastive_weight": 0.0, "keep_weight": 1.0},
    {"rank": 32, "activation": "tanh", "contrastive_weight": 0.5, "keep_weight": 1.0},
    {"rank": 64, "activation": "tanh", "contrastive_weight": 0.5, "keep_weight": 0.1},
)


def _auroc(score: np.ndarray, label: np.ndarray) -> float:
    """Mann–Whitney AUROC with average ranks for ties; NaN without both classes."""
    pos = label.sum()
    neg = len(label) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    s = score[order]
    i = 0
    while i < len(s):  # average ranks over runs of equal scores
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * neg))


def within_task_auroc(quality_pred: np.ndarray, quality: np.ndarray, tasks: np.ndarray | None) -> float:
    """Mean AUROC of predicted quality for "scored ≥ 0.5", per (task, candidate) pair (module docstring)."""
    groups = [np.ones(len(quality), dtype=bool)] if tasks is None else [tasks == t for t in np.unique(tasks)]
    values = []
    for g in groups:
        for j in range(quality.shape[1]):
            ok = g & np.isfinite(quality[:, j])
            a = _auroc(quality_pred[ok, j], quality[ok, j] >= 0.5)
            if np.isfinite(a):
                values.append(a)
    return float(np.mean(values)) if values else float("nan")


@dataclass
class RepresentationResult:
    rows: list[dict[str, Any]]  # name, settings, score, score_se, gap, gap_se, auroc, seconds (+ oof summary)
    chosen: int
    metric: str  # "auc" or "quality"
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> dict[str, Any]:
        return self.rows[self.chosen]

    def table(self) -> str:
        what = "quality" if self.metric == "quality" else "AUC"
        w = max([44] + [len(r["label"]) + 2 for r in self.rows])
        lines = [f"{'representation (out-of-fold on the training data)':<{w}} {what:>7} {'±s.e.':>6} {'gap':>5} "
                 f"{'±s.e.':>5} {'AUROC':>6} {'fit s':>6}"]
        for i, r in enumerate(self.rows):
            mark = "*" if i == self.chosen else " "
            lines.append(f"{mark}{r['label']:<{w - 1}} {r['score']:7.2f} {r['score_se']:6.2f} {r['gap']:5.2f} "
                         f"{r['gap_se']:5.2f} {r['auroc']:6.3f} {r['seconds']:6.1f}")
        lines.append(f"* chosen: paired one-standard-error rule on the fold {what}; AUROC: within-task AUROC of "
                     "per-query correctness (0.5 = nothing beyond the task); fit s: representation fitting time, "
                     "all folds")
        return "\n".join(lines)


def cv_representations(
    data: RoutingDataset,
    *,
    config: RouterConfig | dict[str, Any] | None = None,
    encoder: QueryEncoder | None = None,
    embeddings: np.ndarray | None = None,
    representations: tuple[str, ...] = ("frozen", "tag-enhanced", "fine-tuned"),
    adapter_grid: tuple[dict[str, Any], ...] = ADAPTER_GRID,
    folds: int = 5,
    reference: str | None = None,
    adapter_threads: int | None = None,
    show_progress: bool = False,
    extra: Sequence[tuple[str, dict[str, Any], Callable[[np.ndarray], np.ndarray]]] = (),
) -> RepresentationResult:
    """Out-of-fold scores of each representation with the predictors of ``config`` (module docstring).

    ``extra``: more candidates as ``(label, settings, project)``, scored after the built-in ones;
    ``project(tr)`` gets the training rows of a fold (indices into the queries with complete
    quality and cost, in data order) and returns the embeddings of all those queries, fitted on
    ``tr`` only (e.g. :mod:`benchmarks.finetune_cv`, a fine-tuned encoder).
    """
    from ..router import MixLLMRouter, fold_assignment
    from .tuning import one_se_choice

    cfg = make_config(config)
    probe = MixLLMRouter(config=cfg, encoder=encoder)
    names = data.models
    quality, cost = data.matrix("quality", names), data.matrix("cost", names)
    complete = np.isfinite(quality).all(axis=1) & np.isfinite(cost).all(axis=1)
    if embeddings is None:
        embeddings, tokens = probe.embed(data.queries, show_progress=show_progress)
    else:
        tokens = probe.count_tokens(data.queries)
    texts = [q for q, ok in zip(data.queries, complete) if ok]
    e = np.asarray(embeddings, dtype=np.float32)[complete]
    tokens, quality, cost = tokens[complete], quality[complete], cost[complete]
    tasks = None
    if data.has_column("task"):
        frame = data.frame.drop_duplicates("query_id").set_index("query_id")["task"]
        tasks = np.array([str(frame.get(q)) for q, ok in zip(data.query_ids, complete) if ok])
    ref = names.index(choose_reference(names, quality, cost, reference or cfg.reference_model)[0])
    metric = "quality" if is_quality_only(cost) else "auc"
    lam = default_cost_weights(float(cost.mean()))
    assignment = fold_assignment(len(e), folds, cfg.seed)
    masks = [assignment == f for f in range(folds)]

    def score(q: np.ndarray, c: np.ndarray, m: np.ndarray) -> float:
        if metric == "quality":
            return 100 * quality_only_score(q[m], c[m], quality[m], ref)
        return 100 * sweep(q[m], c[m], quality[m], cost[m], ref, lam).auc()

    def oof(project_for_fold: Any) -> tuple[np.ndarray, np.ndarray, float]:
        router = MixLLMRouter(names, config=cfg, encoder=probe.encoder)
        q_oof, c_oof = np.zeros_like(quality), np.zeros_like(cost)
        spent = 0.0
        for f in range(folds):
            tr, va = np.flatnonzero(assignment != f), np.flatnonzero(assignment == f)
            t0 = time.perf_counter()
            z = project_for_fold(tr)
            spent += time.perf_counter() - t0
            models = router.model.fit_predictors(names, Outcomes(z[tr], tokens[tr], quality[tr], cost[tr]))
            q, c, _ = router.model.predict_with(models, names, z[va], tokens[va], z[tr])
            q_oof[va], c_oof[va] = q, c
        return q_oof, c_oof, spent

    rows: list[dict[str, Any]] = []
    candidates: list[tuple[str, dict[str, Any], Any]] = []
    if "frozen" in representations:
        candidates.append(("frozen", {}, lambda tr: e))
    if "tag-enhanced" in representations:
        from ..encoders.tag_enhanced import fit_tag_enhanced_encoder

        t0 = time.perf_counter()
        tag_enc = fit_tag_enhanced_encoder(probe.encoder, texts, embeddings=e, show_progress=show_progress)
        tag_seconds = time.perf_counter() - t0
        z_tag = tag_enc.project(e)
        candidates.append(("tag-enhanced", {"seconds_once": tag_seconds}, lambda tr: z_tag))
    if "fine-tuned" in representations:
        from ..encoders.outcome_adapter import fit_outcome_adapter

        for settings in adapter_grid:
            def project(tr: np.ndarray, settings: dict[str, Any] = settings) -> np.ndarray:
                fit = fit_outcome_adapter(e[tr], quality[tr], seed=cfg.seed, threads=adapter_threads, **settings)
                from ..encoders.tag_enhanced import _project

                return _project(e, fit.a, fit.b, settings.get("activation", "tanh"))

            candidates.append(("fine-tuned", dict(settings), project))
    candidates.extend(extra)
    per_fold: list[list[float]] = []
    for name, settings, project in candidates:
        q_oof, c_oof, spent = oof(project)
        scores = [score(q_oof, c_oof, m) for m in masks]
        per_fold.append(scores)
        label = name if name != "fine-tuned" else "fine-tuned (" + ", ".join(
            f"{k}={v}" for k, v in settings.items()) + ")"
        summary = sweep(q_oof, c_oof, quality, cost, ref, lam).summary()
        rows.append({
            "name": name, "label": label, "settings": settings, "score": float(np.mean(scores)),
            "score_se": float(np.std(scores, ddof=1) / np.sqrt(folds)), "fold_scores": scores,
            "auroc": within_task_auroc(q_oof, quality, tasks), "seconds": spent + settings.get("seconds_once", 0.0),
            **summary,
        })
    chosen, gaps, gap_se = one_se_choice(per_fold)
    for r, g, s in zip(rows, gaps, gap_se):
        r.update(gap=g, gap_se=s)
    return RepresentationResult(rows, chosen, metric, {"n": len(e), "tasks": None if tasks is None else
                                                        sorted(set(tasks.tolist()))})


def build_representation(
    row: dict[str, Any], data: RoutingDataset, *, config: RouterConfig | dict[str, Any] | None = None,
    encoder: QueryEncoder | None = None, show_progress: bool = False,
) -> QueryEncoder | None:
    """The encoder of a chosen row of :func:`cv_representations`, fitted on all of ``data``.

    ``None`` for ``frozen`` (the router builds its base encoder as configured).
    """
    from ..router import MixLLMRouter

    if row["name"] == "frozen":
        return encoder
    cfg = make_config(config)
    probe = MixLLMRouter(config=cfg, encoder=encoder)
    names = data.models
    quality = data.matrix("quality", names)
    if row["name"] == "tag-enhanced":
        from ..encoders.tag_enhanced import fit_tag_enhanced_encoder

        emb, _ = probe.embed(data.queries, show_progress=show_progress)
        return fit_tag_enhanced_encoder(probe.encoder, data.queries, embeddings=emb, show_progress=show_progress)
    from ..encoders.outcome_adapter import outcome_adapter_encoder

    emb, _ = probe.embed(data.queries, show_progress=show_progress)
    settings = {k: v for k, v in row["settings"].items() if k != "seconds_once"}
    return outcome_adapter_encoder(probe.encoder, emb, quality, candidates=names, seed=cfg.seed, **settings)
