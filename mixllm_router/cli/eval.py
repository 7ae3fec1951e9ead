"""``mixllm eval``: train on the training data, report on the test data beside the baselines."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from .._exceptions import MixLLMError
from ._common import add_model_options, add_split_options, log, model_setup

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="train on train data, report on test data beside baselines")
    p.add_argument("--data", nargs="+", help="files/folders: their train and test splits, or (without a split "
                                             "column) a held-out share of the queries")
    p.add_argument("--train", nargs="+", help="training files (instead of --data)")
    p.add_argument("--test", nargs="+", help="test files (instead of --data)")
    p.add_argument("--out", default="runs/eval", help="folder for results.json and tradeoff.png")
    p.add_argument("--decisions", help="write each test query's choice at every λ of the table to this JSONL file")
    p.add_argument("--decision-points", dest="decision_points", type=int, default=None,
                   help="record only this many λ values, evenly spaced (default: the table's whole grid of 300, "
                        "so every figure can be recomputed from the file)")
    add_split_options(p)
    add_model_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate, plot_tradeoff
    from ..evaluation.loading import load_data, load_train_test

    t0 = time.perf_counter()
    if args.train or args.test:
        if not (args.train and args.test):
            raise MixLLMError("give both --train and --test, or --data with a split column")
        train = load_data(args.train, on_error=args.on_error)
        test = load_data(args.test, on_error=args.on_error)
    else:
        if not args.data:
            raise MixLLMError("give --data or --train and --test")
        train, test = load_train_test(args.data, on_error=args.on_error, test_size=args.test_size, seed=args.seed)
    log(f"train: {len(train)} queries, test: {len(test)} queries, models: {len(train.models)}")
    setup = model_setup(args, train)
    report = evaluate(train, test, config=setup.config, encoder=setup.encoder, reference=args.reference_model,
                      show_progress=True, decisions_at=args.decision_points if args.decisions else 0,
                      setting=setup.setting)
    print(report.table())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report.write_json(out / "results.json")
    written = [out / "results.json"]
    try:
        written.append(plot_tradeoff(report, out / "tradeoff.png"))
    except ImportError:
        log("matplotlib is not installed: no plot (pip install 'mixllm-router[plot]')")
    if args.decisions:
        Path(args.decisions).write_text("\n".join(json.dumps(d) for d in report.decisions) + "\n")
        written.append(Path(args.decisions))
    log(f"done in {time.perf_counter() - t0:.1f}s; wrote {', '.join(str(p) for p in written)}")
    return 0
