"""Tag-enhanced query embeddings: a learned projection on a frozen encoder, trained with domains.

MixLLM fine-tunes its BERT encoder so that queries of one tag domain pull together and domains
push apart. We learn a small residual projection on the frozen base embedding instead of touching
the encoder's layers: on two CPU cores it trains in seconds instead of hours, it applies to any
base encoder (MiniLM, a local HF model, HashingEncoder), the embedding cache of the base encoder
keeps working, and it is a few kilobytes in the router checkpoint. (Fine-tuning the last layer
would need the full forward pass of every training prompt at every epoch.)

Map, for a base embedding ``e`` (unit norm, dimension d), with ``A`` (d × r), ``B`` (r × d)::

    e' = normalize(e + φ(e A) B)        φ = identity ("linear") or tanh

``B`` starts at zero, so training starts from ``e' = e``. Objective, over the training queries
with domain weights ``w_ik`` (one-hot for hard domains, the soft mix otherwise; untagged queries
carry only the second term)::

    m_k    = Σ_i w_ik e'_i / Σ_i w_ik            domain means (|m_k| ≤ 1), π_k = share of domain k
    within = Σ_k π_k |m_k|²                      mean cosine of two queries of one domain
    across = Σ_{k≠l} π_k π_l m_k·m_l / Σ_{k≠l} π_k π_l    mean cosine of queries of different domains
    L_dom  = across − within                     pull each domain together, push domains apart
    L_keep = mean_i |e'_i − e_i|²                stay close to the original embedding
    L      = L_dom + ρ · L_keep

(We first tried a prototype cross-entropy ``−log softmax_k(e'·μ_k/τ)``; on a toy set it lowered its
value while *reducing* the within/across cosine gap, so the objective now is that gap itself.)

``loss="supcon"`` replaces ``L_dom`` by the supervised contrastive loss (Khosla et al., 2020) over
mini-batches: ``−mean_i mean_{p: y_p = y_i} log (exp(e'_i·e'_p/τ) / Σ_{a≠i} exp(e'_i·e'_a/τ))``.
Trained with Adam, full batch (centroid) or mini-batches (supcon), seeded, in torch on CPU.

Unseen queries need no tags: the projection applies to any embedding, so a router trained with
:class:`TagEnhancedEncoder` routes new queries with the base encoder plus one small matrix product.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .._exceptions import ConfigError, EncoderError
from .base import QueryEncoder, count_tokens_of
from .domains import Domains, fit_domains, normalize_tags, tag_profiles
from .tagging import CachedTagger, LabelTagger, LLMTagger, OfflineTagger, tagger_fingerprint

__all__ = [
    "TagEnhancedEncoder",
    "ProjectionFit",
    "fit_projection",
    "fit_tag_enhanced_encoder",
    "make_tagger",
    "add_tagging_arguments",
    "encoder_from_args",
]

Activation = Literal["linear", "tanh"]
LossKind = Literal["centroid", "supcon"]


def _project(e: np.ndarray, a: np.ndarray, b: np.ndarray, activation: str) -> np.ndarray:
    h = e @ a
    if activation == "tanh":
        h = np.tanh(h)
    z = e + h @ b
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return (z / np.maximum(norms, 1e-12)).astype(np.float32)


class TagEnhancedEncoder:
    """A base :class:`QueryEncoder` followed by the learned projection ``e' = normalize(e + φ(eA)B)``.

    Follows the encoder contract (``dim``, ``fingerprint``, ``encode``, ``count_tokens``) and adds
    ``checkpoint_state()`` so :meth:`MixLLMRouter.save` stores the projection and
    :meth:`MixLLMRouter.load` rebuilds it (see :mod:`.restore`). ``info`` is JSON metadata
    (tagger, domains, training settings) kept for the record.
    """

    kind = "tag_enhanced"

    def __init__(
        self,
        base: QueryEncoder,
        a: np.ndarray,
        b: np.ndarray,
        *,
        activation: Activation = "linear",
        info: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(base, QueryEncoder):
            raise EncoderError(f"TagEnhancedEncoder needs a QueryEncoder base, got {type(base).__name__}")
        a = np.ascontiguousarray(a, dtype=np.float32)
        b = np.ascontiguousarray(b, dtype=np.float32)
        d = base.dim
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != d or b.shape != (a.shape[1], d):
            raise EncoderError(f"projection shapes A {a.shape}, B {b.shape} do not fit dimension {d}")
        if activation not in ("linear", "tanh"):
            raise ConfigError(f"activation must be 'linear' or 'tanh', not {activation!r}")
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            raise EncoderError("projection weights contain NaN or infinity")
        self.base = base
        self.a = a
        self.b = b
        self.activation: Activation = activation
        self.info = dict(info or {})
        h = hashlib.sha256(activation.encode() + a.tobytes() + b.tobytes()).hexdigest()[:16]
        self._fingerprint = f"tag-enhanced:{base.fingerprint}:{h}"

    def __repr__(self) -> str:
        return f"TagEnhancedEncoder({self.base!r}, rank={self.rank}, activation={self.activation!r})"

    @property
    def dim(self) -> int:
        return self.base.dim

    @property
    def rank(self) -> int:
        return int(self.a.shape[1])

    @property
    def fingerprint(self) -> str:
        """``tag-enhanced:<base fingerprint>:<sha256 of the projection>``."""
        return self._fingerprint

    def count_tokens(self, text: str) -> int:
        return self.base.count_tokens(text)

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        return count_tokens_of(self.base, texts)

    def project(self, embeddings: np.ndarray) -> np.ndarray:
        """Apply the projection to base embeddings (n, d) → (n, d), unit rows."""
        e = np.asarray(embeddings, dtype=np.float32)
        if e.ndim != 2 or e.shape[1] != self.dim:
            raise EncoderError(f"expected base embeddings of shape (n, {self.dim}), got {e.shape}")
        return _project(e, self.a, self.b, self.activation)

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        return self.project(self.base.encode(texts, show_progress=show_progress))

    def checkpoint_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(meta, arrays)`` for the router checkpoint: JSON metadata and the two weight matrices."""
        meta = {
            "kind": self.kind,
            "version": 1,
            "activation": self.activation,
            "base_fingerprint": self.base.fingerprint,
            "base_spec": _base_spec(self.base),
            "fingerprint": self.fingerprint,
            "info": self.info,
        }
        return meta, {"a": self.a.copy(), "b": self.b.copy()}


