"""A query representation learned from recorded outcomes: a residual adapter on a frozen encoder.

The frozen MiniLM embedding mostly tells which task a prompt belongs to (docs/benchmarks.md §2,
§6). RouterDC and RouteLLM's BERT router learn the representation from outcomes instead. This is
the light version that trains on two CPU cores in seconds: the same residual map as the
tag-enhanced encoder (:mod:`.tag_enhanced`), ``e' = normalize(e + φ(eA)B)`` with ``A`` (d × r),
``B`` (r × d), ``B = 0`` at the start, trained on the candidates' recorded quality:

    L = L_heads + β · L_contrast + ρ · L_keep

- ``L_heads`` (multi-task heads): a linear head per candidate, ``ŷ_ij = e'_i · w_j + c_j``,
  predicts every candidate's quality at once; the mean squared error over the recorded entries,
  each candidate's error divided by the variance of its scores so that every candidate counts
  alike. The heads are thrown away after training: the router's own ridge (with its uncertainty)
  and kNN sit on ``e'``, so online learning, uncertainty and ``add_candidate`` work unchanged,
  and a candidate added later uses the learned space as it is.
- ``L_contrast`` (RouterDC's query–LLM term): a learned unit vector ``k_j`` per candidate;
  ``s_ij = e'_i · k_j / τ``. For each query the positives ``P_i`` are the candidates scoring
  within a quarter of the query's range of its best, the negatives ``N_i`` those within a quarter
  of its worst (0/1 scores: right versus wrong); queries where all candidates score alike carry
  no term. ``L_contrast = mean_i mean_{p ∈ P_i} −log(exp s_ip / (exp s_ip + Σ_{n ∈ N_i} exp s_in))``.
- ``L_keep = mean_i |e'_i − e_i|²``: stay near the original embedding, so that what the frozen
  embedding knows (the task) is not forgotten.

Full-batch Adam, seeded. Early stopping: a seeded share ``val_share`` of the training queries is
held out and training stops ``patience`` epochs after its ``L_heads`` last improved, keeping the
best epoch's weights. Every other setting (β, ρ, rank) is chosen by cross-validation on the
training data (:mod:`mixllm_router.evaluation.representation`). Torch runs on a GPU when one is
present (``device="auto"``), never needing one.

The result is a :class:`~.tag_enhanced.TagEnhancedEncoder` (``info["trained_on"] = "outcomes"``):
the same map, so it is saved in the router checkpoint as two safetensors arrays, restored by the
same code, and its fingerprint (a hash of the weights) keys the embedding cache.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._exceptions import ConfigError
from .base import QueryEncoder
from .tag_enhanced import Activation, TagEnhancedEncoder, _Adam

__all__ = ["AdapterFit", "fit_outcome_adapter", "outcome_adapter_encoder"]


@dataclass
class AdapterFit:
    """Learned ``A``, ``B`` and the record of training (validation ``L_heads`` per epoch)."""

    a: np.ndarray
    b: np.ndarray
    best_epoch: int
    val_history: list[float] = field(default_factory=list)
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)


def _contrast_sets(quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative masks (n, m) per query: within a quarter of its range of the best / worst."""
    q = np.where(np.isfinite(quality), quality, np.nan)
    top, low = np.nanmax(q, axis=1, keepdims=True), np.nanmin(q, axis=1, keepdims=True)
    span = top - low
    ok = np.isfinite(q) & (span > 1e-6)
    return ok & (q >= top - 0.25 * span), ok & (q <= low + 0.25 * span)


def fit_outcome_adapter(
    embeddings: np.ndarray,
    quality: np.ndarray,
    *,
    rank: int = 32,
    activation: Activation = "tanh",
    contrastive_weight: float = 0.5,
    keep_weight: float = 1.0,
    temperature: float = 0.1,
    epochs: int = 400,
    lr: float = 5e-3,
    val_share: float = 0.15,
    patience: int = 40,
    seed: int = 0,
    device: str = "auto",
    threads: int | None = None,
) -> AdapterFit:
    """Minimise ``L`` (module docstring) over ``A``, ``B`` (and the heads and ``k_j``); returns ``A``, ``B``.

    ``embeddings`` (n, d): frozen unit embeddings of the training queries; ``quality`` (n, m): each
    candidate's recorded score (NaN where it did not answer).
    """
    import torch

    e_np = np.asarray(embeddings, dtype=np.float32)
    q_np = np.asarray(quality, dtype=np.float64)
    if e_np.ndim != 2 or q_np.ndim != 2 or q_np.shape[0] != e_np.shape[0]:
        raise ConfigError(f"embeddings {e_np.shape} and quality {q_np.shape} do not line up")
    if rank < 1 or epochs < 0 or lr <= 0 or temperature <= 0 or keep_weight < 0 or contrastive_weight < 0:
        raise ConfigError("rank >= 1, epochs >= 0, lr > 0, temperature > 0, keep_weight >= 0, contrastive_weight >= 0")
    if not 0 < val_share < 0.5 or patience < 1:
        raise ConfigError("val_share must be in (0, 0.5) and patience >= 1")
    if e_np.shape[0] < 10:
        raise ConfigError("the outcome adapter needs at least 10 training queries")
    start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    if threads is not None:  # restored below: the thread count is process-wide (the encoder uses it too)
        torch.set_num_threads(int(threads))
    try:
        return _fit(torch, e_np, q_np, rank=rank, activation=activation, contrastive_weight=contrastive_weight,
                    keep_weight=keep_weight, temperature=temperature, epochs=epochs, lr=lr, val_share=val_share,
                    patience=patience, seed=seed, device=device, start=start)
    finally:
        torch.set_num_threads(previous_threads)


