"""Replay simulation of online learning: does feedback make a deployed router better?

Protocol (issue 7). For each offline share ``s`` (10%, 30%, 50%):

1. shuffle the training queries (seeded); fit the router on the first ``s`` of them ("offline");
2. fix the cost knob once: ``λ`` is the offline router's calibrated weight for ``cost_share``
   (default 0.25 of the reference cost), and *both* routers below use that same ``λ``;
3. stream the remaining training queries, then every test query, as if live. The **online**
   router routes each query (exploration bonus ``α·u`` included), the recorded outcome of the
   candidate it chose becomes binary feedback (flipped with probability ``label_noise``), its
   recorded cost is attached as a call through :meth:`~MixLLMRouter.invoke` would, and
   :meth:`~MixLLMRouter.feedback` applies it before the next query. The **frozen** router (the
   same offline fit) routes the same stream and never learns;
4. report, on the test part of the stream (prequential: each query is routed *before* its
   feedback is applied), quality and cost as % of always using the reference model, and learning
   curves (a sliding window over the whole stream) as a PNG and a table;
5. at checkpoints during the training part of the stream, the AUC (DESIGN §2) of the online
   router's current predictions on the test set (no exploration; the test queries are not yet
   seen, so this is an honest held-out measure) beside the frozen router's;
6. the **full-information ceiling**: the same router refitted in batch on the offline queries plus
   every training query of the stream with *every* candidate's outcome (what feedback could teach
   at best: bandit feedback reveals one candidate per query). Its test AUC, and its quality at
   the same λ against the frozen curve at its cost, bound what any online learner can gain here;
7. a paired bootstrap (test queries resampled, every router's choices fixed) of the gain at
   equal cost, because a 945-query test set moves single quality-at-cost points by a point or more.

Drift scenario (``drift=``): from the first test query on, one candidate answers as another one
did (its recorded quality is replaced by the other's, its cost is kept), as when a provider
silently swaps or degrades the model behind a name. Both routers were fitted before the change;
only the online one can notice it, through feedback. ``drift="auto"`` picks, on the training data
only, the non-reference candidate that a router fitted on all training queries uses most at
``cost_share``, and makes it answer like the candidate with the lowest mean training quality.

Hold-out experiment: train offline without one candidate (``zero-one-ai/Yi-34B-Chat``), add it
live with :meth:`~MixLLMRouter.add_candidate` and no labelled examples, stream the rest of the
training queries, and count the feedback events until the test AUC reaches 90% of that of a
router trained with the candidate from the start (same offline queries). Because the router
without the candidate already has most of that AUC, we also report the events needed to close
90% of the *gap* between the two.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._exceptions import ConfigError, DataError
from ..config import RouterConfig, make_config
from ..policy.tradeoff import TradeoffCurve, default_cost_weights, pick, sweep
from ..router import MixLLMRouter
from .online_report import HoldoutResult, OnlineReport, ShareResult, StreamTrace, plot_online

if TYPE_CHECKING:
    from ..data import RoutingDataset
    from ..encoders.base import QueryEncoder

__all__ = [
    "HoldoutResult",
    "OnlineReport",
    "ShareResult",
    "StreamTrace",
    "drift_outcomes",
    "plot_online",
    "simulate_online",
]

DEFAULT_REFERENCE = "gpt-4-1106-preview"


# ---------------------------------------------------------------------------------- simulation
def drift_outcomes(data: RoutingDataset, candidate: str, like: str) -> RoutingDataset:
    """A copy of ``data`` in which ``candidate``'s recorded quality is ``like``'s, query by query.

    Its cost (and every other column and model) is unchanged: the name still bills the same, but
    the answers are now another model's. Used to replay a silent change of a candidate.
    """
    from ..data import RoutingDataset

    for name in (candidate, like):
        if name not in data.models:
            raise DataError(f"drift: {name!r} is not in the data; models: {data.models}")
    if candidate == like:
        raise ConfigError("drift: a candidate cannot drift to itself")
    frame = data.frame.copy()
    like_quality = frame.loc[frame["model"] == like].set_index("query_id")["quality"]
    rows = (frame["model"] == candidate).to_numpy()
    new_quality = frame.loc[rows, "query_id"].map(like_quality).to_numpy(dtype=np.float64)
    if not np.isfinite(new_quality).all():
        raise DataError(f"drift: {like!r} has no recorded quality for some queries {candidate!r} answered")
    frame.loc[rows, "quality"] = new_quality
    return RoutingDataset.from_pandas(frame, source=f"{data.source}[{candidate} answers like {like}]")


def _auto_drift(router: MixLLMRouter, train: RoutingDataset, emb: np.ndarray, names: list[str], reference: str,
                cost_share: float) -> tuple[str, str]:
    """Train-only choice for ``drift="auto"``: (the most-used non-reference candidate, the worst one)."""
    lam = router.resolve_cost_weight(cost_share=cost_share)
    chosen = _routed_choices(router, train.queries, emb, lam)
    counts = np.bincount(chosen, minlength=len(names)).astype(float)
    counts[names.index(reference)] = -1.0
    candidate = names[int(np.argmax(counts))]
    mean_quality = train.matrix("quality", names).mean(axis=0)
    mean_quality[names.index(candidate)] = np.inf
    return candidate, names[int(np.argmin(mean_quality))]


def _test_auc(router: MixLLMRouter, queries: list[str], emb: np.ndarray, q_true: np.ndarray, c_true: np.ndarray,
              ref: int, grid: np.ndarray) -> float:
    p = router.predict(queries, embeddings=emb)
    return sweep(p.quality, p.cost, q_true, c_true, ref, grid).auc()


def _frozen_curve(router: MixLLMRouter, queries: list[str], emb: np.ndarray, q_true: np.ndarray,
                  c_true: np.ndarray, ref: int, grid: np.ndarray) -> tuple[TradeoffCurve, np.ndarray]:
    """The frozen router's curve on ``queries`` over λ, scored as it routes (q + α·u − λ·c), and its picks."""
    p = router.predict(queries, embeddings=emb)
    score_q = p.quality + router.config.exploration * p.uncertainty
    choices = np.stack([pick(score_q, p.cost, float(lam)) for lam in grid])
    return sweep(score_q, p.cost, q_true, c_true, ref, grid), choices


