"""The online feedback score ``s_l(e)`` and Thompson sampling of the ridge posterior.

:class:`FeedbackScoreNet` is the small network trained on feedback residuals (``score − q̂``) whose
output, weighted by its confidence ``κ``, enters the meta score as ``γ·κ·s``; see the learner's
module docstring (:mod:`mixllm_router.learning.learner`) for the update rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._exceptions import DataError
from .settings import LearningSettings

__all__ = ["FeedbackScoreNet", "thompson_scores"]


def thompson_scores(
    quality: np.ndarray,
    cost: np.ndarray,
    uncertainty: np.ndarray,
    cost_weight: float,
    scale: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Meta scores with the quality drawn from the ridge posterior (Thompson sampling).

    The ridge's posterior over a candidate's weights is ``N(w, σ²A⁻¹)``, so for one query the
    predicted quality ``xᵀw̃`` is distributed ``N(q, σ²·u²)`` with ``u = sqrt(xᵀA⁻¹x)`` the LinUCB
    uncertainty: one normal draw per candidate and query samples it exactly, in O(1) once ``q``
    and ``u`` are known. ``S̃ = q + σ·u·ξ − λ·c`` with ``ξ ~ N(0, 1)``; route to ``argmax S̃``.

    Why not only the UCB bonus ``α·u``: with bandit feedback the chosen candidate is observed only
    where it already looks best, and a deterministic bonus explores the same candidates in the
    same places every time. Sampling sends a little traffic wherever a candidate *might* be best,
    with a probability that falls as its uncertainty shrinks. ``scale`` is ``σ`` (the noise
    standard deviation of the quality target; 0 gives the greedy choice).
    """
    q = np.asarray(quality, dtype=np.float64)
    noise = rng.standard_normal(q.shape) if scale else 0.0
    return q + scale * np.asarray(uncertainty, dtype=np.float64) * noise - cost_weight * np.asarray(cost)


# ---------------------------------------------------------------------------------- events


