"""What several ``mixllm`` commands share: the model options, the config they build, progress notes.

The commands only translate options into library calls; these helpers state that translation once
(``train``, ``eval`` and ``simulate-online`` take the same model options and build the same
config from them).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..data import RoutingDataset
    from ..encoders.base import QueryEncoder

__all__ = [
    "ModelSetup",
    "add_backend_option",
    "add_model_options",
    "add_split_options",
    "config_from_args",
    "encoder_from_args",
    "log",
    "model_setup",
]


def log(message: str) -> None:
    """Progress notes go to stderr, so a command's stdout stays its result."""
    print(message, file=sys.stderr, flush=True)


def encoder_from_args(args: argparse.Namespace) -> QueryEncoder | None:
    """The torch-free hashing encoder when ``--encoder hashing``; else None (the config's encoder)."""
    if getattr(args, "encoder", "minilm") == "hashing":
        from ..encoders import HashingEncoder

        return HashingEncoder()
    return None


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The router config overrides the model options ask for (only the options given)."""
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


def add_split_options(p: argparse.ArgumentParser, *, with_seed: bool = True) -> None:
    """``--test-size`` (and ``--seed``, unless the command has its own) for ``load_train_test``."""
    p.add_argument("--test-size", dest="test_size", type=float, default=0.2,
                   help="share of the queries held out as test when --data has no split column (default 0.2)")
    if with_seed:
        p.add_argument("--seed", type=int, default=0, help="seed of that held-out split")


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The options that shape the router a command fits: predictor, encoder, tuning, bad rows."""
    p.add_argument("--quality-model", dest="quality_model",
                   choices=["ridge", "knn", "mlp", "ridge+knn", "ridge+knn+mlp"])
    p.add_argument("--prior-strength", dest="prior_strength", type=float, help="λ0 (ridge penalty)")
    p.add_argument("--knn-k", dest="knn_k", type=int)
    p.add_argument("--reference-model", dest="reference_model")
    p.add_argument("--encoder", choices=["minilm", "hashing"], default="minilm",
                   help="minilm: bundled all-MiniLM-L6-v2 (default); hashing: torch-free, weaker")
    p.add_argument("--cache-dir", dest="cache_dir", help="embedding cache folder")
    add_backend_option(p)
    p.add_argument("--tune", action="store_true", help="choose the predictor by cross-validation on the training data")
    p.add_argument("--representations", default="frozen",
                   help="with --tune: the representations the same CV chooses from, comma-separated, of frozen, "
                        "tag-enhanced, fine-tuned, e.g. frozen,fine-tuned (default: frozen only, no extra step; "
                        "see docs/benchmarks.md §12 for what the others cost and gain)")
    p.add_argument("--on-error", dest="on_error", choices=["drop", "raise"], default="drop",
                   help="what to do with bad rows in the data (default: drop and report)")
    from ..encoders.tag_enhanced import add_tagging_arguments

    add_tagging_arguments(p)


def add_backend_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--encoder-backend", dest="encoder_backend", choices=["torch", "onnx", "onnx-int8", "auto"],
                   help="runtime of the MiniLM encoder (default auto: onnx if installed, else torch)")


@dataclass
class ModelSetup:
    """What a fitting command hands the router: its config, its encoder, and what tuning chose."""

    config: dict[str, Any]
    encoder: QueryEncoder | None
    setting: dict[str, Any] | None = None  # the tuned overrides (and representation), for the report


def model_setup(args: argparse.Namespace, train: RoutingDataset) -> ModelSetup:
    """Config and encoder from the model options; with ``--tune``, chosen by CV on ``train``."""
    config = config_from_args(args)
    encoder = _training_encoder(args, train, config)
    if not args.tune:
        return ModelSetup(config, encoder)
    return _tune(args, train, config, encoder)


def _training_encoder(args: argparse.Namespace, train: RoutingDataset, config: dict[str, Any]) -> QueryEncoder | None:
    """The plain encoder the options ask for, or a tag-enhanced one fitted on ``train``."""
    encoder = encoder_from_args(args)
    if getattr(args, "embeddings", "plain") != "tag-enhanced":
        return encoder
    from ..config import make_config
    from ..encoders.backends import build_encoder
    from ..encoders.tag_enhanced import encoder_from_args as tag_enhanced_encoder

    log("fitting tag-enhanced embeddings on the training queries ...")
    base = encoder if encoder is not None else build_encoder(make_config(config).encoder)
    return tag_enhanced_encoder(args, base, train, show_progress=True)


def _tune(args: argparse.Namespace, train: RoutingDataset, config: dict[str, Any],
          encoder: QueryEncoder | None) -> ModelSetup:
    """The predictor (and, with ``--representations``, the representation) chosen by 5-fold CV."""
    from ..evaluation.tuning import tune

    log("tuning by 5-fold cross-validation on the training data ...")
    result = tune(train, config=config, encoder=encoder, show_progress=True)
    log(result.table())
    setting = result.setting
    reps = tuple(r for r in getattr(args, "representations", "").split(",") if r)
    if reps and reps != ("frozen",) and getattr(args, "embeddings", "plain") == "plain":
        from ..evaluation.representation import build_representation, cv_representations

        log(f"choosing the representation ({', '.join(reps)}) by the same cross-validation ...")
        rep = cv_representations(train, config=result.best, encoder=encoder, representations=reps, adapter_threads=1)
        log(rep.table())
        encoder = build_representation(rep.best, train, config=result.best, encoder=encoder) or encoder
        if rep.best["name"] != "frozen":
            setting = {**result.setting, "representation": rep.best["label"]}
    return ModelSetup(result.best.model_dump(), encoder, setting)