def _routed_choices(router: MixLLMRouter, queries: list[str], emb: np.ndarray, lam: float) -> np.ndarray:
    """The router's picks at ``λ`` as it routes (q + α·u − λ·c), without learning."""
    p = router.predict(queries, embeddings=emb)
    return pick(p.quality + router.config.exploration * p.uncertainty, p.cost, lam)


def _stream(
    router: MixLLMRouter,
    queries: list[str],
    emb: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    lam: float,
    *,
    learn: bool,
    rng: np.random.Generator,
    label_noise: float,
    on_event: Any = None,
    thompson: float = 0.0,
    recalibrate_every: int = 0,
    cost_share: float | None = None,
) -> tuple[StreamTrace, float, float]:
    """Route (and with ``learn``, give feedback on) every query in order.

    With ``thompson > 0`` the online router explores by Thompson sampling
    (:func:`~mixllm_router.learning.learner.thompson_scores` on its predictions) instead of its UCB bonus,
    and the sampled candidate is routed through the public API (``candidates=[choice]``).
    With ``recalibrate_every = N > 0`` the learning router re-solves λ for ``cost_share`` every N
    events on the last N queries (:meth:`MixLLMRouter.recalibrate`): it holds its budget.
    """
    from ..learning.learner import thompson_scores

    ts_rng = np.random.default_rng(int(rng.integers(2**31)))
    names = router.candidate_names
    n = len(queries)
    chosen = np.empty(n, dtype=np.int64)
    t_route = t_fb = 0.0
    if not learn:  # one batch: the frozen router's choices do not depend on order
        t0 = time.perf_counter()
        decisions = router.route_batch(queries, cost_weight=lam, embeddings=emb)
        t_route = time.perf_counter() - t0
        chosen[:] = [names.index(d.chosen) for d in decisions]
    else:
        for i in range(n):
            if on_event is not None:
                on_event(i)
            if recalibrate_every and i and i % recalibrate_every == 0 and cost_share is not None:
                router.recalibrate(queries[i - recalibrate_every : i], embeddings=emb[i - recalibrate_every : i])
                lam = router.resolve_cost_weight(cost_share=cost_share)
            t0 = time.perf_counter()
            if thompson:
                p = router.predict([queries[i]], embeddings=emb[i : i + 1])
                j = int(np.argmax(thompson_scores(p.quality, p.cost, p.uncertainty, lam, thompson, ts_rng)[0]))
                d = router.route_batch([queries[i]], cost_weight=lam, embeddings=emb[i : i + 1],
                                       candidates=[names[j]])[0]
            else:
                d = router.route_batch([queries[i]], cost_weight=lam, embeddings=emb[i : i + 1])[0]
            t1 = time.perf_counter()
            j = names.index(d.chosen)
            chosen[i] = j
            outcome = float(quality[i, j])
            if label_noise and rng.random() < label_noise:
                outcome = 1.0 - outcome
            router.decisions.update(d.decision_id, answered_by=d.chosen, cost_usd=float(cost[i, j]))
            router.feedback(d.decision_id, outcome)
            t_route += t1 - t0
            t_fb += time.perf_counter() - t1
    rows = np.arange(n)
    return StreamTrace(chosen, quality[rows, chosen], cost[rows, chosen]), t_route, t_fb


