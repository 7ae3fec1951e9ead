"""The fine-tuned representation against today's router on the test files, with a paired bootstrap.

    python benchmarks/representation_test.py --data ../shared/data/routerbench \\
        --adapter rank=16,activation=linear,contrastive_weight=0.0,keep_weight=1.0

Both routers use the same predictor setting (``--prior-strength``, default 30: what ``--tune``
chose on the train files) and the same MiniLM embeddings; the second one embeds through the
outcome adapter fitted on the train files at the given setting (chosen beforehand by
``cv_representations`` on the train files; nothing here is tuned on the test files). Prints each
router's AUC, Q@10%, Q@25%, C@97.25% with 95% bootstrap intervals, and the paired bootstrap of
(adapter − today's) for each metric.
"""

from __future__ import annotations

import argparse

import numpy as np


def _settings(text: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for part in filter(None, text.split(",")):
        key, value = part.split("=", 1)
        try:
            out[key] = int(value)
        except ValueError:
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", default=["../shared/data/routerbench"])
    parser.add_argument("--adapter", required=True, help="outcome-adapter settings, k=v,k=v")
    parser.add_argument("--prior-strength", type=float, default=30.0)
    parser.add_argument("--quality-model", default="ridge")
    parser.add_argument("--resamples", type=int, default=200)
    args = parser.parse_args(argv)
    from mixllm_router import MixLLMRouter
    from mixllm_router.encoders.outcome_adapter import outcome_adapter_encoder
    from mixllm_router.evaluation.loading import load_train_test
    from mixllm_router.policy.tradeoff import (
        bootstrap_summary,
        choose_reference,
        default_cost_weights,
        paired_bootstrap,
        pick,
        sweep,
    )

    train, test = load_train_test(args.data)
    names = train.models
    cfg = {"quality_model": args.quality_model, "prior_strength": args.prior_strength}
    today = MixLLMRouter(config=cfg)
    e_tr, _ = today.embed(train.queries)
    quality_tr = train.matrix("quality", names)
    adapter = outcome_adapter_encoder(today.encoder, e_tr, quality_tr, candidates=names, **_settings(args.adapter))
    print(f"adapter fitted in {adapter.info['train_seconds']:.1f} s, best epoch {adapter.info['best_epoch']}")
    q, c = test.matrix("quality", names), test.matrix("cost", names)
    keep = np.isfinite(q).all(1) & np.isfinite(c).all(1)
    q, c = q[keep], c[keep]
    queries = [x for x, k in zip(test.queries, keep) if k]
    ref = names.index(choose_reference(names, quality_tr, train.matrix("cost", names))[0])
    grid = default_cost_weights(float(np.mean(c)), n=300)
    e_te, _ = today.embed(queries)
    picks = {}
    for label, router, tr_emb, te_emb in (
        ("today (frozen)", MixLLMRouter(config=cfg, encoder=today.encoder), e_tr, e_te),
        ("fine-tuned adapter", MixLLMRouter(config=cfg, encoder=adapter), adapter.project(e_tr), adapter.project(e_te)),
    ):
        router.fit(train, embeddings=tr_emb, calibrate=False)
        p = router.predict(queries, embeddings=te_emb)
        s = sweep(p.quality, p.cost, q, c, ref, grid).summary()
        iv = bootstrap_summary(p.quality, p.cost, q, c, ref, grid, n_resamples=args.resamples)
        picks[label] = np.stack([pick(p.quality, p.cost, float(lam)) for lam in grid])
        print(f"{label:<20} " + ", ".join(f"{k} {s[k]:.1f} [{iv[k][0]:.1f}, {iv[k][1]:.1f}]" for k in s))
    diff = paired_bootstrap(picks["today (frozen)"], picks["fine-tuned adapter"], q, c, ref, grid,
                            n_resamples=args.resamples)
    print("paired bootstrap, adapter − today: " + ", ".join(
        f"{k} {m:+.2f} [{lo:+.2f}, {hi:+.2f}]" for k, (m, lo, hi) in diff.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
