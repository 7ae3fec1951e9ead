"""Fine-tuning the top layers of the bundled MiniLM on recorded outcomes (issue #19, item 1).

RouteLLM's BERT router and RouterDC fine-tune the encoder itself; the outcome adapter
(:mod:`.outcome_adapter`) only learns a residual map on the frozen pooled embedding. This module
trains the encoder's own weights, but only the top ``k`` transformer layers, which is what makes
it affordable on two CPU cores:

- the embeddings and layers ``0 .. L-k-1`` stay frozen and see no outcomes, so their output
  hidden states are computed **once** for every prompt (:func:`cache_hidden_states`) and reused
  by every fold and setting of a cross-validation (no leak: nothing there depends on outcomes);
  each prompt is kept as its own variable-length float16 array, so no padding is stored;
- each fit (:func:`finetune_top_layers`) trains copies of the top ``k`` layers plus the heads on
  those cached states, in batches of prompts of similar length.

The objective is the outcome adapter's, on ``e' = normalize(meanpool(top_k(h)))``:
``L = L_heads + β · L_contrast + ρ · |e' − e|²`` with ``e`` the frozen embedding (the same
prompts through the untouched top layers). ``L_heads`` is a linear head per candidate, each
candidate's squared error divided by its score variance, NaN entries ignored; the heads start
at the ridge solution on the frozen embedding, so the first gradient already says where the
frozen representation errs. ``L_contrast`` is RouterDC's query–candidate term
(:func:`.outcome_adapter._contrast_sets`). Early stopping: a seeded share ``val_share`` of the
training prompts is held out and the epoch with the lowest validation ``L_heads`` is kept.

Tokenisation is the library's (:class:`.hf.HFEncoder`: special tokens kept, content cut by
:func:`.hf.truncate_ids`), so the frozen row of a cross-validation at the same ``max_tokens`` is
exactly what the router embeds. Torch is imported inside the functions only.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._exceptions import ConfigError
from .hf import HFEncoder, truncate_ids
from .outcome_adapter import _contrast_sets

__all__ = ["FinetuneFit", "HiddenCache", "cache_hidden_states", "embed_with", "finetune_top_layers",
           "finetuned_embedder"]


@dataclass
class HiddenCache:
    """Per-prompt hidden states entering layer ``L - k`` for each cached ``k``, and the frozen embedding.

    ``states[k][i]`` is a float16 ``(len_i, d)`` array; ``frozen`` is ``(n, d)`` float32 with unit
    rows (the full frozen model at the same truncation).
    """

    states: dict[int, list[np.ndarray]]
    frozen: np.ndarray
    max_tokens: int
    seconds: float = 0.0


@dataclass
class FinetuneFit:
    """The tuned top layers (a numpy state dict per layer) and the record of training."""

    top_k: int
    layers: list[dict[str, np.ndarray]]
    best_epoch: int
    val_history: list[float] = field(default_factory=list)
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)


def _model(encoder: HFEncoder) -> Any:
    """The encoder's BertModel, loaded the library's way (offline, from ``encoder.model_path``)."""
    if encoder._model is None:
        encoder._load()
    return encoder._model


def _ids(encoder: HFEncoder, texts: Sequence[str], max_tokens: int) -> list[list[int]]:
    """Token ids exactly as :meth:`HFEncoder.encode` builds them, at ``max_tokens``."""
    if encoder._tokenizer is None:
        encoder._load()
    return [lead + truncate_ids(body, max_tokens - len(lead) - len(trail), encoder.truncation) + trail
            for lead, body, trail in encoder._token_ids(list(texts))]


def _mask(torch: Any, lengths: Sequence[int], width: int) -> tuple[Any, Any]:
    """(0/1 mask (b, s), additive attention mask (b, 1, 1, s)) for right-padded rows."""
    keep = torch.zeros((len(lengths), width))
    for r, n in enumerate(lengths):
        keep[r, :n] = 1.0
    return keep, (1.0 - keep)[:, None, None, :] * torch.finfo(torch.float32).min


def _pad(torch: Any, arrays: Sequence[np.ndarray]) -> Any:
    width = max(len(a) for a in arrays)
    out = np.zeros((len(arrays), width, arrays[0].shape[1]), dtype=np.float32)
    for r, a in enumerate(arrays):
        out[r, : len(a)] = a
    return torch.from_numpy(out)


def _top(torch: Any, layers: Iterable[Any], h: Any, keep: Any, additive: Any) -> Any:
    """Top layers, masked mean pool, L2 normalise → (b, d)."""
    for layer in layers:
        out = layer(h, attention_mask=additive)
        h = out[0] if isinstance(out, tuple) else out
    m = keep.unsqueeze(-1)
    pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1, eps=1e-12)


def _batches(lengths: np.ndarray, rows: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """``rows`` sorted by length and cut into batches of ``batch_size`` (little padding)."""
    order = rows[np.argsort(lengths[rows], kind="stable")]
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def cache_hidden_states(encoder: HFEncoder, texts: Sequence[str], *, top_ks: Sequence[int] = (1, 2),
                        max_tokens: int | None = None, batch_size: int = 32) -> HiddenCache:
    """One frozen forward pass over ``texts``: the states entering layer ``L-k`` for each ``k`` in ``top_ks``."""
    import torch

    start = time.perf_counter()
    model = _model(encoder)
    n_layers = len(model.encoder.layer)
    if any(not 1 <= k <= n_layers for k in top_ks):
        raise ConfigError(f"top_ks must lie in 1..{n_layers}, not {tuple(top_ks)}")
    max_tokens = int(max_tokens or encoder.max_tokens)
    ids = _ids(encoder, texts, max_tokens)
    lengths = np.array([len(x) for x in ids])
    states: dict[int, list[np.ndarray]] = {int(k): [np.empty(0)] * len(ids) for k in top_ks}
    frozen = np.empty((len(ids), encoder.dim), dtype=np.float32)
    pad_id = encoder._tokenizer.pad_token_id or 0
    with torch.inference_mode():
        for idx in _batches(lengths, np.arange(len(ids)), batch_size):
            width = int(lengths[idx].max())
            input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            for r, i in enumerate(idx):
                input_ids[r, : lengths[i]] = torch.tensor(ids[i])
            keep, _ = _mask(torch, lengths[idx], width)
            out = model(input_ids=input_ids, attention_mask=keep.long(), output_hidden_states=True)
            for k in states:
                h = out.hidden_states[n_layers - k].to(torch.float16).numpy()
                for r, i in enumerate(idx):
                    states[k][i] = h[r, : lengths[i]].copy()
            m = keep.unsqueeze(-1)
            pooled = (out.last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1e-9)
            frozen[idx] = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()
    return HiddenCache(states, frozen, max_tokens, time.perf_counter() - start)


def _ridge_heads(e: np.ndarray, y: np.ndarray, observed: np.ndarray, alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-candidate ridge of the centred target on ``e`` (observed rows only): the heads' start."""
    d, m = e.shape[1], y.shape[1]
    w, b = np.zeros((d, m), dtype=np.float32), np.zeros(m, dtype=np.float32)
    for j in range(m):
        x, t = e[observed[:, j]], y[observed[:, j], j]
        if len(t) == 0:
            continue
        mu = x.mean(0)
        xc = x - mu
        w[:, j] = np.linalg.solve(xc.T @ xc + alpha * np.eye(d), xc.T @ (t - t.mean()))
        b[j] = t.mean() - mu @ w[:, j]
    return w, b


