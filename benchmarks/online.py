"""Online learning on RouterBench: the replay simulation and the cost of one feedback event.

Part 1 (``--part sim``): ``mixllm_router.evaluation.online.simulate_online`` with the bundled
MiniLM encoder: offline shares 10/30/50% of the train queries, the rest of the train queries and
then the test queries streamed as live feedback, λ fixed at ``--cost-share`` of GPT-4's cost for
both the online and the frozen router; then ``zero-one-ai/Yi-34B-Chat`` held out and added live
with no labelled examples. Writes online.json / online.txt / online.png to ``--out``.

Part 2 (``--part cost``): wall time and CPU time of one feedback event on a RouterBench-sized
router (11 candidates, 384-dim embeddings, 2,205 training queries): inline without a journal,
inline with the journal (fsync and no fsync), and batched (``batch_size=32``). Measured with
process CPU time as well as wall time because the benchmark machine may be shared.

Part 3 (``--part cv``): choose the exploration policy by cross-validation on the **train files
only**. For each of 5 folds of the train queries and each seed, the other 4 folds are shuffled,
the first ``share`` of the train size is the offline fit, the rest is streamed with bandit feedback,
and the final router is scored on the held-out fold: AUC and quality at equal cost against the
frozen router, plus the full-information ceiling (every candidate's outcome for every streamed
query). It drives the library's own pieces (``LinUCBRidge`` with its Sherman-Morrison ``update``,
``features``, ``thompson_scores``, ``sweep``; λ from ``MixLLMRouter.fit``'s calibration) in a
tight loop rather than ``route``/``feedback``, which makes it ~30× faster; for the default ridge
router the choices are the same (on the 10% test replay it gives the library's numbers exactly).
Policies: ``ucb:α``, ``thompson:σ``, and ``feedback:γ`` (UCB with the config's α plus the feedback
score ``γ·κ·(π − 1/m)`` of the library's ``FeedbackScoreNet``, trained on every event as the router
trains it), so ``feedback_weight`` is chosen on the train files, never on the test replay.

Part 4 (``--part replay-cv``): the replay protocol itself inside the train files (each of 5 folds
held out in turn as the live "test" part), through the router's own ``route``/``feedback``, for a
list of setting variants (``--variants``); slower than part 3, but it covers any setting.

Run:  python benchmarks/online.py [--part sim|cost|cv|replay-cv|all] [--out runs/online] [--config '{"exploration": 0.1}']
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path


def feedback_cost(n_events: int = 400) -> list[dict[str, float]]:
    from mixllm_router import MixLLMRouter, load_routerbench

    warnings.simplefilter("ignore")
    train = load_routerbench(split="train")
    test = load_routerbench(split="test")
    base = MixLLMRouter()
    emb, _ = base.embed(train.queries)
    test_emb, _ = base.embed(test.queries)
    queries = test.queries[:n_events]
    rows = []
    for label, learning in (
        ("inline, no journal", {}),
        ("inline, journal, fsync", {"journal": True, "journal_fsync": True}),
        ("inline, journal, no fsync", {"journal": True, "journal_fsync": False}),
        ("batched (32), no journal", {"batch_size": 32}),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            settings = {k: v for k, v in learning.items() if k != "journal"}
            if learning.get("journal"):
                settings["journal_path"] = str(Path(tmp) / "feedback.jsonl")
            router = MixLLMRouter(config={"learning": settings}, encoder=base.encoder)
            router.fit(train, embeddings=emb, calibrate=False)
            decisions = router.route_batch(queries, embeddings=test_emb[:n_events])
            wall = cpu = 0.0
            for i, d in enumerate(decisions):
                w0, c0 = time.perf_counter(), time.process_time()
                router.feedback(d.decision_id, i % 2 == 0)
                wall += time.perf_counter() - w0
                cpu += time.process_time() - c0
            w0, c0 = time.perf_counter(), time.process_time()
            router.learning.flush(router)
            wall += time.perf_counter() - w0
            cpu += time.process_time() - c0
            router.learning.close()
        rows.append({"mode": label, "events": n_events, "wall_ms": 1000 * wall / n_events,
                     "cpu_ms": 1000 * cpu / n_events})
        print(f"{label:<28} wall {rows[-1]['wall_ms']:7.3f} ms/event  cpu {rows[-1]['cpu_ms']:7.3f} ms/event",
              flush=True)
    return rows


def cross_validate(share: float, policies: list[tuple[str, float]], seeds: int = 2, cost_share: float = 0.25,
                   config: dict | None = None) -> str:
    """Train-only CV of exploration policies (``("ucb", α)`` or ``("thompson", σ)``); see the module docstring."""
    import numpy as np

    from mixllm_router import MixLLMRouter, load_routerbench
    from mixllm_router.learning.learner import FeedbackScoreNet, thompson_scores
    from mixllm_router.policy.tradeoff import default_cost_weights, pick, sweep
    from mixllm_router.predictors import LinUCBRidge, features
    from mixllm_router.router import fold_assignment

    warnings.simplefilter("ignore")
    train = load_routerbench(split="train")
    names = list(train.models)
    ref = names.index("gpt-4-1106-preview")
    base = MixLLMRouter(names, config=config or {})
    emb, tokens = base.embed(train.queries)
    x = features(emb, tokens)
    q, c = train.matrix("quality", names), train.matrix("cost", names)
    y = np.stack([np.column_stack([q[:, j], np.log(c[:, j] + 1e-7)]) for j in range(len(names))])
    lam0 = base.config.prior_strength

    def fit(rows: np.ndarray) -> list[LinUCBRidge]:
        return [LinUCBRidge(x.shape[1], 2, prior_strength=lam0).fit(x[rows], y[j, rows]) for j in range(len(names))]

    def predict(models: list[LinUCBRidge], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pr = np.stack([m.predict(x[rows]) for m in models], axis=1)
        unc = np.stack([m.uncertainty(x[rows]) for m in models], axis=1)
        return np.clip(pr[..., 0], 0, 1), np.maximum(np.exp(np.clip(pr[..., 1], -40, 10)) - 1e-7, 0), unc

    def feedback_term(net: FeedbackScoreNet | None, gamma: float, rows: np.ndarray) -> np.ndarray | float:
        """``γ·κ·(π − 1/m)``, the router's feedback term (0 without a network or before any event)."""
        if net is None or not gamma or net.n_updates == 0:
            return 0.0
        return gamma * net.confidence(names) * net.routing_scores(emb[rows], names)

    def curve(models: list[LinUCBRidge], rows: np.ndarray, alpha: float = 0.0,  # type: ignore[no-untyped-def]
              extra: np.ndarray | float = 0.0):
        qq, cc, uu = predict(models, rows)
        return sweep(qq + alpha * uu + extra, cc, q[rows], c[rows], ref,
                     default_cost_weights(float(np.mean(c[rows]))))

    def at_lambda(models: list[LinUCBRidge], rows: np.ndarray, lam: float, alpha: float,
                  extra: np.ndarray | float = 0.0) -> tuple[float, float]:
        qq, cc, uu = predict(models, rows)
        ch = pick(qq + alpha * uu + extra, cc, lam)
        r = np.arange(len(rows))
        return 100 * q[rows][r, ch].mean() / q[rows, ref].mean(), 100 * c[rows][r, ch].sum() / c[rows, ref].sum()

    alpha = base.config.exploration
    settings = base.config.learning
    folds = fold_assignment(len(train), 5, 123)
    results: dict[str, list[list[float]]] = {}
    for f in range(5):
        held, pool = np.flatnonzero(folds == f), np.flatnonzero(folds != f)
        for seed in range(seeds):
            perm = np.random.default_rng(100 + seed).permutation(pool)
            n_off = int(round(share * len(train)))
            off, rest = perm[:n_off], perm[n_off:]
            offline = MixLLMRouter(names, config=config or {}, encoder=base.encoder)
            offline.fit(train.subset([train.query_ids[i] for i in off]), embeddings=emb[off])
            lam = offline.resolve_cost_weight(cost_share=cost_share)
            frozen = fit(off)
            frozen_curve, frozen_auc = curve(frozen, held, alpha), curve(frozen, held).auc()

            def record(tag: str, models: list[LinUCBRidge], extra: np.ndarray | float = 0.0) -> None:
                qo, co = at_lambda(models, held, lam, alpha, extra)
                results.setdefault(tag, []).append(
                    [100 * (curve(models, held, 0.0, extra).auc() - frozen_auc),
                     qo - 100 * frozen_curve.quality_at(co / 100), co])

            record("full information", fit(perm))
            for kind, value in policies:
                models, rng = fit(off), np.random.default_rng(seed)
                # "feedback:γ": UCB (the config's α) plus the trained feedback term γ·κ·(π − 1/m)
                net = FeedbackScoreNet(emb.shape[1], settings, seed=base.config.seed) if kind == "feedback" else None
                for i in rest:
                    row = np.array([i])
                    qq, cc, uu = predict(models, row)
                    if kind == "ucb":
                        j = int(pick(qq + value * uu, cc, lam)[0])
                    elif kind == "feedback":
                        j = int(pick(qq + alpha * uu + feedback_term(net, value, row), cc, lam)[0])
                    else:
                        j = int(np.argmax(thompson_scores(qq, cc, uu, lam, value, rng)[0]))
                    models[j].update(x[i : i + 1], y[j, i : i + 1])
                    if net is not None:  # residual against the prediction made before the update
                        net.step(emb[i], names, names[j], float(q[i, j] - qq[0, j]))
                record(f"{kind} {value:g}", models, feedback_term(net, value, held))
        print(f"  fold {f} done", flush=True)
    first = np.array(results[f"{policies[0][0]} {policies[0][1]:g}"])
    lines = [f"train-only CV, offline share {share:g}, 5 folds x {seeds} seeds; vs the frozen router on the held-out fold",
             f"{'policy':<18} {'ΔAUC':>12} {'ΔQ@C':>12} {'cost %':>7} {'ΔQ@C vs ' + policies[0][0]:>16}"]
    for tag, rows in results.items():
        (m, se), (dm, dse) = _mean_se(rows), _mean_se(np.array(rows)[:, 1] - first[:, 1])
        lines.append(f"{tag:<18} {m[0]:+6.2f}±{se[0]:4.2f} {m[1]:+6.2f}±{se[1]:4.2f} {m[2]:7.2f} "
                     f"{dm:+9.2f}±{dse:4.2f}")
    return "\n".join(lines)


