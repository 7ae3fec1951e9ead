"""Which end of a long prompt should the encoder keep? Measured on RouterBench TRAIN files only.

For each truncation strategy ("head", "tail", "head_tail") and max_tokens in {128, 256, 512}, embed
the 2,212 train prompts with all-MiniLM-L6-v2 and score the embeddings by 5-fold cross-validation:

- Brier: for every one of the 11 models, ridge regression from the embedding to the model's 0/1
  score (alpha picked per model on a small grid by efficient leave-one-out inside each training
  fold), prediction clipped to [0, 1]; mean squared error on the held-out fold, averaged over the
  11 models. This is the error of the quality predictors ``q_l(e)`` the router relies on.
- gain: how much lower that error is than a predictor that knows only the task (each model's
  mean score per task): the part of the embedding's value that goes beyond the task label, which
  is what separates the truncation modes (task acc is 1.000 for every mode).
- task acc: logistic regression from the embedding to the task (eval_name).
- q/s: embedding throughput on this machine (queries per second, whole train set, batch 64).

Rows with a NaN score are dropped and duplicated ``sample_id`` rows are kept once (so a prompt
cannot sit in both a training and a held-out fold). Embeddings are cached as .npy files under
``--cache`` so a re-run only scores. The HashingEncoder and a constant predictor (each model's
training-fold mean) are printed for scale.

Run:  python benchmarks/truncation.py [--data ../shared/data/routerbench] [--cache /tmp/mixllm-trunc]
"""

from __future__ import annotations

import argparse
import ast
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import StratifiedKFold

FILES = ("arc_challenge_train.csv", "winograde_train.csv", "mbpp_train.csv")
ALPHAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def load_train(data: Path) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """Prompts, (n, 11) score matrix, model names, task labels — train files only."""
    frames = [pd.read_csv(data / f) for f in FILES]
    df = pd.concat(frames, ignore_index=True)
    models = [c for c in df.columns if "|" not in c and c not in
              ("Unnamed: 0", "sample_id", "prompt", "eval_name", "oracle_model_to_route_to")]
    n0 = len(df)
    df = df.dropna(subset=models).drop_duplicates(subset="sample_id", keep="first")
    print(f"train rows: {n0} read, {n0 - len(df)} dropped (NaN score or duplicate sample_id), {len(df)} kept")
    prompts = ["\n".join(ast.literal_eval(p)) for p in df["prompt"]]
    return prompts, df[models].to_numpy(dtype=np.float64), models, df["eval_name"].to_numpy()


def embed(name: str, make, prompts: list[str], cache: Path) -> tuple[np.ndarray, float]:
    f = cache / f"{name}.npy"
    t = cache / f"{name}.seconds"
    if f.exists() and t.exists():
        return np.load(f, allow_pickle=False), float(t.read_text())
    enc = make()
    enc.encode(prompts[:8])  # load weights outside the timed part
    start = time.perf_counter()
    x = enc.encode(prompts)
    secs = time.perf_counter() - start
    np.save(f, x, allow_pickle=False)
    t.write_text(str(secs))
    return x, secs


def score(x: np.ndarray, y: np.ndarray, task: np.ndarray) -> tuple[np.ndarray, float]:
    """(per-prompt squared error averaged over the models, CV task accuracy)."""
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0).split(x, task)
    se = np.empty(len(y))
    correct = 0
    for tr, te in folds:
        ridge = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(x[tr], y[tr])
        p = np.clip(ridge.predict(x[te]), 0.0, 1.0)
        se[te] = ((p - y[te]) ** 2).mean(1)
        clf = LogisticRegression(max_iter=2000).fit(x[tr], task[tr])
        correct += int((clf.predict(x[te]) == task[te]).sum())
    return se, correct / len(y)


def task_mean_error(y: np.ndarray, task: np.ndarray) -> np.ndarray:
    """Per-prompt squared error of predicting each model's training-fold mean score per task."""
    se = np.empty(len(y))
    for tr, te in StratifiedKFold(n_splits=5, shuffle=True, random_state=0).split(y, task):
        for t in np.unique(task):
            mean = y[tr][task[tr] == t].mean(0)
            rows = te[task[te] == t]
            se[rows] = ((mean - y[rows]) ** 2).mean(1)
    return se


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "routerbench")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/mixllm-trunc"))
    ap.add_argument("--max-tokens", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--strategies", nargs="+", default=["head", "tail", "head_tail"])
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)

    from mixllm_router.encoders import HashingEncoder, HFEncoder

    prompts, y, models, task = load_train(args.data)
    counter = HFEncoder()
    lengths = np.array([counter.count_tokens(p) for p in prompts])
    for t in np.unique(task):
        ln = lengths[task == t]
        print(f"  {t:14s} n={len(ln):4d} tokens median {int(np.median(ln))}, max {ln.max()}, "
              f"> 254: {np.mean(ln > 254):.0%}")

    base = task_mean_error(y, task)
    rows = []
    x, secs = embed("hashing-512", lambda: HashingEncoder(dim=512), prompts, args.cache)
    rows.append(("hashing (dim 512)", "-", secs, *score(x, y, task)))
    for mt in args.max_tokens:
        for strat in args.strategies:
            x, secs = embed(f"minilm-{strat}-{mt}",
                            lambda: HFEncoder(max_tokens=mt, truncation=strat), prompts, args.cache)
            rows.append((f"minilm {strat}", str(mt), secs, *score(x, y, task)))
            print(f"  done {strat} {mt}: {len(prompts) / secs:.0f} q/s", flush=True)

    n = len(prompts)
    print(f"\n{n} train prompts, {len(models)} models, 5-fold CV. Brier = mean over prompts and "
          f"models of (clip(q_hat) - score)^2.\nPer-task mean predictor (knows only the task): "
          f"Brier {base.mean():.4f}. 'gain' = that minus the row's Brier, with its paired "
          f"standard error (higher is better).")
    print("| encoder | max_tokens | Brier | gain over task mean (± s.e.) | task acc | q/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, mt, secs, se, acc in rows:
        d = base - se
        print(f"| {name} | {mt} | {se.mean():.4f} | {d.mean():+.4f} ± {d.std(ddof=1) / np.sqrt(n):.4f} "
              f"| {acc:.3f} | {n / secs:.0f} |")

if __name__ == "__main__":
    main()
