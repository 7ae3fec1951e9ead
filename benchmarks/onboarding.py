"""Onboarding a new candidate from a few scored examples: how many feedback events until it earns its traffic?

RouterBench replay (the protocol of `mixllm simulate-online --holdout`, docs/online_learning.md):
shuffle the train queries (seed), fit offline on the first 30% without the held-out candidate
(zero-one-ai/Yi-34B-Chat), then `add_candidate` it with K scored examples (its recorded outcome
and cost on the next K training queries, as `collect --only` or shadow calls would give) and the
given prior, and stream the following training queries as live traffic under the default policy
(UCB, α = 0.05; `--thompson S` for Thompson sampling), each chosen candidate's recorded outcome
becoming feedback. The test AUC (11 candidates, recorded test outcomes) is measured every
--every events and compared with a router fitted on the same offline queries with the candidate
from the start ("with") and without it ("without").

    python benchmarks/onboarding.py [--examples 0 25 100] [--priors mean fitted] [--events 600] [--out runs/onboarding]

Prints, per (K, prior): AUC at 0 events and at the end, the events to reach 90% of the with-AUC,
the events to close 90% of the gap between without and with, the share of traffic routed to
the new candidate; writes results.json and onboarding.png (the curves).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from mixllm_router import MixLLMRouter, load_routerbench
from mixllm_router.config import make_config
from mixllm_router.evaluation.online import _stream, _test_auc
from mixllm_router.policy.tradeoff import default_cost_weights

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "routerbench"
REFERENCE = "gpt-4-1106-preview"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--holdout", default="zero-one-ai/Yi-34B-Chat")
    ap.add_argument("--examples", type=int, nargs="+", default=[0, 25, 100])
    ap.add_argument("--priors", nargs="+", default=["mean", "fitted"])
    ap.add_argument("--share", type=float, default=0.3, help="offline share of the train queries")
    ap.add_argument("--events", type=int, default=600, help="feedback events streamed after the addition")
    ap.add_argument("--every", type=int, default=25, help="measure the test AUC every this many events")
    ap.add_argument("--thompson", type=float, default=0.0)
    ap.add_argument("--cost-share", dest="cost_share", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/onboarding")
    args = ap.parse_args()
    t_start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train = load_routerbench(args.data, split="train")
        test = load_routerbench(args.data, split="test")
    names = train.models
    cfg = make_config({"reference_model": REFERENCE})
    base = MixLLMRouter(names, config=cfg)
    train_emb, _ = base.embed(train.queries, show_progress=True)
    test_emb, _ = base.embed(test.queries, show_progress=True)
    q_train, c_train = train.matrix("quality", names), train.matrix("cost", names)
    q_test, c_test = test.matrix("quality", names), test.matrix("cost", names)
    grid = default_cost_weights(float(np.mean(c_test)), n=200)
    order = np.random.default_rng(args.seed).permutation(len(train))
    n_off = int(round(args.share * len(train)))
    off, rest = order[:n_off], order[n_off:]
    ids = train.query_ids
    without = [n for n in names if n != args.holdout]

    def fitted(models: list[str]) -> MixLLMRouter:
        r = MixLLMRouter(models, config=cfg, encoder=base.encoder)
        r.fit(train.subset([ids[i] for i in off]).with_models(models), embeddings=train_emb[off])
        return r

    auc_with = _test_auc(fitted(names), test.queries, test_emb, q_test, c_test, names.index(REFERENCE), grid)
    cols = [names.index(n) for n in without]
    auc_without = _test_auc(fitted(without), test.queries, test_emb, q_test[:, cols], c_test[:, cols],
                            without.index(REFERENCE), grid)
    print(f"AUC with {args.holdout} from the start: {100 * auc_with:.2f}; without it: {100 * auc_without:.2f}")
    h = names.index(args.holdout)
    results = []
    for k in args.examples:
        for prior in args.priors:
            if k == 0 and prior not in ("mean", "similar"):
                continue  # nothing to fit
            online = fitted(without)
            lam = online.resolve_cost_weight(cost_share=args.cost_share)
            ex_rows, stream_rows = rest[:k], rest[k : k + args.events]
            examples = [{"query": train.queries[i], "quality": float(q_train[i, h]), "cost": float(c_train[i, h])}
                        for i in ex_rows]
            source = online.add_candidate(args.holdout, examples=examples or None, prior=prior)
            perm = [names.index(n) for n in online.candidate_names]
            ref = online.candidate_names.index(REFERENCE)
            events: list[int] = []
            aucs: list[float] = []

            def checkpoint(i: int, online: MixLLMRouter = online, ref: int = ref, perm: list[int] = perm) -> None:
                if i % args.every == 0:
                    events.append(i)
                    aucs.append(_test_auc(online, test.queries, test_emb, q_test[:, perm], c_test[:, perm], ref, grid))

            trace, _, _ = _stream(online, [train.queries[i] for i in stream_rows], train_emb[stream_rows],
                                  q_train[stream_rows][:, perm], c_train[stream_rows][:, perm], lam, learn=True,
                                  rng=np.random.default_rng(args.seed + 2), label_noise=0.0, on_event=checkpoint,
                                  thompson=args.thompson)
            events.append(len(stream_rows))
            aucs.append(_test_auc(online, test.queries, test_emb, q_test[:, perm], c_test[:, perm], ref, grid))
            new = len(perm) - 1
            gap_target = auc_without + 0.9 * (auc_with - auc_without)
            first = lambda target: next((e for e, a in zip(events, aucs) if a >= target - 1e-12), None)  # noqa: E731
            row = {"examples": k, "prior": prior, "source": source, "auc_at_0": 100 * aucs[0],
                   "auc_at_end": 100 * aucs[-1], "events_to_90pct_auc": first(0.9 * auc_with),
                   "events_to_close_90pct_of_gap": first(gap_target),
                   "share_to_new": float(np.mean(trace.chosen == new)),
                   "share_to_new_first_100": float(np.mean(trace.chosen[:100] == new)),
                   "events": events, "auc": [100 * a for a in aucs]}
            results.append(row)
            print(f"K={k:<4} prior={prior:<6} ({source}): AUC {row['auc_at_0']:.2f} -> {row['auc_at_end']:.2f}; "
                  f"90% of with-AUC at {row['events_to_90pct_auc']} events; 90% of the gap closed at "
                  f"{row['events_to_close_90pct_of_gap']}; routed to it {100 * row['share_to_new']:.0f}% "
                  f"(first 100: {100 * row['share_to_new_first_100']:.0f}%)", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"holdout": args.holdout, "auc_with": 100 * auc_with, "auc_without": 100 * auc_without,
               "thompson": args.thompson, "seed": args.seed, "runs": results}
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    try:
        plot(summary, out / "onboarding.png")
    except ImportError:
        pass
    print(f"done in {time.perf_counter() - t_start:.0f}s; wrote {out}/results.json")


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for run in summary["runs"]:
        ax.plot(run["events"], run["auc"], label=f"K={run['examples']}, prior {run['source']}")
    ax.axhline(summary["auc_with"], color="k", ls="--", lw=1, label="with it from the start")
    ax.axhline(summary["auc_without"], color="grey", ls=":", lw=1, label="without it")
    ax.set_xlabel("feedback events after add_candidate")
    ax.set_ylabel("test AUC (% of GPT-4)")
    ax.set_title(f"Onboarding {summary['holdout']} (RouterBench replay)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