def simulate_online(
    train: RoutingDataset,
    test: RoutingDataset,
    *,
    shares: Sequence[float] = (0.1, 0.3, 0.5),
    cost_share: float = 0.25,
    label_noise: float = 0.0,
    thompson: float = 0.0,
    recalibrate_every: int = 0,
    config: RouterConfig | dict[str, Any] | None = None,
    encoder: QueryEncoder | None = None,
    reference: str | None = None,
    holdout: str | None = None,
    holdout_share: float = 0.3,
    holdout_prior: str | None = "similar",
    drift: tuple[str, str] | str | None = None,
    eval_every: int = 250,
    seed: int = 0,
    show_progress: bool = False,
) -> OnlineReport:
    """Run the replay simulation described in the module docstring.

    ``drift``: ``(candidate, like)`` or ``"auto"``; from the first test query on, ``candidate``
    answers as ``like`` did (:func:`drift_outcomes`). ``None``: the recorded outcomes as they are.
    """
    if not 0 <= label_noise < 0.5:
        raise ConfigError(f"label_noise must be in [0, 0.5), got {label_noise}")
    if recalibrate_every < 0 or recalibrate_every == 1:
        raise ConfigError(f"recalibrate_every must be 0 (off) or >= 2, got {recalibrate_every}")
    if not shares or not all(0 < s < 1 for s in shares):
        raise ConfigError(f"offline shares must be in (0, 1), got {list(shares)}")
    cfg = make_config(config)
    names = list(train.models)
    if set(test.models) != set(names):
        raise DataError(f"train and test have different models: {sorted(names)} vs {sorted(test.models)}")
    if reference is None:
        reference = DEFAULT_REFERENCE if DEFAULT_REFERENCE in names else None
    base = MixLLMRouter(config=cfg, encoder=encoder)
    log = (lambda m: print(m, flush=True)) if show_progress else (lambda m: None)
    log("embedding train and test queries ...")
    train_emb, _ = base.embed(train.queries, show_progress=show_progress)
    test_emb, _ = base.embed(test.queries, show_progress=show_progress)
    q_train, c_train = train.matrix("quality", names), train.matrix("cost", names)
    q_test, c_test = test.matrix("quality", names), test.matrix("cost", names)
    if not (np.isfinite(q_train).all() and np.isfinite(q_test).all() and np.isfinite(c_train).all()
            and np.isfinite(c_test).all()):
        raise DataError("the replay needs every candidate's outcome for every query (load with require_complete=True)")
    if reference is None:
        reference = names[int(np.argmax(c_train.mean(axis=0)))]
    if reference not in names:
        raise DataError(f"reference model {reference!r} is not in the data; models: {names}")
    if holdout is not None:  # checked before the long streams, not after them
        if holdout not in names:
            raise DataError(f"hold-out candidate {holdout!r} is not in the data; models: {names}")
        if holdout == reference:
            raise ConfigError("the hold-out candidate cannot be the reference model")
    drift_pair: tuple[str, str] | None = None
    if drift is not None and drift != "auto":
        if isinstance(drift, str) or len(drift) != 2:
            raise ConfigError(f"drift must be 'auto' or a (candidate, like) pair, got {drift!r}")
        drift_pair = (str(drift[0]), str(drift[1]))
        test = drift_outcomes(test, *drift_pair)  # before the long streams: bad names fail here
        q_test = test.matrix("quality", names)
    ref = names.index(reference)
    grid = default_cost_weights(float(np.mean(c_test)), n=200)
    order = np.random.default_rng(seed).permutation(len(train))
    ids = train.query_ids
    results: list[ShareResult] = []

    def fitted(rows: np.ndarray, models: list[str]) -> MixLLMRouter:
        r = MixLLMRouter(models, config=cfg.model_copy(update={"reference_model": reference}), encoder=base.encoder)
        r.fit(train.subset([ids[i] for i in rows]).with_models(models), embeddings=train_emb[rows])
        return r

    full = fitted(order, names)  # full-information ceiling: every training query, every candidate
    if drift == "auto":
        drift_pair = _auto_drift(full, train, train_emb, names, reference, cost_share)
        test = drift_outcomes(test, *drift_pair)
        q_test = test.matrix("quality", names)
    if drift_pair is not None:
        log(f"drift: from the first test query on, {drift_pair[0]} answers like {drift_pair[1]}")

    for share in shares:
        n_off = int(round(share * len(train)))
        off, rest = order[:n_off], order[n_off:]
        online, frozen = fitted(off, names), fitted(off, names)
        lam = frozen.resolve_cost_weight(cost_share=cost_share)
        stream_q = [train.queries[i] for i in rest] + test.queries
        stream_e = np.vstack([train_emb[rest], test_emb])
        stream_quality = np.vstack([q_train[rest], q_test])
        stream_cost = np.vstack([c_train[rest], c_test])
        rng = np.random.default_rng(seed + 1)
        frozen_trace, t_fr, _ = _stream(frozen, stream_q, stream_e, stream_quality, stream_cost, lam,
                                        learn=False, rng=rng, label_noise=label_noise)
        auc_events: list[int] = []
        auc_online: list[float] = []

        def checkpoint(i: int, online: MixLLMRouter = online, n_rest: int = len(rest),
                       auc_events: list[int] = auc_events, auc_online: list[float] = auc_online) -> None:
            if i <= n_rest and (i % eval_every == 0 or i == n_rest):
                auc_events.append(i)
                auc_online.append(_test_auc(online, test.queries, test_emb, q_test, c_test, ref, grid))

        log(f"offline share {share:.0%}: {n_off} offline queries, streaming {len(stream_q)} ...")
        online_trace, t_route, t_fb = _stream(online, stream_q, stream_e, stream_quality, stream_cost, lam,
                                              learn=True, rng=rng, label_noise=label_noise, on_event=checkpoint,
                                              thompson=thompson, recalibrate_every=recalibrate_every,
                                              cost_share=cost_share)
        frozen_curve, frozen_choices = _frozen_curve(frozen, test.queries, test_emb, q_test, c_test, ref,
                                                     np.concatenate([grid, [lam]]))
        result = ShareResult(
            offline_share=share, n_offline=n_off, n_stream_train=len(rest), n_test=len(test),
            cost_weight=lam, names=names, online=online_trace, frozen=frozen_trace,
            ref_quality=stream_quality[:, ref], ref_cost=stream_cost[:, ref],
            auc_events=auc_events, auc_online=auc_online,
            auc_frozen=_test_auc(frozen, test.queries, test_emb, q_test, c_test, ref, grid),
            frozen_curve=frozen_curve, frozen_choices=frozen_choices,
            test_quality=q_test, test_cost=c_test, reference_index=ref,
            auc_full=_test_auc(full, test.queries, test_emb, q_test, c_test, ref, grid),
            full_choices=_routed_choices(full, test.queries, test_emb, lam),
            feedback_seconds=t_fb, route_seconds=t_route,
            changes_detected=int(online.learning.stats["changes_detected"]),
        )
        results.append(result)
        log("  " + json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.summary().items()}))

    holdout_result = None
    if holdout is not None:
        holdout_result = _holdout(
            train, test, names, holdout, holdout_share, holdout_prior, cost_share, reference, order,
            train_emb, test_emb, q_train, c_train, q_test, c_test, grid, fitted, eval_every, label_noise, seed, log,
            thompson=thompson,
        )
    return OnlineReport(reference=reference, cost_share=cost_share, label_noise=label_noise,
                        config=cfg.model_dump(mode="json"), shares=results, holdout=holdout_result,
                        thompson=thompson, recalibrate_every=recalibrate_every, drift=drift_pair)


