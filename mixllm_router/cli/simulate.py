"""``mixllm simulate``: replay a query stream against candidates with limited concurrency.

The options name a checkpoint, the outcome data and the scenario (rate, bursts, concurrency,
latency profiles, the latency penalty); :class:`~mixllm_router.evaluation.simulator.Simulator`
does the work. Parsing the scenario strings is this module's job, not the simulator's.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._exceptions import ConfigError
from ._common import encoder_from_args

if TYPE_CHECKING:
    from ..evaluation.simulator_scenario import LatencyProfile

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "simulate", help="replay a query stream against candidates with limited concurrency, routed with live load",
        description="Discrete-event simulation: queries arrive by a Poisson process (plus bursts), each candidate "
                    "serves N at once with a latency profile, the router decides with the waits it sees. "
                    "Reports quality and cost (%% of the reference), waits, the share past τ, and load over time.",
    )
    p.add_argument("--router", required=True, help="checkpoint folder (from `mixllm train`)")
    p.add_argument("--data", nargs="+", required=True, help="RouterBench files/folders or long CSV files")
    p.add_argument("--split", help="stream only rows of this split (e.g. test)")
    p.add_argument("--rate", type=float, default=10.0, help="queries per second (default 10)")
    p.add_argument("--n-queries", dest="n_queries", type=int, help="stream length (default: every query once)")
    p.add_argument("--burst", action="append", default=[], metavar="START:DURATION:RATE",
                   help="extra arrivals at RATE/s during [START, START+DURATION) s; repeatable")
    p.add_argument("--concurrency", action="append", default=[], metavar="N|NAME=N",
                   help="requests each candidate serves at once (default: the candidate's max_concurrency)")
    p.add_argument("--profile", action="append", default=[], metavar="NAME=TTFT:TOK_PER_S[:SIGMA]",
                   help="latency profile of a candidate (default: by name pattern, see DEFAULT_PROFILES)")
    knob = p.add_mutually_exclusive_group()
    knob.add_argument("--cost-weight", dest="cost_weight", type=float, help="λ: quality points per USD")
    knob.add_argument("--cost-share", dest="cost_share", type=float, help="target share of the reference cost")
    p.add_argument("--beta", type=float, help="β: weight of the latency penalty (default: the checkpoint's)")
    p.add_argument("--xi", type=float, help="ξ: the penalty starts at ξ·τ")
    p.add_argument("--tau", type=float, help="τ: the longest acceptable wait, seconds")
    p.add_argument("--hard-limit", dest="hard_limit", action=argparse.BooleanOptionalAction, default=None,
                   help="choose a candidate past τ only when every one is")
    p.add_argument("--reference", help="reference model for the %% figures (default: the router's)")
    p.add_argument("--warm-start", dest="warm_start", action="store_true",
                   help="start the tracker's service estimates at the profiles' true means")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoder", choices=["minilm", "hashing"], default="minilm",
                   help="must match the encoder the checkpoint was trained with")
    p.add_argument("--plot", help="write the load-over-time PNG here")
    p.add_argument("--json", help="write the report (summary, shares, load) as JSON here")
    p.add_argument("--on-error", dest="on_error", choices=["drop", "raise"], default="drop")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the router and the data, simulate, print the table, write the files asked for."""
    from ..evaluation.loading import load_data
    from ..evaluation.simulator import Burst, Simulator
    from ..policy.load import LatencySettings
    from ..router import MixLLMRouter

    router = MixLLMRouter.load(args.router, encoder=encoder_from_args(args))
    data = load_data(args.data, split=args.split, on_error=args.on_error)
    latency_values = router.config.latency.model_dump()
    for key, value in (("weight", args.beta), ("xi", args.xi), ("tolerance_s", args.tau),
                       ("hard_limit", args.hard_limit)):
        if value is not None:
            latency_values[key] = value
    latency = LatencySettings.create(**latency_values)
    sim = Simulator(
        router, data, rate_per_s=args.rate, n_queries=args.n_queries,
        bursts=[Burst.parse(b) for b in args.burst],
        concurrency=_parse_concurrency(args.concurrency, router.candidate_names),
        profiles=dict(_parse_profile(p) for p in args.profile),
        reference=args.reference, warm_start=args.warm_start,
    )
    print(f"embedded {len(sim.queries)} queries; simulating {sim.n_queries} arrivals ...", file=sys.stderr, flush=True)
    report = sim.run(latency=latency, cost_weight=args.cost_weight, cost_share=args.cost_share, seed=args.seed)
    print(report.table())
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report.to_json(), indent=1))
        print(f"wrote {path}", file=sys.stderr)
    if args.plot:
        try:
            print(f"wrote {report.plot(args.plot)}", file=sys.stderr)
        except ImportError:
            print("matplotlib is not installed: no plot (pip install 'mixllm-router[plot]')", file=sys.stderr)
    return 0


def _parse_concurrency(items: Sequence[str], names: Sequence[str]) -> int | dict[str, int] | None:
    """``["4"]`` → 4 for all; ``["4", "gpt-4=2"]`` → 4 for all but gpt-4. Unknown names raise."""
    default: int | None = None
    named: dict[str, int] = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            limit = int(value)
        except ValueError:
            raise ConfigError(f"--concurrency takes N or NAME=N, got {item!r}") from None
        if sep:
            named[name] = limit
        else:
            default = limit
    if not named:
        return default
    if default is not None:
        return {n: named.get(n, default) for n in names} | named  # unknown names stay, to be reported
    return named


def _parse_profile(item: str) -> tuple[str, LatencyProfile]:
    """``NAME=TTFT:TOKENS_PER_S[:SIGMA]``."""
    from ..evaluation.simulator_scenario import LatencyProfile

    name, sep, spec = item.rpartition("=")
    try:
        parts = [float(p) for p in spec.split(":")]
        if not sep or len(parts) not in (2, 3):
            raise ValueError
        values = dict(zip(("ttft_s", "tokens_per_s", "noise_sigma"), parts))
        return name, LatencyProfile(**values)
    except ValueError as exc:
        raise ConfigError(f"--profile takes NAME=TTFT:TOKENS_PER_S[:SIGMA] with TTFT >= 0, "
                          f"TOKENS_PER_S > 0, 0 <= SIGMA <= 3; got {item!r}") from exc