def _base_spec(encoder: Any) -> dict[str, Any] | None:
    """How to rebuild a torch-free base encoder when the router config does not describe it."""
    from .cache import CachedEncoder
    from .hashing import HashingEncoder

    inner = encoder.encoder if isinstance(encoder, CachedEncoder) else encoder
    if isinstance(inner, HashingEncoder):
        return {"kind": "hashing", "dim": inner.dim, "ngram_range": list(inner.ngram_range),
                "seed": inner.seed, "projection": inner.projection}
    return None


# -------------------------------------------------------------------------------- training
@dataclass
class ProjectionFit:
    """Learned weights and the objective per epoch (``history[0]`` is the objective at ``B = 0``)."""

    a: np.ndarray
    b: np.ndarray
    history: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _objective(torch: Any, z: Any, e: Any, w: Any, tagged: Any, labels: Any, *, loss: str, temperature: float,
               keep_weight: float) -> Any:
    keep = ((z - e) ** 2).sum(1).mean()
    if not bool(tagged.any()):
        return keep_weight * keep
    zt, wt = z[tagged], w[tagged]
    if loss == "centroid":
        mass = wt.sum(0)  # (K,) queries per domain
        m = (wt.T @ zt) / mass.clamp(min=1e-12)[:, None]  # domain means, |m_k| <= 1
        pi = mass / mass.sum()
        gram = m @ m.T
        within = (pi * torch.diagonal(gram)).sum()
        pair = pi[:, None] * pi[None, :] * (1 - torch.eye(len(pi)))
        across = (pair * gram).sum() / pair.sum().clamp(min=1e-12)
        dom = across - within
    else:  # supervised contrastive on hard labels
        y = labels[tagged]
        sim = zt @ zt.T / temperature
        n = zt.shape[0]
        eye = torch.eye(n, dtype=torch.bool)
        sim = sim.masked_fill(eye, -1e9)
        logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
        pos = (y[:, None] == y[None, :]) & ~eye
        counts = pos.sum(1)
        has = counts > 0
        if not bool(has.any()):
            return keep_weight * keep
        dom = -((logp * pos).sum(1)[has] / counts[has]).mean()
    return dom + keep_weight * keep


