"""Ablation: plain vs tag-enhanced query embeddings, same predictors, RouterBench files.

1. Tag the TRAIN queries (default: the offline TF-IDF tagger; ``--tagger task-labels`` uses the
   data's task column), cluster the tags into domains (K by silhouette in 2..20).
2. For each stay-close weight ρ in ``--keep-weights``, learn the projection on the train queries
   and score it by 5-fold out-of-fold routing on the TRAIN files only (``router.out_of_fold`` +
   ``tradeoff.sweep``, the AUC averaged over ``--cv-seeds`` fold assignments). The best ρ wins.
   The test files are never looked at while choosing.
3. Fit the router (the default config) on the train files with plain and with the chosen
   tag-enhanced embeddings and report both on the test files with
   :func:`mixllm_router.evaluation.evaluate`: AUC, quality at ≤10% / ≤25% of GPT-4's cost, the
   cost to reach 97.25% of GPT-4's quality, the full curve (PNG).
4. Noise: a paired bootstrap over test queries (same resample for both routers, predictions
   fixed) gives the spread of the AUC difference and of the quality difference at each cost share.

Run:  python benchmarks/tag_ablation.py [--data ../shared/data/routerbench] [--out results/tag_ablation]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="RouterBench folder (default: ../shared/data/routerbench)")
    p.add_argument("--out", default="results/tag_ablation")
    p.add_argument("--tagger", default="offline", help="offline | task-labels | openai:<model>[@<base_url>]")
    p.add_argument("--keep-weights", default="0.3,1,3,10", help="candidate values of rho, tuned by CV on train")
    p.add_argument("--cv-seeds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--bootstrap", type=int, default=300)
    args = p.parse_args()
    warnings.filterwarnings("ignore", message="RouterBench")

    from mixllm_router.data import load_routerbench
    from mixllm_router.encoders import default_encoder
    from mixllm_router.encoders.domains import fit_domains
    from mixllm_router.encoders.tag_enhanced import TagEnhancedEncoder, _one_hot, fit_projection, make_tagger
    from mixllm_router.encoders.tagging import CachedTagger, tagger_fingerprint
    from mixllm_router.evaluation import evaluate
    from mixllm_router.policy.tradeoff import default_cost_weights, sweep
    from mixllm_router.router import MixLLMRouter

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    train = load_routerbench(args.data, split="train")
    test = load_routerbench(args.data, split="test")
    base = default_encoder()
    _log(f"train {len(train)} queries, test {len(test)}; encoder {base.fingerprint}")
    e_train = base.encode(train.queries, show_progress=True)
    tokens = np.array([base.count_tokens(q) for q in train.queries], dtype=np.float64)
    names = train.models
    quality, cost = train.matrix("quality", names), train.matrix("cost", names)
    ref = names.index("gpt-4-1106-preview")
    grid = default_cost_weights(float(np.mean(cost)), n=300)

    # -- 1. tags and domains (train only) --------------------------------------------------------
    t0 = time.perf_counter()
    tagger = make_tagger(args.tagger, data=train)
    tags = CachedTagger(tagger).tag(train.queries, show_progress=True)
    domains = fit_domains(tags, base, seed=0)
    weights = _one_hot(domains.labels, domains.n_domains)
    _log(f"tagger {tagger_fingerprint(tagger)}: {domains.n_domains} domains in {time.perf_counter() - t0:.0f}s; "
         f"{json.dumps(domains.summary())}")

    # -- 2. choose rho by out-of-fold routing on train --------------------------------------------
    def oof_summary(emb: np.ndarray) -> dict[str, float]:
        runs = []
        for seed in range(args.cv_seeds):
            router = MixLLMRouter(names, seed=seed)
            q_oof, c_oof = router.out_of_fold(names, emb, tokens, quality, cost)
            runs.append(sweep(q_oof, c_oof, quality, cost, ref, grid).summary())
        return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}

    cv_rows = [{"embeddings": "plain", **oof_summary(e_train)}]
    _log(f"CV plain: {cv_rows[-1]}")
    encoders: dict[float, TagEnhancedEncoder] = {}
    for rho in [float(x) for x in args.keep_weights.split(",")]:
        fit = fit_projection(e_train, weights, rank=args.rank, keep_weight=rho, epochs=args.epochs, seed=0)
        enc = TagEnhancedEncoder(base, fit.a, fit.b, info={
            "tagger": tagger_fingerprint(tagger), "domains": domains.summary(),
            "settings": {"rank": args.rank, "keep_weight": rho, "epochs": args.epochs, "loss": "centroid"},
            "objective_start": fit.history[0], "objective_end": fit.history[-1], "train_seconds": fit.seconds,
        })
        encoders[rho] = enc
        cv_rows.append({"embeddings": f"tag-enhanced rho={rho:g}", "train_seconds": fit.seconds,
                        **oof_summary(enc.project(e_train))})
        _log(f"CV rho={rho:g} ({fit.seconds:.1f}s to train): {cv_rows[-1]}")
    best_rho = max(encoders, key=lambda r: next(c["auc"] for c in cv_rows if c["embeddings"] == f"tag-enhanced rho={r:g}"))
    tag_encoder = encoders[best_rho]
    _log(f"chosen by CV on train: rho={best_rho:g}")

    # -- 3. the test files -----------------------------------------------------------------------
    reports = {}
    for label, enc in (("plain", base), ("tag-enhanced", tag_encoder)):
        reports[label] = evaluate(train, test, encoder=enc, baselines=(label == "plain"), show_progress=True)
        _log(f"{label}:\n{reports[label].table()}")

    # -- 4. paired bootstrap over test queries ----------------------------------------------------
    keep = np.isfinite(test.matrix("quality", names)).all(1) & np.isfinite(test.matrix("cost", names)).all(1)
    queries = [q for q, k in zip(test.queries, keep) if k]
    q_test, c_test = test.matrix("quality", names)[keep], test.matrix("cost", names)[keep]
    test_grid = default_cost_weights(float(np.mean(c_test)), n=300)
    preds = {}
    for label, enc in (("plain", base), ("tag-enhanced", tag_encoder)):
        router = MixLLMRouter(names, encoder=enc).fit(train, calibrate=False)
        pr = router.predict(queries)
        preds[label] = (pr.quality, pr.cost)
    shares = np.linspace(0, 1, 101)

    def curve_values(idx: np.ndarray, label: str) -> np.ndarray:
        qh, ch = preds[label]
        c = sweep(qh[idx], ch[idx], q_test[idx], c_test[idx], ref, test_grid)
        return np.array([c.quality_at(s) for s in shares])

    rng = np.random.default_rng(0)
    all_idx = np.arange(len(queries))
    observed = curve_values(all_idx, "tag-enhanced") - curve_values(all_idx, "plain")
    boots = []
    for _ in range(args.bootstrap):
        idx = rng.integers(0, len(queries), len(queries))
        boots.append(curve_values(idx, "tag-enhanced") - curve_values(idx, "plain"))
    boots_arr = np.array(boots)
    sd = boots_arr.std(0)
    auc_diff = boots_arr.mean(1)
    worst = int(np.argmin(observed))
    noise = {
        "auc_difference_points": 100 * float(observed.mean()),
        "auc_difference_bootstrap_90ci_points": [100 * float(np.quantile(auc_diff, 0.05)),
                                                 100 * float(np.quantile(auc_diff, 0.95))],
        "worst_share": float(shares[worst]),
        "worst_difference_points": 100 * float(observed[worst]),
        "bootstrap_sd_at_worst_points": 100 * float(sd[worst]),
        "shares_worse_by_more_than_2sd": [float(s) for s, d, e in zip(shares, observed, sd) if d < -2 * e],
    }
    _log(f"paired bootstrap ({args.bootstrap} resamples): {json.dumps(noise)}")

    # -- output ------------------------------------------------------------------------------------
    summary = {
        "command": "python benchmarks/tag_ablation.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "encoder": base.fingerprint,
        "tagger": tagger_fingerprint(tagger),
        "domains": domains.summary(),
        "cv_on_train": cv_rows,
        "chosen_keep_weight": best_rho,
        "test": {label: r.get(r.methods[0].name).summary() for label, r in reports.items()},
        "noise": noise,
        "seconds": time.perf_counter() - t_start,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    for label, r in reports.items():
        r.write_json(out / f"results_{label}.json")
    _plot(reports, out / "tag_ablation.png")
    _log(f"wrote {out}/summary.json, results_*.json, tag_ablation.png in {summary['seconds']:.0f}s")
    head = f"{'embeddings':<16} {'AUC':>6} {'Q@10%':>6} {'Q@25%':>6} {'C@97.25%':>9}"
    print(head)
    for label, s in summary["test"].items():
        print(f"{label:<16} {s['auc']:6.1f} {s['quality_at_10']:6.1f} {s['quality_at_25']:6.1f} "
              f"{s['cost_to_97_25']:9.1f}")  # summary() is already in % of the reference


def _plot(reports: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for label, style in (("plain", "--"), ("tag-enhanced", "-")):
        x, y = reports[label].methods[0].curve.envelope()
        ax.step(100 * x, 100 * y, where="post", linestyle=style, linewidth=2, label=f"router, {label} embeddings")
    plain = reports["plain"]
    for m in plain.methods:
        if m.kind == "oracle":
            x, y = m.curve.envelope()
            ax.step(100 * x, 100 * y, where="post", linestyle=":", linewidth=1, label="oracle")
        elif m.kind == "single":
            ax.scatter(100 * m.curve.cost_share, 100 * m.curve.quality_share, s=18, zorder=3)
            ax.annotate(m.name.split("/")[-1], (100 * m.curve.cost_share[0], 100 * m.curve.quality_share[0]),
                        fontsize=6, xytext=(3, 2), textcoords="offset points")
    ax.axhline(97.25, color="grey", linewidth=0.6)
    ax.set_xlim(0, 105)
    ax.set_ylim(60, 115)
    ax.set_xlabel(f"cost, % of {plain.reference}")
    ax.set_ylabel(f"quality, % of {plain.reference}")
    ax.set_title(f"Plain vs tag-enhanced embeddings, {plain.n_test} RouterBench test queries")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
