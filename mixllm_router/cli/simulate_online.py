"""``mixllm simulate-online``: replay recorded outcomes as live feedback, online vs the same router frozen.

The options become the keyword arguments of
:func:`~mixllm_router.evaluation.online.simulate_online`; this module parses the comma lists and
``CANDIDATE=LIKE`` pairs, prints the table and writes the report's files.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from .._exceptions import ConfigError
from ._common import add_model_options, add_split_options, config_from_args, encoder_from_args, log

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "simulate-online",
        help="replay recorded outcomes as live feedback: online learning vs the same router frozen",
    )
    p.add_argument("--data", nargs="+", help="files/folders: their train and test splits, or (without a split "
                                             "column) a held-out share of the queries")
    p.add_argument("--shares", default="0.1,0.3,0.5", help="offline shares of the training queries (comma list)")
    p.add_argument("--cost-share", dest="sim_cost_share", type=float, default=0.25,
                   help="fix λ at this share of the reference cost (calibrated offline), for both routers")
    p.add_argument("--label-noise", dest="label_noise", type=float, default=0.0,
                   help="probability that a feedback label is flipped")
    p.add_argument("--feedback-weight", dest="feedback_weight", type=float, help="γ of the feedback score")
    p.add_argument("--exploration", type=float, help="α of the uncertainty bonus")
    p.add_argument("--thompson", type=float, default=0.0,
                   help="explore by Thompson sampling with this σ instead of the UCB bonus (0: off)")
    p.add_argument("--recalibrate-every", dest="recalibrate_every", type=int, default=0,
                   help="the online router re-solves λ for --cost-share every N events on the last N queries (0: off)")
    p.add_argument("--holdout", help="a candidate to leave out of training and add live (e.g. zero-one-ai/Yi-34B-Chat)")
    p.add_argument("--holdout-share", dest="holdout_share", type=float, default=0.3)
    p.add_argument("--holdout-prior", dest="holdout_prior", default="similar",
                   help="'similar', 'mean', 'none' or a candidate name")
    p.add_argument("--change-detection", dest="change_detection", action=argparse.BooleanOptionalAction,
                   default=None, help="whether the online router watches each candidate's outcomes for a change "
                                      "(learning.change_detection; default: the config's, on)")
    p.add_argument("--drift", help="'auto' or CANDIDATE=LIKE: from the first test query on, CANDIDATE answers "
                                   "as LIKE did (a silent model change only feedback can reveal)")
    p.add_argument("--eval-every", dest="eval_every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0, help="seed of the stream order (and of a held-out split)")
    p.add_argument("--out", default="runs/online", help="folder for online.json, online.txt, online.png")
    add_split_options(p, with_seed=False)  # --seed above serves both
    add_model_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation.loading import load_train_test
    from ..evaluation.online import simulate_online

    t0 = time.perf_counter()
    if not args.data:
        raise ConfigError("give --data with train and test splits")
    train, test = load_train_test(args.data, on_error=args.on_error, test_size=args.test_size, seed=args.seed)
    config = config_from_args(args)
    for key in ("feedback_weight", "exploration"):
        if getattr(args, key, None) is not None:
            config[key] = getattr(args, key)
    if args.change_detection is not None:
        config["learning"] = {**config.get("learning", {}), "change_detection": args.change_detection}
    try:
        shares = [float(s) for s in args.shares.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--shares must be a comma list of numbers, got {args.shares!r}") from None
    prior = None if args.holdout_prior == "none" else args.holdout_prior
    report = simulate_online(
        train, test, shares=shares, cost_share=args.sim_cost_share, label_noise=args.label_noise, thompson=args.thompson,
        recalibrate_every=args.recalibrate_every, config=config, encoder=encoder_from_args(args),
        reference=args.reference_model, holdout=args.holdout,
        holdout_share=args.holdout_share, holdout_prior=prior, drift=_parse_drift(args.drift),
        eval_every=args.eval_every, seed=args.seed, show_progress=True,
    )
    print(report.table())
    written = report.write(args.out)
    log(f"done in {time.perf_counter() - t0:.1f}s; wrote {', '.join(str(p) for p in written)}")
    return 0


def _parse_drift(text: str | None) -> tuple[str, str] | str | None:
    """``--drift``: None, ``"auto"``, or ``CANDIDATE=LIKE`` as a (candidate, like) pair."""
    if not text or text == "auto":
        return text
    candidate, sep, like = text.partition("=")
    if not sep or not candidate.strip() or not like.strip():
        raise ConfigError(f"--drift must be 'auto' or CANDIDATE=LIKE, got {text!r}")
    return candidate.strip(), like.strip()