def _import_torch() -> Any:
    """torch, or an :class:`EncoderError` naming the install: fitting the projection needs it, routing does not."""
    try:
        import torch
    except ImportError as exc:
        raise EncoderError(
            "fitting a tag-enhanced projection needs torch (pip install 'mixllm-router[encoder]', torch first "
            "and pinned); routing with a saved one does not (pip install 'mixllm-router[onnx]' is enough)"
        ) from exc
    return torch


class _Adam:
    """Plain Adam (Kingma & Ba, 2015). torch.optim.Adam would import torch._dynamo (seconds) on first use."""

    def __init__(self, params: list[Any], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        import torch

        self.params, self.lr, self.betas, self.eps, self.t = params, lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        import torch

        self.t += 1
        b1, b2 = self.betas
        with torch.no_grad():
            for p, m, v in zip(self.params, self.m, self.v):
                if p.grad is None:
                    continue
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                denom = (v / (1 - b2**self.t)).sqrt_().add_(self.eps)
                p.addcdiv_(m, denom, value=-self.lr / (1 - b1**self.t))


def fit_projection(
    embeddings: np.ndarray,
    weights: np.ndarray,
    *,
    rank: int = 64,
    activation: Activation = "linear",
    loss: LossKind = "centroid",
    temperature: float = 0.1,
    keep_weight: float = 1.0,
    epochs: int = 200,
    lr: float = 1e-2,
    batch_size: int = 512,
    seed: int = 0,
    show_progress: bool = False,
) -> ProjectionFit:
    """Minimise ``L = L_dom + ρ·L_keep`` (module docstring) over ``A``, ``B``; returns the weights.

    ``embeddings``: base embeddings (n, d); ``weights``: domain weights (n, K), rows summing to 1 for
    tagged queries and all-zero rows for untagged ones. ``batch_size`` applies to ``supcon`` (the
    centroid loss is full batch: one step per epoch).
    """
    torch = _import_torch()

    e_np = np.asarray(embeddings, dtype=np.float32)
    w_np = np.asarray(weights, dtype=np.float32)
    if e_np.ndim != 2 or w_np.ndim != 2 or w_np.shape[0] != e_np.shape[0]:
        raise ConfigError(f"embeddings {e_np.shape} and domain weights {w_np.shape} do not line up")
    if rank < 1 or epochs < 0 or lr <= 0 or temperature <= 0 or keep_weight < 0 or batch_size < 2:
        raise ConfigError("rank >= 1, epochs >= 0, lr > 0, temperature > 0, keep_weight >= 0, batch_size >= 2")
    if loss not in ("centroid", "supcon"):
        raise ConfigError(f"loss must be 'centroid' or 'supcon', not {loss!r}")
    if activation not in ("linear", "tanh"):
        raise ConfigError(f"activation must be 'linear' or 'tanh', not {activation!r}")
    start = time.perf_counter()
    d = e_np.shape[1]
    gen = torch.Generator().manual_seed(int(seed))
    a = torch.nn.Parameter(torch.randn(d, rank, generator=gen) / math.sqrt(d))
    b = torch.nn.Parameter(torch.zeros(rank, d))
    e = torch.from_numpy(e_np)
    w = torch.from_numpy(w_np)
    tagged = w.sum(1) > 0
    labels = torch.where(tagged, w.argmax(1), torch.full((len(w),), -1))
    opt = _Adam([a, b], lr=lr)

    def forward(idx: Any = None) -> Any:
        x = e if idx is None else e[idx]
        h = x @ a
        if activation == "tanh":
            h = torch.tanh(h)
        return torch.nn.functional.normalize(x + h @ b, dim=1, eps=1e-12)

    def full_objective() -> float:
        with torch.no_grad():
            if loss == "centroid" or len(e) <= batch_size:
                return float(_objective(torch, forward(), e, w, tagged, labels, loss=loss,
                                        temperature=temperature, keep_weight=keep_weight))
            total = 0.0
            order = torch.arange(len(e))
            for s in range(0, len(e), batch_size):
                idx = order[s : s + batch_size]
                total += float(_objective(torch, forward(idx), e[idx], w[idx], tagged[idx], labels[idx], loss=loss,
                                          temperature=temperature, keep_weight=keep_weight)) * len(idx)
            return total / len(e)

    history = [full_objective()]
    steps: Any = range(epochs)
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        steps = bar = tqdm(steps, desc="tag-enhanced fine-tuning", unit="epoch")
    for _ in steps:
        if loss == "centroid":
            opt.zero_grad()
            obj = _objective(torch, forward(), e, w, tagged, labels, loss=loss, temperature=temperature,
                             keep_weight=keep_weight)
            obj.backward()
            opt.step()
        else:
            order = torch.randperm(len(e), generator=gen)
            for s in range(0, len(e), batch_size):
                idx = order[s : s + batch_size]
                opt.zero_grad()
                obj = _objective(torch, forward(idx), e[idx], w[idx], tagged[idx], labels[idx], loss=loss,
                                 temperature=temperature, keep_weight=keep_weight)
                obj.backward()
                opt.step()
        history.append(full_objective())
        if bar is not None:
            bar.set_postfix(objective=f"{history[-1]:.4f}")
    return ProjectionFit(
        a.detach().numpy().copy(), b.detach().numpy().copy(), history, time.perf_counter() - start
    )


def fit_tag_enhanced_encoder(
    base_encoder: QueryEncoder,
    queries: Sequence[str],
    *,
    tagger: Any = None,
    n_domains: int | None = None,
    k_range: tuple[int, int] = (2, 20),
    soft: bool = False,
    soft_temperature: float = 0.05,
    rank: int = 64,
    activation: Activation = "linear",
    loss: LossKind = "centroid",
    temperature: float = 0.1,
    keep_weight: float = 1.0,
    epochs: int = 200,
    lr: float = 1e-2,
    seed: int = 0,
    tag_cache_dir: str | None = None,
    cache_tags: bool = True,
    embeddings: np.ndarray | None = None,
    show_progress: bool = False,
) -> TagEnhancedEncoder:
    """Tag ``queries``, cluster the tags into domains, learn the projection; see the module docstring.

    ``tagger``: any object with ``tag(queries)``; default :class:`OfflineTagger` (no LLM). Tags are
    cached on disk (``tag_cache_dir``, default ``<cache root>/tags``) unless ``cache_tags=False``.
    ``n_domains`` fixes K (default: best silhouette in ``k_range``); ``soft`` trains on the soft
    domain mix instead of hard domains. ``embeddings``: the base embeddings of ``queries`` if
    already computed. Returns a :class:`TagEnhancedEncoder` whose ``info`` records the domains.
    """
    texts = list(queries)
    if isinstance(queries, str) or not texts:
        raise ConfigError("fit_tag_enhanced_encoder needs a non-empty list of training queries")
    if tagger is None:
        tagger = OfflineTagger()
    t0 = time.perf_counter()
    if cache_tags:
        tags = CachedTagger(tagger, tag_cache_dir).tag(texts, show_progress=show_progress)
    else:
        if callable(getattr(tagger, "fit", None)) and not getattr(tagger, "is_fitted", True):
            tagger.fit(texts)
        tags = [list(t) for t in tagger.tag(texts)]
    if len(tags) != len(texts):
        raise EncoderError(f"the tagger returned {len(tags)} tag lists for {len(texts)} queries")
    tag_seconds = time.perf_counter() - t0
    domains = fit_domains(tags, base_encoder, n_domains=n_domains, k_range=k_range, seed=seed)
    if soft:
        profiles, _ = tag_profiles(normalize_tags(tags), base_encoder)
        weights = domains.soft(profiles, soft_temperature)
    else:
        weights = _one_hot(domains.labels, domains.n_domains)
    if embeddings is None:
        embeddings = base_encoder.encode(texts, show_progress=show_progress)
    e = np.asarray(embeddings, dtype=np.float32)
    if e.shape != (len(texts), base_encoder.dim):
        raise ConfigError(f"embeddings have shape {e.shape}, expected {(len(texts), base_encoder.dim)}")
    fit = fit_projection(
        e, weights, rank=rank, activation=activation, loss=loss, temperature=temperature,
        keep_weight=keep_weight, epochs=epochs, lr=lr, seed=seed, show_progress=show_progress,
    )
    info = {
        "tagger": tagger_fingerprint(tagger),
        "n_queries": len(texts),
        "tag_seconds": round(tag_seconds, 3),
        "train_seconds": round(fit.seconds, 3),
        "objective_start": fit.history[0],
        "objective_end": fit.history[-1],
        "domains": domains.summary(),
        "settings": {
            "rank": rank, "activation": activation, "loss": loss, "temperature": temperature,
            "keep_weight": keep_weight, "epochs": epochs, "lr": lr, "seed": seed, "soft": soft,
            "n_domains": n_domains,
        },
    }
    encoder = TagEnhancedEncoder(base_encoder, fit.a, fit.b, activation=activation, info=info)
    encoder.domains_ = domains  # type: ignore[attr-defined]  # for inspection; not saved
    encoder.history_ = fit.history  # type: ignore[attr-defined]
    return encoder


def _one_hot(labels: np.ndarray, k: int) -> np.ndarray:
    w = np.zeros((len(labels), k), dtype=np.float32)
    ok = labels >= 0
    w[np.flatnonzero(ok), labels[ok]] = 1.0
    return w


# -------------------------------------------------------------------------------- CLI helpers
def make_tagger(spec: str, *, data: Any = None, api_key: str | None = None, timeout: float = 60.0) -> Any:
    """A tagger from a CLI spec: ``offline``, ``task-labels`` or ``openai:<model>[@<base_url>]``.

    ``task-labels`` needs ``data`` (a :class:`~mixllm_router.RoutingDataset` with a task column).
    ``openai:`` builds an :class:`~mixllm_router.clients.OpenAIClient` (any OpenAI-compatible
    server with ``@<base_url>``; the key from ``api_key`` or ``$OPENAI_API_KEY``).
    """
    if spec == "offline":
        return OfflineTagger()
    if spec == "task-labels":
        if data is None:
            raise ConfigError("--tagger task-labels needs the training dataset (with a task column)")
        return LabelTagger.from_dataset(data)
    if spec.startswith("openai:"):
        rest = spec[len("openai:"):]
        model, _, base_url = rest.partition("@")
        if not model:
            raise ConfigError("--tagger openai:<model>[@<base_url>] needs a model name")
        from ..clients.openai import OpenAIClient

        client = OpenAIClient(model, base_url=base_url or None, api_key=api_key, timeout=timeout, supports_tools=False)
        return LLMTagger(client, timeout=timeout)
    raise ConfigError(f"unknown tagger {spec!r}: use offline, task-labels or openai:<model>[@<base_url>]")


def add_tagging_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--embeddings``, ``--tagger``, ``--n-domains``, ``--tag-epochs``, ``--tag-keep-weight``."""
    group = parser.add_argument_group("tag-enhanced embeddings")
    group.add_argument("--embeddings", choices=("plain", "tag-enhanced"), default="plain",
                       help="plain base-encoder embeddings, or tag-enhanced ones learned on the training queries")
    group.add_argument("--tagger", default="offline", metavar="SPEC",
                       help="offline (TF-IDF keyphrases, no LLM), task-labels (the data's task column), or "
                            "openai:<model>[@<base_url>] (any OpenAI-compatible chat server)")
    group.add_argument("--n-domains", type=int, default=None, metavar="K",
                       help="number of tag domains (default: best silhouette in 2..20)")
    group.add_argument("--tag-epochs", type=int, default=200, help="training epochs of the projection")
    group.add_argument("--tag-keep-weight", type=float, default=1.0,
                       help="rho: weight of the stay-close-to-the-original term")
    return parser


def encoder_from_args(args: argparse.Namespace, base_encoder: QueryEncoder, train: Any, *,
                      show_progress: bool = False) -> QueryEncoder:
    """The encoder the parsed ``args`` ask for: ``base_encoder`` itself, or a tag-enhanced one
    fitted on ``train`` (a :class:`~mixllm_router.RoutingDataset` or a list of query texts)."""
    if getattr(args, "embeddings", "plain") != "tag-enhanced":
        return base_encoder
    queries = list(train.queries) if hasattr(train, "queries") else list(train)
    data = train if hasattr(train, "tasks") else None
    tagger = make_tagger(getattr(args, "tagger", "offline"), data=data)
    return fit_tag_enhanced_encoder(
        base_encoder, queries, tagger=tagger, n_domains=getattr(args, "n_domains", None),
        epochs=getattr(args, "tag_epochs", 200), keep_weight=getattr(args, "tag_keep_weight", 1.0),
        show_progress=show_progress,
    )


def domains_of(encoder: TagEnhancedEncoder) -> Domains | None:
    """The :class:`Domains` found while fitting ``encoder`` (not kept across save/load)."""
    return getattr(encoder, "domains_", None)
