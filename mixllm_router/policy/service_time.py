"""How long a candidate takes to serve a request: :class:`ServiceTimeEstimate`.

A candidate's request of ``n`` output tokens is expected to take ``d(n) = TTFT + n · s_per_token``
seconds, both parts adapted online by exponentially weighted means. The load tracker keeps one
estimate per candidate and re-costs every request in flight with the estimate of the moment, so
what the estimate learns moves the expected waits at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .._exceptions import ConfigError, DataError

__all__ = ["ServiceTimeEstimate"]


def _positive_finite(value: float | None, what: str, *, allow_zero: bool = True) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ConfigError(f"{what} must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}")
    return v


class ServiceTimeEstimate:
    """How long a candidate takes to serve a request: ``d(n) = TTFT + n · s_per_token``.

    Both parts are exponentially weighted means (with variances) of what was observed. The prior
    counts as ``prior_strength`` observations: the step size is ``max(alpha, 1/(k + prior_strength
    + 1))`` after ``k`` observations, so the first few observations move the estimate quickly and
    later ones at the steady rate ``alpha`` (a half-life of about ``0.69/alpha`` requests).

    When only the total latency is known (no time to first token), it is split between the two
    parts in the proportion the current estimate predicts for that many tokens, i.e. both parts
    are scaled by ``observed / expected``: a provider that slows down under load slows both.

    Not thread-safe on its own; :class:`LoadTracker` guards it with its lock.
    """

    DEFAULT_TTFT_S = 0.5
    DEFAULT_S_PER_TOKEN = 0.02  # 50 tokens/s
    DEFAULT_OUTPUT_TOKENS = 256.0

    def __init__(
        self,
        *,
        ttft_s: float | None = None,
        s_per_token: float | None = None,
        output_tokens: float | None = None,
        alpha: float = 0.1,
        prior_strength: float = 1.0,
    ) -> None:
        self.ttft_mean = _positive_finite(self.DEFAULT_TTFT_S if ttft_s is None else ttft_s, "ttft_s")
        self.spt_mean = _positive_finite(
            self.DEFAULT_S_PER_TOKEN if s_per_token is None else s_per_token, "s_per_token"
        )
        self.tokens_mean = _positive_finite(
            self.DEFAULT_OUTPUT_TOKENS if output_tokens is None else output_tokens, "output_tokens"
        )
        self.alpha = _positive_finite(alpha, "alpha", allow_zero=False)
        if self.alpha > 1:
            raise ConfigError(f"alpha must be in (0, 1], got {alpha}")
        self.prior_strength = _positive_finite(prior_strength, "prior_strength")
        # Prior spread: a coefficient of variation of 1/2 on each part.
        self.ttft_var = (0.5 * self.ttft_mean) ** 2
        self.spt_var = (0.5 * self.spt_mean) ** 2
        self.n_obs = 0

    # -- reading ----------------------------------------------------------------------------
    def expected(self, output_tokens: float | None = None) -> float:
        """Expected seconds to serve a request of ``output_tokens`` (None: the running mean)."""
        n = self.tokens_mean if output_tokens is None else max(float(output_tokens), 0.0)
        return self.ttft_mean + n * self.spt_mean

    def std(self, output_tokens: float | None = None) -> float:
        """Spread of the service time, treating the two parts as independent."""
        n = self.tokens_mean if output_tokens is None else max(float(output_tokens), 0.0)
        return math.sqrt(self.ttft_var + n * n * self.spt_var)

    # -- learning ---------------------------------------------------------------------------
    def _step(self) -> float:
        return max(self.alpha, 1.0 / (self.n_obs + self.prior_strength + 1.0))

    @staticmethod
    def _ew(mean: float, var: float, x: float, a: float) -> tuple[float, float]:
        diff = x - mean
        incr = a * diff
        return mean + incr, (1.0 - a) * (var + diff * incr)

    def observe(self, latency_s: float, output_tokens: float | None = None, *, ttft_s: float | None = None) -> None:
        """Learn from one finished request: total ``latency_s``, ``output_tokens`` produced.

        ``output_tokens=None`` means unknown: the running mean is assumed for the split.
        ``ttft_s`` (time to first token, when streaming) lets each part be learnt directly.
        Raises :class:`DataError` for a negative or non-finite value.
        """
        lat = _observation(latency_s, "latency_s")
        tokens = self.tokens_mean if output_tokens is None else _observation(output_tokens, "output_tokens")
        a = self._step()
        if ttft_s is not None:
            first = min(_observation(ttft_s, "ttft_s"), lat)
            ttft_obs = first
            spt_obs = (lat - first) / tokens if tokens > 0 else None
        else:
            expected = self.expected(tokens)
            ratio = lat / expected if expected > 0 else 1.0
            ttft_obs = self.ttft_mean * ratio if tokens > 0 else lat
            spt_obs = self.spt_mean * ratio if tokens > 0 else None
        self.ttft_mean, self.ttft_var = self._ew(self.ttft_mean, self.ttft_var, ttft_obs, a)
        if spt_obs is not None:
            self.spt_mean, self.spt_var = self._ew(self.spt_mean, self.spt_var, spt_obs, a)
        if output_tokens is not None:
            self.tokens_mean += a * (tokens - self.tokens_mean)
        self.n_obs += 1

    # -- state ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, float]:
        return {
            "ttft_mean": self.ttft_mean,
            "ttft_var": self.ttft_var,
            "spt_mean": self.spt_mean,
            "spt_var": self.spt_var,
            "tokens_mean": self.tokens_mean,
            "alpha": self.alpha,
            "prior_strength": self.prior_strength,
            "n_obs": float(self.n_obs),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ServiceTimeEstimate:
        est = cls(
            ttft_s=d["ttft_mean"],
            s_per_token=d["spt_mean"],
            output_tokens=d["tokens_mean"],
            alpha=d["alpha"],
            prior_strength=d["prior_strength"],
        )
        est.ttft_var = _positive_finite(d["ttft_var"], "ttft_var")
        est.spt_var = _positive_finite(d["spt_var"], "spt_var")
        est.n_obs = int(_positive_finite(d["n_obs"], "n_obs"))
        return est

    def copy(self) -> ServiceTimeEstimate:
        return ServiceTimeEstimate.from_dict(self.to_dict())

    def __repr__(self) -> str:
        return (
            f"ServiceTimeEstimate(ttft_s={self.ttft_mean:.3g}, s_per_token={self.spt_mean:.3g}, "
            f"output_tokens={self.tokens_mean:.3g}, n_obs={self.n_obs})"
        )


def _observation(value: float, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise DataError(f"{what} must be a finite number >= 0, got {value!r}")
    return v
