"""RouterBench with other prices, to check that ``mixllm eval`` and ``--tune`` stay sensible.

Writes long CSV files (same prompts, outcomes and splits; only the ``cost`` column changes) into
``--out``, outside the repository:

- ``equal.csv``: every model charged the same on each prompt (the prompt's mean cost over the
  models), so costs follow the prompt's length but cannot separate the models: quality-only data;
- ``zero.csv``: no costs at all (every cost 0): quality-only data;
- ``tied.csv``: ``claude-v2`` (the weakest expensive model) charged exactly what
  ``gpt-4-1106-preview`` is charged on each prompt, so the costliest model is a tie; an evaluation
  that took "the costliest" as its reference could pick the weak one.

    python benchmarks/price_variants.py --data ../shared/data/routerbench --out /tmp/rb_variants
    mixllm eval --data /tmp/rb_variants/equal.csv --out /tmp/rb_equal --tune
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/routerbench")
    parser.add_argument("--out", required=True, help="folder for the CSV files (not inside the repository)")
    args = parser.parse_args()
    from mixllm_router.data import RoutingDataset, load_routerbench

    data = load_routerbench(args.data)
    frame = data.frame.copy()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    per_prompt = frame.groupby("query_id")["cost"].transform("mean")
    gpt4 = frame[frame["model"] == "gpt-4-1106-preview"].set_index("query_id")["cost"]
    variants = {
        "equal": per_prompt.to_numpy(),
        "zero": np.zeros(len(frame)),
        "tied": np.where(frame["model"] == "claude-v2", frame["query_id"].map(gpt4), frame["cost"]),
    }
    for name, cost in variants.items():
        variant = frame.copy()
        variant["cost"] = cost
        variant = variant[np.isfinite(variant["cost"].to_numpy(dtype=float))]
        RoutingDataset.from_pandas(variant).to_csv(out / f"{name}.csv")
        print(f"wrote {out / f'{name}.csv'} ({variant['query_id'].nunique()} prompts)")


if __name__ == "__main__":
    main()