def finetune_top_layers(
    encoder: HFEncoder,
    cache: HiddenCache,
    rows: np.ndarray,
    quality: np.ndarray,
    *,
    top_k: int = 1,
    lr: float = 1e-4,
    head_lr: float = 1e-3,
    epochs: int = 4,
    contrastive_weight: float = 0.0,
    keep_weight: float = 1.0,
    temperature: float = 0.1,
    batch_size: int = 32,
    val_share: float = 0.15,
    patience: int = 2,
    min_epoch: int = 0,
    seed: int = 0,
    threads: int | None = None,
) -> FinetuneFit:
    """Train the top ``top_k`` layers on the cached states of ``rows`` (module docstring).

    ``quality`` (len(rows), m): each candidate's recorded score for those prompts (NaN: none).
    The kept epoch is the one with the lowest validation ``L_heads`` among epochs ``>= min_epoch``
    (epoch 0: the untouched layers with ridge heads; ``min_epoch=1`` forces some tuning).
    """
    import torch

    rows = np.asarray(rows)
    q = np.asarray(quality, dtype=np.float64)
    if top_k not in cache.states:
        raise ConfigError(f"the cache holds top_k in {sorted(cache.states)}, not {top_k}")
    if q.shape[0] != len(rows) or len(rows) < 10:
        raise ConfigError(f"quality {q.shape} must have one row per training prompt (≥ 10), got {len(rows)} rows")
    if epochs < 1 or lr <= 0 or head_lr <= 0 or not 0 < val_share < 0.5 or patience < 1 or not 0 <= min_epoch <= epochs:
        raise ConfigError("epochs >= 1, lr > 0, head_lr > 0, 0 < val_share < 0.5, patience >= 1, 0 <= min_epoch <= epochs")
    start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    # The backward pass makes subnormal floats (GELU's exp(-x²/2) far from 0), which x86 CPUs handle
    # some 20-100x slower (the unit test's fit: 44 s against 1.5 s); flushed to 0. The flag is per
    # thread and torch's worker threads inherit it only when created after it is set: a caller
    # that fits with several threads sets it first (benchmarks/finetune_cv.py does).
    torch.set_flush_denormal(True)
    try:
        torch.manual_seed(int(seed))
        model = _model(encoder)
        layers = torch.nn.ModuleList(copy.deepcopy(model.encoder.layer[len(model.encoder.layer) - top_k:]))
        layers.float().train()
        states = [cache.states[top_k][i] for i in rows]
        lengths = np.array([len(s) for s in states])
        e0 = cache.frozen[rows]

        rng = np.random.default_rng(seed)
        val = np.zeros(len(rows), dtype=bool)
        val[rng.choice(len(rows), size=max(1, int(round(val_share * len(rows)))), replace=False)] = True
        observed = np.isfinite(q)
        mean = np.array([q[observed[:, j], j].mean() if observed[:, j].any() else 0.0 for j in range(q.shape[1])])
        var = np.array([q[observed[:, j], j].var() if observed[:, j].any() else 1.0 for j in range(q.shape[1])])
        weight = observed / np.maximum(var, 1e-6)[None, :]
        target = np.where(observed, q - mean, 0.0)
        pos, neg = _contrast_sets(q)
        w0, b0 = _ridge_heads(e0[~val], target[~val], observed[~val])

        heads = torch.nn.Parameter(torch.from_numpy(w0))
        bias = torch.nn.Parameter(torch.from_numpy(b0))
        keys = torch.nn.Parameter(torch.randn(q.shape[1], e0.shape[1]) / np.sqrt(e0.shape[1]))
        opt = torch.optim.AdamW([{"params": layers.parameters(), "lr": lr},
                                 {"params": [heads, bias, keys], "lr": head_lr}], weight_decay=0.0)
        t = lambda x, dt=torch.float32: torch.as_tensor(x, dtype=dt)  # noqa: E731

        def losses(idx: np.ndarray) -> tuple[Any, Any]:
            keep, additive = _mask(torch, lengths[idx], int(lengths[idx].max()))
            z = _top(torch, layers, _pad(torch, [states[i] for i in idx]), keep, additive)
            w = t(weight[idx])
            lh = (((z @ heads + bias - t(target[idx])) ** 2) * w).sum() / (w > 0).sum().clamp(min=1)
            total = lh + keep_weight * ((z - t(e0[idx])) ** 2).sum(1).mean()
            if contrastive_weight > 0:
                p, ng = t(pos[idx], torch.bool), t(neg[idx], torch.bool)
                usable = p.any(1) & ng.any(1)
                if bool(usable.any()):
                    s = (z @ torch.nn.functional.normalize(keys, dim=1).T / temperature)[usable]
                    p, ng = p[usable], ng[usable]
                    per = -(s - torch.logaddexp(s, torch.logsumexp(s.masked_fill(~ng, -1e9), 1, keepdim=True)))
                    total = total + contrastive_weight * ((per * p).sum(1) / p.sum(1)).mean()
            return total, lh

        fit_batches = _batches(lengths, np.flatnonzero(~val), batch_size)
        val_batches = _batches(lengths, np.flatnonzero(val), batch_size)

        def val_loss() -> float:
            layers.eval()
            with torch.no_grad():
                total = sum(float(losses(b)[1]) * len(b) for b in val_batches)
            layers.train()
            return total / int(val.sum())

        best = (val_loss(), 0, _numpy_layers(layers))  # epoch 0: the frozen layers with ridge heads
        history = [best[0]]
        for epoch in range(1, epochs + 1):
            for i in rng.permutation(len(fit_batches)):
                opt.zero_grad()
                total, _ = losses(fit_batches[i])
                total.backward()
                opt.step()
            v = val_loss()
            history.append(v)
            if epoch >= min_epoch and (v < best[0] - 1e-7 or best[1] < min_epoch):
                best = (v, epoch, _numpy_layers(layers))
            elif epoch >= min_epoch and epoch - best[1] >= patience:
                break
    finally:
        torch.set_num_threads(previous_threads)
        torch.set_flush_denormal(False)  # torch's default; it has no getter to restore from
    settings = {"top_k": top_k, "lr": lr, "head_lr": head_lr, "epochs": epochs,
                "contrastive_weight": contrastive_weight, "keep_weight": keep_weight, "temperature": temperature,
                "batch_size": batch_size, "val_share": val_share, "patience": patience, "min_epoch": min_epoch,
                "seed": seed,
                "max_tokens": cache.max_tokens}
    return FinetuneFit(top_k, best[2], best[1], history, time.perf_counter() - start, settings)