class FeedbackScoreNet:
    """``s_l(e) = w_lᵀ tanh(U e + c) + b_l`` per candidate, trained by REINFORCE (module docstring).

    With ``hidden = 0`` the trunk is the identity: ``s_l(e) = w_lᵀ e + b_l``.
    """

    def __init__(self, dim: int, settings: LearningSettings, *, seed: int = 0) -> None:
        self.dim = dim
        self.settings = settings
        rng = np.random.default_rng(seed)
        h = settings.hidden
        self.U = rng.normal(0.0, 1.0 / math.sqrt(dim), size=(h, dim)) if h else np.zeros((0, dim))
        self.c = np.zeros(h)
        self.heads: dict[str, np.ndarray] = {}  # name -> [w (width), b]
        self.stats: dict[str, np.ndarray] = {}  # name -> [n, mean, m2] of residual rewards
        self.baseline = 0.0
        self.n_updates = 0

    @property
    def width(self) -> int:
        return self.settings.hidden or self.dim

    def trunk(self, e: np.ndarray) -> np.ndarray:
        e = np.atleast_2d(np.asarray(e, dtype=np.float64))
        return np.tanh(e @ self.U.T + self.c) if self.settings.hidden else e

    def add(self, name: str) -> None:
        """A new candidate starts neutral (``s = 0``) and unconfident (no observations)."""
        self.heads.setdefault(name, np.zeros(self.width + 1))
        self.stats.setdefault(name, np.zeros(3))

    def remove(self, name: str) -> None:
        self.heads.pop(name, None)
        self.stats.pop(name, None)

    def scores(self, embeddings: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """``s`` of shape (n, len(names)); candidates without a head score 0."""
        h = self.trunk(embeddings)
        out = np.zeros((h.shape[0], len(names)))
        for j, name in enumerate(names):
            head = self.heads.get(name)
            if head is not None:
                out[:, j] = h @ head[:-1] + head[-1]
        return out

    def policy(self, embeddings: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """``π(l|e) = softmax_l s_l(e)``."""
        s = self.scores(embeddings, names)
        s = s - s.max(axis=1, keepdims=True)
        p = np.exp(s)
        return p / p.sum(axis=1, keepdims=True)

    def routing_scores(self, embeddings: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """The term the meta score adds: the centred policy ``π(l|e) − 1/m``, in ``(−1/m, 1 − 1/m)``.

        Why not the logits ``s_l`` themselves: REINFORCE leaves their scale unanchored (a
        candidate whose residuals beat the running baseline sees its logit grow with every event),
        so ``γ·κ·s`` eventually outweighs every quality difference and routing collapses onto one
        candidate (docs/online_learning.md). The probability keeps what the network learned, which
        candidate the feedback favours here and by how much relative to the others, on a bounded
        scale; centring at ``1/m`` makes an untrained network (uniform ``π``) add exactly nothing.
        """
        p = self.policy(embeddings, names)
        return p - 1.0 / p.shape[1]

    def variance(self, name: str) -> float:
        n, _, m2 = self.stats.get(name, np.zeros(3))
        st = self.settings
        return float((st.prior_count * st.prior_variance + m2) / (st.prior_count + n)) if st.prior_count + n > 0 \
            else st.prior_variance

    def confidence(self, names: Sequence[str]) -> np.ndarray:
        """``κ_l = 1/(Var[s_l] + ε)`` per candidate."""
        return np.array([1.0 / (self.variance(n) + self.settings.epsilon) for n in names])

    def step(self, embedding: np.ndarray, names: Sequence[str], chosen: str, residual: float) -> float:
        """One REINFORCE step for feedback on ``chosen``; returns the advantage ``δ``."""
        for name in names:
            self.add(name)
        names = list(names)
        a = names.index(chosen)
        e = np.asarray(embedding, dtype=np.float64).reshape(-1)
        h = self.trunk(e)[0]
        W = np.stack([self.heads[n] for n in names])  # (m, width + 1)
        s = W[:, :-1] @ h + W[:, -1]
        p = np.exp(s - s.max())
        p /= p.sum()
        advantage = residual - self.baseline
        self.baseline += self.settings.baseline_rate * (residual - self.baseline)
        # κ_l relative to the prior's κ0 = 1/(v0 + ε): a candidate with no evidence takes steps of size η
        kappa = self.confidence(names) * (self.settings.prior_variance + self.settings.epsilon)
        onehot = np.zeros(len(names))
        onehot[a] = 1.0
        coef = self.settings.learning_rate * kappa * (onehot - p) * advantage  # (m,)
        if self.settings.hidden:
            dh = (coef @ W[:, :-1]) * (1.0 - h * h)  # back-prop through tanh, with the old heads
            self.U += np.outer(dh, e)
            self.c += dh
        for j, name in enumerate(names):
            self.heads[name][:-1] += coef[j] * h
            self.heads[name][-1] += coef[j]
        # Welford update of the residual variance of the candidate that was observed
        st = self.stats[chosen]
        st[0] += 1
        delta = residual - st[1]
        st[1] += delta / st[0]
        st[2] += delta * (residual - st[1])
        self.n_updates += 1
        return float(advantage)

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        names = list(self.heads)
        meta = {"dim": self.dim, "names": names, "baseline": self.baseline, "n_updates": self.n_updates}
        arrays = {"U": self.U, "c": self.c}
        if names:
            arrays["heads"] = np.stack([self.heads[n] for n in names])
            arrays["stats"] = np.stack([self.stats[n] for n in names])
        return meta, arrays

    @classmethod
    def from_state(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], settings: LearningSettings
                   ) -> FeedbackScoreNet:
        net = cls(int(meta["dim"]), settings)
        net.U = np.array(arrays["U"], dtype=np.float64)
        net.c = np.array(arrays["c"], dtype=np.float64)
        expected = (settings.hidden, net.dim) if settings.hidden else (0, net.dim)
        if net.U.shape != expected:
            raise DataError(f"feedback network trunk has shape {net.U.shape}, settings say hidden={settings.hidden}")
        names = [str(n) for n in meta["names"]]
        if names:
            heads, stats = np.asarray(arrays["heads"], np.float64), np.asarray(arrays["stats"], np.float64)
            if heads.shape != (len(names), net.width + 1) or stats.shape != (len(names), 3):
                raise DataError("feedback network heads do not match the candidates named in the manifest")
            net.heads = {n: heads[i].copy() for i, n in enumerate(names)}
            net.stats = {n: stats[i].copy() for i, n in enumerate(names)}
        net.baseline = float(meta["baseline"])
        net.n_updates = int(meta["n_updates"])
        return net


# ---------------------------------------------------------------------------------- change detection
