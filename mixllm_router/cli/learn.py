"""``mixllm learn``: run the feedback learner of a deployment that shares state on Redis."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("learn", help="apply the shared feedback stream (Redis) and publish checkpoints")
    p.add_argument("--router", required=True, help="checkpoint folder to start from (a newer published version wins)")
    p.add_argument("--state", required=True, help="redis://host:port/db of the deployment")
    p.add_argument("--namespace", default="mixllm", help="key namespace the workers use (default mixllm)")
    p.add_argument("--consumer", default="learner", help="this learner's name in the consumer group")
    p.add_argument("--publish-every", dest="publish_every", type=int, default=100,
                   help="publish a version after this many events (default 100)")
    p.add_argument("--publish-interval", dest="publish_interval", type=float, default=5.0,
                   help="... or after this many seconds with events pending (default 5)")
    p.add_argument("--idle-exit", dest="idle_exit", type=float, default=None,
                   help="exit after this many seconds without feedback (default: run until interrupted)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..router import MixLLMRouter
    from ..state.learner import FeedbackLearner
    from ..state.redis import RedisState

    state = RedisState(args.state, namespace=args.namespace)
    learner = FeedbackLearner(MixLLMRouter.load(args.router), state, consumer=args.consumer,
                              publish_every=args.publish_every, publish_interval_s=args.publish_interval)
    version = learner.start()
    print(f"learning from {state.feedback_stream} at {args.state}; continuing from version {version}",
          file=sys.stderr, flush=True)
    try:
        learner.run(idle_exit_s=args.idle_exit)
    finally:
        print(f"learner stopped: {learner.stats}", file=sys.stderr, flush=True)
    return 0
