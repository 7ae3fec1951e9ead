"""``mixllm route``: route queries with a saved router, one decision each."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ._common import add_backend_option, encoder_from_args

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("route", help="route queries with a saved router")
    p.add_argument("--router", required=True, help="checkpoint folder")
    p.add_argument("query", nargs="*", help="queries (default: one per line on stdin)")
    knob = p.add_mutually_exclusive_group()
    knob.add_argument("--cost-weight", dest="cost_weight", type=float, help="λ: quality points per USD")
    knob.add_argument("--cost-share", dest="cost_share", type=float,
                      help="target share of the reference model's cost, e.g. 0.2")
    p.add_argument("--max-cost", dest="max_cost", type=float, help="per-query budget in USD")
    p.add_argument("--encoder", choices=["minilm", "hashing"], default=None,
                   help="override the encoder (default: the one the router was saved with)")
    add_backend_option(p)
    p.add_argument("--json", action="store_true", help="one JSON decision per line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..router import MixLLMRouter

    if args.encoder_backend:  # the saved config names a backend; this machine may have another
        from ..encoders.backends import ENV_VAR

        os.environ[ENV_VAR] = args.encoder_backend
    router = MixLLMRouter.load(args.router, encoder=encoder_from_args(args))
    queries = args.query or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    decisions = router.route_batch(queries, cost_weight=args.cost_weight, cost_share=args.cost_share,
                                   max_cost_usd=args.max_cost)
    for decision in decisions:
        if args.json:
            print(json.dumps(decision.to_dict()))
        else:
            print(decision.explain())
            print()
    return 0