def _numpy_layers(layers: Any) -> list[dict[str, np.ndarray]]:
    return [{k: v.detach().cpu().numpy().copy() for k, v in layer.state_dict().items()} for layer in layers]


def _tuned_layers(encoder: HFEncoder, fit: FinetuneFit) -> Any:
    import torch

    model = _model(encoder)
    layers = torch.nn.ModuleList(copy.deepcopy(model.encoder.layer[len(model.encoder.layer) - fit.top_k:]))
    for layer, sd in zip(layers, fit.layers):
        layer.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    return layers.float().eval()


def embed_with(encoder: HFEncoder, fit: FinetuneFit, cache: HiddenCache, rows: np.ndarray | None = None,
               *, batch_size: int = 64) -> np.ndarray:
    """Unit embeddings of cached prompts (``rows``; all when None) through the tuned top layers."""
    import torch

    rows = np.arange(len(cache.frozen)) if rows is None else np.asarray(rows)
    if fit.best_epoch == 0:  # never beat the frozen layers: the frozen embedding, exactly
        return cache.frozen[rows].copy()
    layers = _tuned_layers(encoder, fit)
    states = cache.states[fit.top_k]
    lengths = np.array([len(states[i]) for i in rows])
    out = np.empty((len(rows), cache.frozen.shape[1]), dtype=np.float32)
    with torch.inference_mode():
        for b in _batches(lengths, np.arange(len(rows)), batch_size):
            keep, additive = _mask(torch, lengths[b], int(lengths[b].max()))
            out[b] = _top(torch, layers, _pad(torch, [states[rows[i]] for i in b]), keep, additive).numpy()
    return out


def finetuned_embedder(encoder: HFEncoder, fit: FinetuneFit, *,
                       max_tokens: int | None = None) -> Callable[[Sequence[str]], np.ndarray]:
    """``texts -> (n, d)`` unit embeddings: frozen bottom layers, tuned top layers, mean pool, normalise."""
    tokens = int(max_tokens or fit.settings.get("max_tokens") or encoder.max_tokens)

    def embed(texts: Sequence[str]) -> np.ndarray:
        cache = cache_hidden_states(encoder, texts, top_ks=(fit.top_k,), max_tokens=tokens)
        return embed_with(encoder, fit, cache)

    return embed
