"""``mixllm train``: learn a router from recorded outcomes and save it."""

from __future__ import annotations

import argparse
import time
from typing import Any

from ._common import add_model_options, log, model_setup

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="learn a router from recorded outcomes and save it")
    p.add_argument("--data", nargs="+", required=True, help="RouterBench files/folders or long CSV files")
    p.add_argument("--split", help="use only rows of this split (e.g. train)")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--candidates", help="candidates file (.toml/.json): the pool, with prices, context window, "
                                        "tool support, concurrency (format: mixllm_router.candidates_file)")
    add_model_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation.loading import load_data
    from ..router import MixLLMRouter

    t0 = time.perf_counter()
    data = load_data(args.data, split=args.split, on_error=args.on_error)
    log(data.summary())
    setup = model_setup(args, data)
    candidates = None
    if args.candidates:
        from ..candidates_file import load_candidates

        candidates = load_candidates(args.candidates).to_candidates()  # the file defines the pool
    router = MixLLMRouter(candidates, config=setup.config, encoder=setup.encoder)
    router.fit(data, show_progress=True)
    path = router.save(args.out)
    log(f"trained on {len(data)} queries, {len(router.candidate_names)} candidates in "
        f"{time.perf_counter() - t0:.1f}s; saved to {path}")
    return 0
