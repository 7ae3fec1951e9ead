"""Fine-tuning MiniLM's top layers on outcomes, scored by 5-fold CV on the train files (issue #19).

    python benchmarks/finetune_cv.py --data ../shared/data/routerbench --max-tokens 128 \\
        --setting top_k=1,lr=1e-4,epochs=3 --setting top_k=1,lr=1e-4,epochs=3,contrastive_weight=0.5

Same protocol as :func:`mixllm_router.evaluation.representation.cv_representations` (it runs the
loop, through its ``extra`` hook): the router's predictors at ``--prior-strength``, folds from
``fold_assignment(n, folds, seed)``, the fine-tune (early stopping included) fitted on each fold's
training part only, the whole set then embedded with the tuned layers and the predictors fitted on
the fold's training embeddings. Rows: frozen MiniLM at the library's 256 tokens, frozen at
``--max-tokens`` (the fine-tune's input), and one row per ``--setting``. The states entering the
tuned layers are computed once (they use no outcomes) and kept in ``--cache`` between runs.
``--shaped`` runs on the synthetic ``make_shaped`` set instead, its prompts embedded by MiniLM.
``--one-fold`` only times the first fold's fit of each setting.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np


def _settings(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in filter(None, text.split(",")):
        key, value = part.split("=", 1)
        try:
            out[key] = int(value)
        except ValueError:
            out[key] = float(value)
    return out


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _data(args: argparse.Namespace) -> Any:
    from mixllm_router import RoutingDataset
    from mixllm_router.data import load_routerbench

    if not args.shaped:
        return load_routerbench(args.data, split="train")
    from mixllm_router.evaluation.shapes import make_shaped

    mk = make_shaped(seed=0)
    return RoutingDataset.from_records(mk.records).splits()["train"]


def _save_cache(cache: Any, path: Path) -> None:
    """The hidden-state cache as safetensors (arrays only; never a pickle): each k's per-prompt
    states concatenated, with the prompt lengths to split them again."""
    from safetensors.numpy import save_file

    arrays = {"frozen": cache.frozen}
    for k, states in cache.states.items():
        arrays[f"states_{k}"] = np.concatenate(states)
        arrays[f"lengths_{k}"] = np.array([len(x) for x in states], dtype=np.int64)
    save_file(arrays, str(path), metadata={"max_tokens": str(cache.max_tokens), "seconds": str(cache.seconds)})


def _load_cache(path: Path) -> Any:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    from mixllm_router.encoders.encoder_finetune import HiddenCache

    arrays = load_file(str(path))
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
    states = {int(name.split("_")[1]): np.split(arrays[name], np.cumsum(arrays[f"lengths_{name.split('_')[1]}"])[:-1])
              for name in arrays if name.startswith("states_")}
    return HiddenCache(states, arrays["frozen"], int(meta["max_tokens"]), float(meta["seconds"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/routerbench")
    parser.add_argument("--shaped", action="store_true")
    parser.add_argument("--setting", action="append", default=[], help="k=v,... for finetune_top_layers")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--prior-strength", type=float, default=10.0)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default="/tmp/finetune_cv_cache")
    parser.add_argument("--one-fold", action="store_true")
    args = parser.parse_args(argv)
    import torch

    # Before torch starts its worker threads, which inherit it: the fine-tune's GELU backward makes
    # subnormal floats, some 20-100x slower on x86 (see encoder_finetune.finetune_top_layers).
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    from mixllm_router.encoders.encoder_finetune import cache_hidden_states, embed_with, finetune_top_layers
    from mixllm_router.encoders.hf import HFEncoder
    from mixllm_router.evaluation.representation import cv_representations
    from mixllm_router.model import fold_assignment

    data = _data(args)
    names = data.models
    quality, cost = data.matrix("quality", names), data.matrix("cost", names)
    complete = np.isfinite(quality).all(axis=1) & np.isfinite(cost).all(axis=1)
    texts = [q for q, ok in zip(data.queries, complete) if ok]
    quality = quality[complete]
    enc = HFEncoder(max_tokens=args.max_tokens, num_threads=args.threads)
    cache_file = Path(f"{args.cache}_{'shaped' if args.shaped else 'rb'}_{args.max_tokens}.safetensors")
    if cache_file.is_file():
        cache = _load_cache(cache_file)
    else:
        cache = cache_hidden_states(enc, texts, top_ks=(1, 2), max_tokens=args.max_tokens)
        _save_cache(cache, cache_file)
    print(f"{len(texts)} prompts, {sum(len(s) for s in cache.states[1])} tokens at max {args.max_tokens}; "
          f"states cached in {cache.seconds:.1f} s; RSS {_rss_mb():.0f} MB", flush=True)
    settings = [_settings(s) for s in args.setting]
    seed = 0
    if args.one_fold:
        tr = np.flatnonzero(fold_assignment(len(texts), args.folds, seed) != 0)
        for s in settings:
            fit = finetune_top_layers(enc, cache, tr, quality[tr], seed=seed, threads=args.threads, **s)
            t0 = time.perf_counter()
            embed_with(enc, fit, cache)
            print(f"{s}: fit {fit.seconds:.1f} s, embed all {time.perf_counter() - t0:.1f} s, best epoch "
                  f"{fit.best_epoch}, val {[round(v, 4) for v in fit.val_history]}, RSS {_rss_mb():.0f} MB",
                  flush=True)
        return 0
    logs: dict[str, list[str]] = {}
    extra: list[tuple[str, dict[str, Any], Any]] = [(f"frozen, {args.max_tokens} tokens", {}, lambda tr: cache.frozen)]
    for s in settings:
        label = "fine-tuned MiniLM (" + ", ".join(f"{k}={v}" for k, v in s.items()) + ")"
        logs[label] = []

        def project(tr: np.ndarray, s: dict[str, Any] = s, label: str = label) -> np.ndarray:
            fit = finetune_top_layers(enc, cache, tr, quality[tr], seed=seed, threads=args.threads, **s)
            z = embed_with(enc, fit, cache)
            logs[label].append(f"fit {fit.seconds:.0f} s, epoch kept {fit.best_epoch}/{len(fit.val_history) - 1}")
            print(f"  {label} fold {len(logs[label])}: {logs[label][-1]}; RSS {_rss_mb():.0f} MB; "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
            return z

        extra.append((label, s, project))
    result = cv_representations(data, config={"prior_strength": args.prior_strength}, representations=("frozen",),
                                folds=args.folds, extra=extra)
    print(result.table())
    for label, lines in logs.items():
        print(f"{label}: " + "; ".join(lines))
    print(f"peak RSS {_rss_mb():.0f} MB; load average {os.getloadavg()}; torch threads {args.threads}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