def _holdout(
    train: RoutingDataset, test: RoutingDataset, names: list[str], holdout: str, share: float, prior: str | None,
    cost_share: float, reference: str, order: np.ndarray, train_emb: np.ndarray, test_emb: np.ndarray,
    q_train: np.ndarray, c_train: np.ndarray, q_test: np.ndarray, c_test: np.ndarray, grid: np.ndarray,
    fitted: Any, eval_every: int, label_noise: float, seed: int, log: Any, thompson: float = 0.0,
) -> HoldoutResult:
    n_off = int(round(share * len(train)))
    off, rest = order[:n_off], order[n_off:]
    without = [n for n in names if n != holdout]
    ref_all = names.index(reference)
    with_router = fitted(off, names)
    auc_with = _test_auc(with_router, test.queries, test_emb, q_test, c_test, ref_all, grid)
    cols = [names.index(n) for n in without]
    wo_router = fitted(off, without)
    auc_without = _test_auc(wo_router, test.queries, test_emb, q_test[:, cols], c_test[:, cols],
                            without.index(reference), grid)
    online = fitted(off, without)
    lam = online.resolve_cost_weight(cost_share=cost_share)
    source = online.add_candidate(holdout, prior=prior)
    order_names = online.candidate_names  # `without` + the hold-out, last
    perm = [names.index(n) for n in order_names]
    qo, co, qt, ct = q_train[:, perm], c_train[:, perm], q_test[:, perm], c_test[:, perm]
    ref = order_names.index(reference)
    events: list[int] = []
    aucs: list[float] = []

    def checkpoint(i: int) -> None:
        if i % max(eval_every // 5, 1) == 0:
            events.append(i)
            aucs.append(_test_auc(online, test.queries, test_emb, qt, ct, ref, grid))

    log(f"hold-out {holdout}: prior {source}, streaming {len(rest)} training queries ...")
    rng = np.random.default_rng(seed + 2)
    trace, _, _ = _stream(online, [train.queries[i] for i in rest], train_emb[rest], qo[rest], co[rest], lam,
                          learn=True, rng=rng, label_noise=label_noise, on_event=checkpoint, thompson=thompson)
    events.append(len(rest))
    aucs.append(_test_auc(online, test.queries, test_emb, qt, ct, ref, grid))
    h = len(order_names) - 1
    chosen_share = [float(np.mean(trace.chosen[a:b] == h)) for a, b in zip(events[:-1], events[1:]) if b > a]
    return HoldoutResult(name=holdout, offline_share=share, prior=source, auc_with=auc_with, auc_without=auc_without,
                         events=events, auc=aucs, chosen_share=chosen_share)


_MOVED_TO_CLI = {"add_simulate_online_parser": "add_parser", "run_simulate_online": "run"}


def __getattr__(name: str) -> object:
    """The ``simulate-online`` command's parser and runner moved to the CLI package (evaluation knows
    nothing of argparse): say where, instead of a bare AttributeError."""
    if name in _MOVED_TO_CLI:
        raise AttributeError(
            f"mixllm_router.evaluation.online.{name} moved: use mixllm_router.cli.simulate_online.{_MOVED_TO_CLI[name]}"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
