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

Run:  python benchmarks/online.py [--part sim|cost|all] [--out runs/online] [--config '{"exploration": 0.1}']
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
    parser.add_argument("--part", choices=["sim", "cost", "all"], default="all")
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
    if args.part in ("sim", "all"):
        simulation(out, config, args.cost_share, args.label_noise,
                   [float(s) for s in args.shares.split(",")], None if args.holdout == "none" else args.holdout,
                   args.thompson)


if __name__ == "__main__":
    main()