def _mean_se(values):  # type: ignore[no-untyped-def]
    """Column means and standard errors of the rows (one row per fold and seed)."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    return v.mean(axis=0), v.std(axis=0, ddof=1) / np.sqrt(len(v))


def replay_cv(share: float, variants: list[dict], folds: int = 5, cost_share: float = 0.25,
              config: dict | None = None, repeats: int = 1) -> str:
    """The replay protocol run inside the train files, to choose router settings without the test files.

    For each of ``folds`` folds of the train queries, ``simulate_online`` runs with the other folds
    as its training stream (``share`` of them offline, the rest streamed with feedback) and the
    held-out fold as its "test" part, through the router's own ``route``/``feedback``. Each variant
    is a dict of ``RouterConfig`` overrides, plus optionally ``"thompson": σ``. Reported per variant:
    the gain at equal cost on the held-out fold (mean ± s.e. over folds), the online cost, and the
    paired difference to the first variant. ``repeats > 1`` repeats it with other fold assignments
    and stream orders (``repeats × folds`` rows in all).
    """
    import numpy as np

    from mixllm_router import MixLLMRouter, load_routerbench
    from mixllm_router.evaluation.online import simulate_online
    from mixllm_router.router import fold_assignment

    warnings.simplefilter("ignore")
    train = load_routerbench(split="train")
    encoder = MixLLMRouter(config=config or {}).encoder
    ids = np.array(train.query_ids)
    rows: dict[str, list[list[float]]] = {}
    for rep in range(repeats):
        assignment = fold_assignment(len(train), folds, 321 + rep)
        for f in range(folds):
            stream = train.subset(list(ids[assignment != f]))
            held = train.subset(list(ids[assignment == f]))
            for variant in variants:
                overrides = {k: v for k, v in variant.items() if k != "thompson"}
                report = simulate_online(stream, held, shares=[share], cost_share=cost_share, encoder=encoder,
                                         thompson=float(variant.get("thompson", 0.0)),
                                         config={**(config or {}), **overrides}, seed=folds * rep + f)
                r = report.shares[0].summary()
                rows.setdefault(json.dumps(variant), []).append(
                    [r["gain_at_equal_cost"], r["online_cost"], r["full_info_gain_at_equal_cost"]])
            print(f"  repeat {rep} fold {f} done", flush=True)
    first = np.array(next(iter(rows.values())))
    lines = [f"replay inside the train files, offline share {share:g}, {repeats} x {folds} folds; "
             "held-out fold as the live test part",
             f"{'variant':<44} {'ΔQ@C':>12} {'cost %':>7} {'full ΔQ@C':>10} {'ΔQ@C vs first':>14}"]
    for tag, values in rows.items():
        (m, se), (dm, dse) = _mean_se(values), _mean_se(np.array(values)[:, 0] - first[:, 0])
        lines.append(f"{tag:<44} {m[0]:+6.2f}±{se[0]:4.2f} {m[1]:7.2f} {m[2]:+10.2f} {dm:+8.2f}±{dse:4.2f}")
    return "\n".join(lines)


def simulation(out: Path, config: dict, cost_share: float, label_noise: float, shares: list[float],
               holdout: str | None, thompson: float = 0.0) -> None:
    from mixllm_router import load_routerbench
    from mixllm_router.evaluation.online import simulate_online

    warnings.simplefilter("ignore")
    train = load_routerbench(split="train")
    test = load_routerbench(split="test")
    t0 = time.perf_counter()
    report = simulate_online(train, test, shares=shares, cost_share=cost_share, label_noise=label_noise,
                             thompson=thompson, config=config, holdout=holdout, holdout_share=0.3,
                             holdout_prior="mean", show_progress=True)
    print(report.table())
    print(report.learning_curve_table(500))
    for path in report.write(out):
        print("wrote", path)
    print(f"simulation took {time.perf_counter() - t0:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["sim", "cost", "cv", "replay-cv", "all"], default="all")
    parser.add_argument("--variants", default='[{}, {"feedback_weight": 0.01}]',
                        help="--part replay-cv: JSON list of RouterConfig overrides (+ optional 'thompson')")
    parser.add_argument("--cv-share", type=float, default=0.1, help="offline share for --part cv")
    parser.add_argument("--cv-seeds", type=int, default=2)
    parser.add_argument("--cv-policies", default="ucb:0.05,thompson:0.05,thompson:0.1,thompson:0.2",
                        help="comma list of ucb:α / thompson:σ / feedback:γ for --part cv (the first is the baseline)")
    parser.add_argument("--out", default="runs/online")
    parser.add_argument("--config", default="{}", help="RouterConfig overrides as JSON")
    parser.add_argument("--cost-share", type=float, default=0.25)
    parser.add_argument("--label-noise", type=float, default=0.0)
    parser.add_argument("--shares", default="0.1,0.3,0.5")
    parser.add_argument("--holdout", default="zero-one-ai/Yi-34B-Chat", help="'none' to skip the hold-out run")
    parser.add_argument("--thompson", type=float, default=0.0, help="σ of Thompson-sampling exploration (0: UCB)")
    parser.add_argument("--cache", help="embedding cache folder (default: $MIXLLM_CACHE_DIR or ~/.cache/mixllm-router)")
    args = parser.parse_args()
    config = json.loads(args.config)
    if args.cache:
        config.setdefault("encoder", {})["cache_dir"] = args.cache
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.part in ("cost", "all"):
        rows = feedback_cost()
        (out / "feedback_cost.json").write_text(json.dumps(rows, indent=2))
    if args.part in ("cv", "all"):
        policies = [(p.split(":")[0], float(p.split(":")[1])) for p in args.cv_policies.split(",")]
        text = cross_validate(args.cv_share, policies, args.cv_seeds, args.cost_share, config)
        print(text)
        (out / f"cv_{args.cv_share:g}.txt").write_text(text + "\n")
    if args.part == "replay-cv":
        text = replay_cv(args.cv_share, json.loads(args.variants), cost_share=args.cost_share, config=config,
                         repeats=args.cv_seeds)
        print(text)
        (out / f"replay_cv_{args.cv_share:g}.txt").write_text(text + "\n")
    if args.part in ("sim", "all"):
        simulation(out, config, args.cost_share, args.label_noise,
                   [float(s) for s in args.shares.split(",")], None if args.holdout == "none" else args.holdout,
                   args.thompson)


if __name__ == "__main__":
    main()
