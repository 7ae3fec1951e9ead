"""``mixllm collect``: call every candidate on a file of queries, score the answers, write outcomes.

    mixllm collect --queries queries.jsonl --candidates candidates.toml --scorer numeric --out outcomes.csv
    mixllm collect --queries queries.jsonl --replay ../shared/data/routerbench --scorer mc --out outcomes.csv
    mixllm collect --queries logged.csv --replay answers.csv --scorer exact --out outcomes.csv --only new-model

Scorer specs (``--scorer``): ``exact``, ``contains``, ``mc`` (multiple choice), ``numeric``
(final number, GSM8K style), ``regex:PATTERN``, ``json-schema:FILE``, ``judge:NAME`` (absolute LLM
judge) and ``pairwise:NAME`` (pairwise against ``--reference-model``'s answer). NAME is a
candidate whose client grades (``--only`` leaves it out of the collection).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .._exceptions import ScoringError

__all__ = ["add_parser", "run", "scorer_from_spec"]


def scorer_from_spec(spec: str, judges: dict[str, Any] | None = None) -> Any:
    """The scorer a ``--scorer`` spec names; ``judges`` maps candidate names to (Candidate, client)."""
    from ..scoring import (
        ExactMatch,
        JSONSchemaValid,
        LLMJudge,
        MultipleChoice,
        NumericAnswer,
        PairwiseJudge,
        RegexMatch,
    )

    kind, _, arg = spec.partition(":")
    simple = {"exact": lambda: ExactMatch(), "contains": lambda: ExactMatch(contains=True),
              "mc": lambda: MultipleChoice(), "numeric": lambda: NumericAnswer()}
    if kind in simple and not arg:
        return simple[kind]()
    if kind == "regex" and arg:
        return RegexMatch(arg)
    if kind == "json-schema" and arg:
        try:
            schema = json.loads(Path(arg).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ScoringError(f"--scorer json-schema:{arg}: cannot read the schema: {exc}") from None
        return JSONSchemaValid(schema)
    if kind in ("judge", "pairwise") and arg:
        if not judges or arg not in judges:
            raise ScoringError(f"--scorer {spec}: no candidate {arg!r} with a client to judge with "
                               f"(known: {sorted(judges or {})})")
        candidate, client = judges[arg]
        cls = LLMJudge if kind == "judge" else PairwiseJudge
        return cls(client, judge_candidate=candidate)
    raise ScoringError(f"unknown --scorer {spec!r}; one of exact, contains, mc, numeric, regex:PATTERN, "
                       "json-schema:FILE, judge:NAME, pairwise:NAME")


def _replay_candidates(paths: list[str]) -> list[tuple[Any, Any]]:
    from ..candidates import Candidate
    from ..clients import ReplayClient
    from ..evaluation.loading import load_data

    data = load_data(paths, on_error="drop")
    if not data.has_column("response"):
        raise ScoringError(f"{paths}: the data has no recorded responses to replay")
    # replayed answers cost nothing now: prices 0, given (not unknown)
    return [(Candidate(name=m, input_price=0.0, output_price=0.0), ReplayClient.from_dataset(data, m))
            for m in data.models]


def _file_candidates(path: str) -> list[tuple[Any, Any]]:
    from ..candidates_file import load_candidates

    spec = load_candidates(path)
    clients = spec.clients()
    without = [n for n in spec.names if n not in clients]
    if without:
        raise ScoringError(f"{path}: candidates {without} have no [candidates.client]: collect cannot call them")
    return [(c, clients[c.name]) for c in spec.to_candidates()]


def run(args: argparse.Namespace) -> int:
    from ..scoring.collection import collect

    if bool(args.candidates) == bool(args.replay):
        raise ScoringError("give the candidates with --candidates FILE or --replay DATA (one of them)")
    pairs = _file_candidates(args.candidates) if args.candidates else _replay_candidates(args.replay)
    judges = {c.name: (c, k) for c, k in pairs}
    scorer = scorer_from_spec(args.scorer, judges)
    report = collect(
        args.queries, pairs, scorer, args.out, only=args.only, max_spend_usd=args.max_spend,
        reference_model=args.reference_model, concurrency=args.concurrency, max_tokens=args.max_tokens,
        temperature=args.temperature, system_prompt=args.system_prompt, fsync=not args.no_fsync,
        progress=not args.no_progress,
    )
    print(report.summary(), file=sys.stderr)
    judge_stats = getattr(scorer, "stats", None)
    if judge_stats:
        print(f"judge: {json.dumps(judge_stats)}", file=sys.stderr)
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("collect", help="call every candidate on a file of queries, score the answers, "
                                       "write the outcome CSV (resumable)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", required=True, help="CSV or JSONL: query, and optionally query_id, reference, "
                                                    "task, split")
    p.add_argument("--candidates", help="candidates file (.toml/.json, mixllm_router.candidates_file): prices, "
                                        "concurrency and a client for each")
    p.add_argument("--replay", nargs="+", help="candidates that replay recorded answers: RouterBench files/folders "
                                               "or long CSV files with a response column")
    p.add_argument("--scorer", required=True, help="exact | contains | mc | numeric | regex:PATTERN | "
                                                   "json-schema:FILE | judge:NAME | pairwise:NAME")
    p.add_argument("--out", required=True, help="outcome CSV to write (results kept in OUT.calls.jsonl)")
    p.add_argument("--only", nargs="+", help="collect only these candidates (e.g. a new model)")
    p.add_argument("--max-spend", dest="max_spend", type=float, help="USD cap over the whole collection")
    p.add_argument("--reference-model", dest="reference_model",
                   help="its answer is every other candidate's reference (for pairwise judging)")
    p.add_argument("--concurrency", type=int, help="calls at once per candidate (default: its max_concurrency)")
    p.add_argument("--max-tokens", dest="max_tokens", type=int)
    p.add_argument("--temperature", type=float)
    p.add_argument("--system-prompt", dest="system_prompt")
    p.add_argument("--no-fsync", dest="no_fsync", action="store_true",
                   help="do not fsync each result (faster; a power cut may lose the last ones)")
    p.add_argument("--no-progress", dest="no_progress", action="store_true")
    p.set_defaults(func=run)
