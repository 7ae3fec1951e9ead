"""Does `collect` + the multiple-choice scorer reproduce RouterBench's recorded grades?

RouterBench records every model's answer (`<model>|model_response`) beside its 0/1 score. This
replays those answers through `mixllm_router.scoring.collect` (one `ReplayClient` per model),
grades them with the built-in `MultipleChoice` scorer, and compares the grades with the recorded
ones on ARC-Challenge and Winogrande (train and test files). The reference option of a query is
the option extracted from the answer of the first model (in the files' column order) whose
recorded score is 1; a query no model answered correctly has no reference and is not graded.

Then two routers are trained on the train split, one on the collected grades and one on the
recorded ones (the same recorded costs: replayed calls report no usage, so only the quality
differs), and both are evaluated on the recorded test outcomes.

    python benchmarks/collect_agreement.py [--out runs/collect-agreement] [--encoder hashing] [--no-router]

Prints the agreement, the confusion matrix, the disagreements grouped by the answer's opening,
and the two routers' AUC.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd

from mixllm_router import Candidate, RoutingDataset, load_routerbench
from mixllm_router.clients import ReplayClient
from mixllm_router.scoring import MultipleChoice, collect, extract_option

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "routerbench"


def build_queries(data: RoutingDataset, path: Path, scorer: MultipleChoice) -> tuple[int, int]:
    """Write the queries file with references; returns (queries, queries without a reference)."""
    frame = data.frame
    models = list(dict.fromkeys(frame["model"]))
    by_query = {qid: g for qid, g in frame.groupby("query_id", sort=False)}
    missing = 0
    with path.open("w", encoding="utf-8") as fh:
        for qid, rows in by_query.items():
            rows = rows.set_index("model")
            query = rows["query"].iloc[0]
            reference = None
            for m in models:
                if m in rows.index and rows.at[m, "quality"] == 1 and isinstance(rows.at[m, "response"], str):
                    option = extract_option(rows.at[m, "response"], scorer.labels_for(query))
                    if option is not None:
                        reference = option
                        break
            missing += reference is None
            fh.write(json.dumps({"query_id": qid, "query": query, "reference": reference,
                                 "task": rows["task"].iloc[0], "split": rows["split"].iloc[0]}) + "\n")
    return len(by_query), missing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--out", default="runs/collect-agreement")
    ap.add_argument("--encoder", choices=["minilm", "hashing"], default="minilm")
    ap.add_argument("--no-router", action="store_true", help="only the agreement, no router training")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_routerbench(args.data, tasks=["arc_challenge", "winograde"])
    scorer = MultipleChoice()
    n_queries, no_ref = build_queries(data, out / "queries.jsonl", scorer)
    models = data.models
    candidates = [(Candidate(name=m, input_price=0.0, output_price=0.0), ReplayClient.from_dataset(data, m))
                  for m in models]
    csv_path = out / "collected.csv"
    for stale in (csv_path, Path(str(csv_path) + ".calls.jsonl")):
        stale.unlink(missing_ok=True)
    t0 = time.perf_counter()
    report = collect(out / "queries.jsonl", candidates, scorer, csv_path, progress=False)
    seconds = time.perf_counter() - t0
    print(report.summary())
    print(f"collect: {report.called} replayed calls in {seconds:.1f}s; {n_queries} queries, {no_ref} without a "
          "reference (no model scored 1)")

    recorded = data.frame[["query_id", "model", "quality", "response", "task"]].rename(columns={"quality": "recorded"})
    collected = pd.read_csv(csv_path)[["query_id", "model", "quality"]].rename(columns={"quality": "collected"})
    both = recorded.merge(collected, on=["query_id", "model"], how="left")
    graded = both.dropna(subset=["collected"])
    agree = float((graded["recorded"] == graded["collected"]).mean())
    print(f"\nagreement with the recorded grades: {agree:.2%} of {len(graded)} graded (query, model) pairs "
          f"({len(both) - len(graded)} pairs of queries without a reference left out)")
    for task, g in graded.groupby("task"):
        print(f"  {task}: {float((g['recorded'] == g['collected']).mean()):.2%} of {len(g)}")
    cm = pd.crosstab(graded["recorded"], graded["collected"], rownames=["recorded"], colnames=["collected"])
    print("\nconfusion matrix (pairs):\n" + cm.to_string())
    wrong = graded[graded["recorded"] != graded["collected"]]
    kinds: Counter[tuple[str, float, float]] = Counter()
    for r in wrong.itertuples():
        kinds[(repr(str(r.response)[:24]), r.recorded, r.collected)] += 1
    print(f"\ndisagreements ({len(wrong)}), by the answer's opening (recorded -> collected):")
    for (opening, rec, col), n in kinds.most_common(15):
        print(f"  {n:5d}  {opening:<30} {rec:.0f} -> {col:.0f}")
    wrong.head(200).to_csv(out / "disagreements.csv", index=False)
    controls = simpler_rules(graded, out / "queries.jsonl")
    for name, value in controls.items():
        print(f"control, {name}: {value:.2%} agreement")

    result = {"agreement": agree, "graded_pairs": len(graded), "queries": n_queries, "no_reference": no_ref,
              "confusion": {f"{int(a)}->{int(b)}": int(cm.loc[a, b]) for a in cm.index for b in cm.columns},
              "collect_seconds": seconds, "controls": controls}
    if not args.no_router:
        result.update(compare_routers(data, csv_path, args.encoder))
    (out / "results.json").write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out / 'results.json'}")


def simpler_rules(graded: pd.DataFrame, queries: Path) -> dict[str, float]:
    """Agreement of two naive graders on the same pairs, to show the extraction rules matter."""
    refs = {}
    with queries.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            refs[row["query_id"]] = row["reference"]
    ref = graded["query_id"].map(refs)
    text = graded["response"].fillna("").astype(str).str.strip()
    rules = {"stripped answer == reference letter": text == ref,
             "first character == reference letter": text.str[:1] == ref}
    return {name: float((hit.astype(float) == graded["recorded"]).mean()) for name, hit in rules.items()}


def compare_routers(data: RoutingDataset, csv_path: Path, encoder_kind: str) -> dict[str, float]:
    from mixllm_router.evaluation import evaluate

    encoder = None
    if encoder_kind == "hashing":
        from mixllm_router.encoders import HashingEncoder

        encoder = HashingEncoder()
    frame = data.frame
    collected = pd.read_csv(csv_path)[["query_id", "model", "quality"]]
    recorded = frame.drop(columns=["quality"]).merge(collected, on=["query_id", "model"], how="inner")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_collected = RoutingDataset.from_pandas(recorded[recorded["split"] == "train"], on_error="drop",
                                                     require_complete=True)
        parts = data.splits()
    train_recorded, test = parts["train"], parts["test"]
    out: dict[str, float] = {}
    for label, train in (("recorded", train_recorded), ("collected", train_collected)):
        report = evaluate(train, test, encoder=encoder, baselines=False, bootstrap=False)
        auc = report.methods[0].summary()["auc"]
        out[f"auc_trained_on_{label}"] = auc
        print(f"router trained on the {label} grades ({len(train)} train queries): test AUC {auc:.2f}")
    print(f"difference: {out['auc_trained_on_collected'] - out['auc_trained_on_recorded']:+.2f} AUC points")
    return out


if __name__ == "__main__":
    main()
