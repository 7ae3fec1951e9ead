"""``mixllm``: train, route and evaluate from the command line.

    mixllm train  --data ../shared/data/routerbench --split train --out runs/router
    mixllm route  --router runs/router --cost-share 0.2 "Write a function that reverses a list"
    mixllm eval   --data ../shared/data/routerbench --out runs/eval [--tune] [--decisions FILE]
    mixllm learn  --router runs/router --state redis://localhost:6379/0   # shared-state learner

``--data`` takes RouterBench files or folders (wide layout, detected from the header) or long
CSV files (``query, model, quality, cost`` …, see ``mixllm_router.data``). ``eval`` uses the
``split`` column (RouterBench: the file names) unless ``--train`` and ``--test`` are given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._exceptions import MixLLMError

if TYPE_CHECKING:
    from ..data import RoutingDataset
    from ..encoders.base import QueryEncoder

__all__ = ["main", "build_parser"]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _is_routerbench(path: Path) -> bool:
    if path.is_dir():
        return True
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        header = fh.readline()
    return "|total_cost" in header and "prompt" in header


def load_data(paths: Sequence[str], *, split: str | None = None, on_error: str = "drop") -> RoutingDataset:
    """Read RouterBench (wide) or long-CSV files into one dataset."""
    from ..data import RoutingDataset, load_routerbench

    sets = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise MixLLMError(f"no such file or folder: {path}")
        if _is_routerbench(path):
            sets.append(load_routerbench(path, split=split, on_error=on_error))  # type: ignore[arg-type]
        else:
            data = RoutingDataset.from_csv(path, on_error=on_error)  # type: ignore[arg-type]
            if split is not None:
                if not data.has_column("split"):
                    raise MixLLMError(f"{path}: no 'split' column, so split {split!r} selects nothing; "
                                      "leave the split out to use every row")
                data = data.splits().get(split) or data.subset([])
            sets.append(data)
    if not sets:
        raise MixLLMError("no data given")
    return sets[0] if len(sets) == 1 else sets[0].concat(*sets[1:])


def load_train_test(
    paths: Sequence[str], *, on_error: str = "drop", test_size: float = 0.2, seed: int = 0
) -> tuple[RoutingDataset, RoutingDataset]:
    """Training and test sets from ``--data``.

    With a ``split`` column (RouterBench: from the file names) its ``train`` and ``test`` rows.
    Without one, a seeded share ``test_size`` of the queries (stratified by ``task`` where the data
    has one) is held out: evaluating on the training queries would report memorisation, not routing.
    """
    import numpy as np

    data = load_data(paths, on_error=on_error)
    if data.has_column("split"):
        parts = data.splits()
        if "train" not in parts or "test" not in parts:
            raise MixLLMError(f"the split column holds {sorted(parts)}; this needs 'train' and 'test' rows "
                              "(or no split column at all, and a held-out share is used)")
        return parts["train"], parts["test"]
    complete = np.isfinite(data.matrix("quality")).all(axis=1) & np.isfinite(data.matrix("cost")).all(axis=1)
    if complete.all():
        train, test = data.train_test_split(test_size, seed=seed)
        _log(f"no 'split' column: {len(test)} of {len(data)} queries ({test_size:.0%}, seed {seed}) held out as "
             "the test set")
        return train, test
    # sparse outcomes (not every model ran on every query): only a query every model answered can
    # score the choice at every λ, so the test set is drawn from those; the rest all train
    ids = data.query_ids
    complete_ids = [q for q, ok in zip(ids, complete) if ok]
    if len(complete_ids) < 2:
        raise MixLLMError(f"{len(complete_ids)} of {len(data)} queries have every model's outcome; an offline "
                          "evaluation needs some (a split column, or queries answered by every model)")
    _, test = data.subset(complete_ids).train_test_split(test_size, seed=seed)
    held = set(test.query_ids)
    train = data.subset([q for q in ids if q not in held])
    _log(f"no 'split' column: {len(test)} of the {len(complete_ids)} queries with every model's outcome "
         f"({test_size:.0%}, seed {seed}) held out as the test set; {len(train)} queries train")
    return train, test


def _encoder_from_args(args: argparse.Namespace) -> QueryEncoder | None:
    if getattr(args, "encoder", "minilm") == "hashing":
        from ..encoders import HashingEncoder

        return HashingEncoder()
    return None


def _config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    for key in ("quality_model", "prior_strength", "knn_k", "cost_weight", "reference_model"):
        value = getattr(args, key, None)
        if value is not None:
            cfg[key] = value
    encoder: dict[str, Any] = {}
    if getattr(args, "encoder", None) == "hashing":
        encoder["kind"] = "hashing"
    if getattr(args, "cache_dir", None):
        encoder["cache_dir"] = args.cache_dir
    if getattr(args, "encoder_backend", None):
        encoder["backend"] = args.encoder_backend
    if encoder:
        cfg["encoder"] = encoder
    return cfg


def _add_split_options(p: argparse.ArgumentParser, *, with_seed: bool = True) -> None:
    """``--test-size`` (and ``--seed``, unless the command has its own) for :func:`load_train_test`."""
    p.add_argument("--test-size", dest="test_size", type=float, default=0.2,
                   help="share of the queries held out as test when --data has no split column (default 0.2)")
    if with_seed:
        p.add_argument("--seed", type=int, default=0, help="seed of that held-out split")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quality-model", dest="quality_model",
                   choices=["ridge", "knn", "mlp", "ridge+knn", "ridge+knn+mlp"])
    p.add_argument("--prior-strength", dest="prior_strength", type=float, help="λ0 (ridge penalty)")
    p.add_argument("--knn-k", dest="knn_k", type=int)
    p.add_argument("--reference-model", dest="reference_model")
    p.add_argument("--encoder", choices=["minilm", "hashing"], default="minilm",
                   help="minilm: bundled all-MiniLM-L6-v2 (default); hashing: torch-free, weaker")
    p.add_argument("--cache-dir", dest="cache_dir", help="embedding cache folder")
    _add_backend_option(p)
    p.add_argument("--tune", action="store_true", help="choose the predictor by cross-validation on the training data")
    p.add_argument("--representations", default="frozen",
                   help="with --tune: the representations the same CV chooses from, comma-separated, of frozen, "
                        "tag-enhanced, fine-tuned, e.g. frozen,fine-tuned (default: frozen only, no extra step; "
                        "see docs/benchmarks.md §12 for what the others cost and gain)")
    p.add_argument("--on-error", dest="on_error", choices=["drop", "raise"], default="drop",
                   help="what to do with bad rows in the data (default: drop and report)")
    from ..encoders.tag_enhanced import add_tagging_arguments

    add_tagging_arguments(p)


def _add_backend_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--encoder-backend", dest="encoder_backend", choices=["torch", "onnx", "onnx-int8", "auto"],
                   help="runtime of the MiniLM encoder (default auto: onnx if installed, else torch)")


def _training_encoder(args: argparse.Namespace, train: RoutingDataset, config: dict[str, Any]) -> QueryEncoder | None:
    """The plain encoder the options ask for, or a tag-enhanced one fitted on ``train``."""
    encoder = _encoder_from_args(args)
    if getattr(args, "embeddings", "plain") != "tag-enhanced":
        return encoder
    from ..config import make_config
    from ..encoders.backends import build_encoder
    from ..encoders.tag_enhanced import encoder_from_args

    _log("fitting tag-enhanced embeddings on the training queries ...")
    base = encoder if encoder is not None else build_encoder(make_config(config).encoder)
    return encoder_from_args(args, base, train, show_progress=True)


def _maybe_tune(args: argparse.Namespace, train: RoutingDataset, config: dict[str, Any],
                encoder: QueryEncoder | None) -> dict[str, Any]:
    """The config, tuned by CV when ``--tune``; the chosen overrides go to ``args.tuned_setting``."""
    args.tuned_setting = None
    if not args.tune:
        return config
    from ..evaluation.tuning import tune

    _log("tuning by 5-fold cross-validation on the training data ...")
    result = tune(train, config=config, encoder=encoder, show_progress=True)
    _log(result.table())
    args.tuned_setting = result.setting
    reps = tuple(r for r in getattr(args, "representations", "").split(",") if r)
    if reps and reps != ("frozen",) and getattr(args, "embeddings", "plain") == "plain":
        from ..evaluation.representation import build_representation, cv_representations

        _log(f"choosing the representation ({', '.join(reps)}) by the same cross-validation ...")
        rep = cv_representations(train, config=result.best, encoder=encoder, representations=reps, adapter_threads=1)
        _log(rep.table())
        args.tuned_encoder = build_representation(rep.best, train, config=result.best, encoder=encoder)
        if rep.best["name"] != "frozen":
            args.tuned_setting = {**result.setting, "representation": rep.best["label"]}
    return result.best.model_dump()


def cmd_train(args: argparse.Namespace) -> int:
    from ..router import MixLLMRouter

    t0 = time.perf_counter()
    data = load_data(args.data, split=args.split, on_error=args.on_error)
    _log(data.summary())
    config = _config_from_args(args)
    encoder = _training_encoder(args, data, config)
    config = _maybe_tune(args, data, config, encoder)
    encoder = getattr(args, "tuned_encoder", None) or encoder
    candidates = None
    if args.candidates:
        from ..candidates_file import load_candidates

        candidates = load_candidates(args.candidates).to_candidates()  # the file defines the pool
    router = MixLLMRouter(candidates, config=config, encoder=encoder)
    router.fit(data, show_progress=True)
    path = router.save(args.out)
    _log(f"trained on {len(data)} queries, {len(router.candidate_names)} candidates in "
         f"{time.perf_counter() - t0:.1f}s; saved to {path}")
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    from ..router import MixLLMRouter

    if args.encoder_backend:  # the saved config names a backend; this machine may have another
        from ..encoders.backends import ENV_VAR

        os.environ[ENV_VAR] = args.encoder_backend
    router = MixLLMRouter.load(args.router, encoder=_encoder_from_args(args))
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


def cmd_eval(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate, plot_tradeoff

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
    _log(f"train: {len(train)} queries, test: {len(test)} queries, models: {len(train.models)}")
    config = _config_from_args(args)
    encoder = _training_encoder(args, train, config)
    config = _maybe_tune(args, train, config, encoder)
    encoder = getattr(args, "tuned_encoder", None) or encoder
    report = evaluate(train, test, config=config, encoder=encoder, reference=args.reference_model,
                      show_progress=True, decisions_at=args.decision_points if args.decisions else 0,
                      setting=args.tuned_setting)
    print(report.table())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report.write_json(out / "results.json")
    written = [out / "results.json"]
    try:
        written.append(plot_tradeoff(report, out / "tradeoff.png"))
    except ImportError:
        _log("matplotlib is not installed: no plot (pip install 'mixllm-router[plot]')")
    if args.decisions:
        Path(args.decisions).write_text("\n".join(json.dumps(d) for d in report.decisions) + "\n")
        written.append(Path(args.decisions))
    _log(f"done in {time.perf_counter() - t0:.1f}s; wrote {', '.join(str(p) for p in written)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mixllm", description=__doc__.split("\n\n")[0] if __doc__ else None,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="learn a router from recorded outcomes and save it")
    p.add_argument("--data", nargs="+", required=True, help="RouterBench files/folders or long CSV files")
    p.add_argument("--split", help="use only rows of this split (e.g. train)")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--candidates", help="candidates file (.toml/.json): the pool, with prices, context window, "
                                        "tool support, concurrency (format: mixllm_router.candidates_file)")
    _add_model_options(p)
    p.set_defaults(func=cmd_train)

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
    _add_backend_option(p)
    p.add_argument("--json", action="store_true", help="one JSON decision per line")
    p.set_defaults(func=cmd_route)

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
    _add_split_options(p)
    _add_model_options(p)
    p.set_defaults(func=cmd_eval)

    for hook in _extension_parsers():
        hook(sub)
    return parser


def _extension_parsers() -> list[Any]:
    """Sub-commands that live next to their feature (the simulators)."""
    from ..evaluation.online import add_simulate_online_parser
    from ..evaluation.simulator import add_simulate_parser
    from ..state.learner import add_learn_parser
    from .collect import add_collect_parser

    return [add_simulate_parser, add_simulate_online_parser, add_learn_parser, add_collect_parser]


def _format_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> str:
    return f"mixllm: {category.__name__}: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    warnings.formatwarning = _format_warning  # one readable line per warning, no source echo
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MixLLMError as exc:
        _log(f"mixllm: error: {exc}")
        return 2
    except KeyboardInterrupt:
        _log("interrupted")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