def _fit(torch: Any, e_np: np.ndarray, q_np: np.ndarray, *, rank: int, activation: Activation,
         contrastive_weight: float, keep_weight: float, temperature: float, epochs: int, lr: float,
         val_share: float, patience: int, seed: int, device: str, start: float) -> AdapterFit:
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    n, d = e_np.shape
    m = q_np.shape[1]
    rng = np.random.default_rng(seed)
    val = np.zeros(n, dtype=bool)
    val[rng.choice(n, size=max(1, int(round(val_share * n))), replace=False)] = True

    observed = np.isfinite(q_np)
    mean = np.nanmean(np.where(observed, q_np, np.nan), axis=0)
    var = np.nanvar(np.where(observed, q_np, np.nan), axis=0)
    scale = 1.0 / np.maximum(np.where(np.isfinite(var), var, 1.0), 1e-6)
    target = np.where(observed, q_np - mean, 0.0)
    pos, neg = _contrast_sets(q_np)

    t = lambda x, dtype=torch.float32: torch.as_tensor(x, dtype=dtype, device=dev)  # noqa: E731
    e, y, w_obs = t(e_np), t(target), t(observed.astype(np.float32) * scale[None, :])
    pos_t, neg_t = t(pos, torch.bool), t(neg, torch.bool)
    fit_rows, val_rows = t(np.flatnonzero(~val), torch.long), t(np.flatnonzero(val), torch.long)
    gen = torch.Generator().manual_seed(int(seed))
    a = torch.nn.Parameter((torch.randn(d, rank, generator=gen) / math.sqrt(d)).to(dev))
    b = torch.nn.Parameter(torch.zeros(rank, d, device=dev))
    heads = torch.nn.Parameter(torch.zeros(d, m, device=dev))
    bias = torch.nn.Parameter(torch.zeros(m, device=dev))
    keys = torch.nn.Parameter((torch.randn(m, d, generator=gen) / math.sqrt(d)).to(dev))
    opt = _Adam([a, b, heads, bias, keys], lr=lr)

    def represent(x: Any) -> Any:
        h = x @ a
        if activation == "tanh":
            h = torch.tanh(h)
        return torch.nn.functional.normalize(x + h @ b, dim=1, eps=1e-12)

    def heads_loss(z: Any, rows: Any) -> Any:
        err = (z @ heads + bias - y[rows]) ** 2 * w_obs[rows]
        return err.sum() / (w_obs[rows] > 0).sum().clamp(min=1)

    def contrast_loss(z: Any, rows: Any) -> Any:
        s = z @ torch.nn.functional.normalize(keys, dim=1).T / temperature  # (n, m)
        p, ng = pos_t[rows], neg_t[rows]
        usable = p.any(1) & ng.any(1)
        if not bool(usable.any()):
            return s.sum() * 0.0
        s, p, ng = s[usable], p[usable], ng[usable]
        neg_lse = torch.logsumexp(s.masked_fill(~ng, -1e9), dim=1, keepdim=True)  # log Σ_n exp s_n
        per = -(s - torch.logaddexp(s, neg_lse))  # −log(exp s_p / (exp s_p + Σ_n exp s_n))
        return ((per * p).sum(1) / p.sum(1)).mean()

    def objective(rows: Any) -> tuple[Any, Any]:
        x = e[rows]
        z = represent(x)
        lh = heads_loss(z, rows)
        total = lh + keep_weight * ((z - x) ** 2).sum(1).mean()
        if contrastive_weight > 0:
            total = total + contrastive_weight * contrast_loss(z, rows)
        return total, lh

    best = (float("inf"), 0, a.detach().clone(), b.detach().clone())
    history: list[float] = []
    for epoch in range(1, epochs + 1):
        opt.zero_grad()
        total, _ = objective(fit_rows)
        total.backward()
        opt.step()
        with torch.no_grad():
            _, val_heads = objective(val_rows)
        v = float(val_heads)
        history.append(v)
        if v < best[0] - 1e-7:
            best = (v, epoch, a.detach().clone(), b.detach().clone())
        elif epoch - best[1] >= patience:
            break
    _, best_epoch, a_best, b_best = best
    if best_epoch == 0:  # never improved on B = 0: the adapter is the identity
        b_best = torch.zeros_like(b_best)
    settings = {"rank": rank, "activation": activation, "contrastive_weight": contrastive_weight,
                "keep_weight": keep_weight, "temperature": temperature, "epochs": epochs, "lr": lr,
                "val_share": val_share, "patience": patience, "seed": seed}
    return AdapterFit(a_best.cpu().numpy().copy(), b_best.cpu().numpy().copy(), best_epoch, history,
                      time.perf_counter() - start, settings)


def outcome_adapter_encoder(
    base: QueryEncoder,
    embeddings: np.ndarray,
    quality: np.ndarray,
    *,
    candidates: Sequence[str] | None = None,
    **settings: Any,
) -> TagEnhancedEncoder:
    """Fit the adapter on ``embeddings`` (the base encoder's, of the training queries) and wrap ``base``."""
    fit = fit_outcome_adapter(embeddings, quality, **settings)
    info = {
        "trained_on": "outcomes",
        "n_queries": int(np.asarray(embeddings).shape[0]),
        "candidates": list(candidates) if candidates is not None else None,
        "best_epoch": fit.best_epoch,
        "train_seconds": round(fit.seconds, 3),
        "settings": fit.settings,
    }
    encoder = TagEnhancedEncoder(base, fit.a, fit.b, activation=fit.settings["activation"], info=info)
    encoder.fit_ = fit  # type: ignore[attr-defined]  # for inspection; not saved
    return encoder
