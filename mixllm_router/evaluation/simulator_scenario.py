"""The scenario of a :mod:`~mixllm_router.evaluation.simulator` run: latency profiles and arrivals.

How fast each candidate serves (:class:`LatencyProfile`, defaults by name pattern) and when the
queries arrive (a Poisson process plus :class:`Burst` s). Pure data and sampling: no router.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .._exceptions import ConfigError

__all__ = ["DEFAULT_PROFILES", "FALLBACK_PROFILE", "Burst", "LatencyProfile", "default_profile", "poisson_arrivals"]


class LatencyProfile(BaseModel):
    """How fast a candidate serves: ``d(n) = ttft_s + n / tokens_per_s``, times lognormal noise."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    ttft_s: float = Field(ge=0, description="Time to first token, seconds.")
    tokens_per_s: float = Field(gt=0, description="Output tokens generated per second after the first.")
    noise_sigma: float = Field(default=0.3, ge=0, le=3, description="σ of the lognormal factor (0: exact).")

    def mean_service_s(self, output_tokens: float) -> float:
        """Noiseless service time of a request of ``output_tokens`` tokens."""
        return self.ttft_s + max(float(output_tokens), 0.0) / self.tokens_per_s


#: Defaults by case-insensitive substring of the candidate's name, first match wins (so
#: "8x7b" comes before "7b" and "claude-instant" before "claude"). Typical hosted-API figures of
#: 2024 for one request: larger models start later and generate more slowly.
DEFAULT_PROFILES: tuple[tuple[str, LatencyProfile], ...] = (
    ("gpt-4", LatencyProfile(ttft_s=0.8, tokens_per_s=25.0)),
    ("gpt-3.5", LatencyProfile(ttft_s=0.4, tokens_per_s=70.0)),
    ("claude-instant", LatencyProfile(ttft_s=0.5, tokens_per_s=80.0)),
    ("claude", LatencyProfile(ttft_s=1.0, tokens_per_s=35.0)),
    ("70b", LatencyProfile(ttft_s=0.8, tokens_per_s=30.0)),
    ("34b", LatencyProfile(ttft_s=0.6, tokens_per_s=40.0)),
    ("8x7b", LatencyProfile(ttft_s=0.4, tokens_per_s=60.0)),
    ("13b", LatencyProfile(ttft_s=0.4, tokens_per_s=60.0)),
    ("7b", LatencyProfile(ttft_s=0.3, tokens_per_s=80.0)),
)
#: For names that match no pattern.
FALLBACK_PROFILE = LatencyProfile(ttft_s=0.5, tokens_per_s=50.0)


def default_profile(name: str) -> LatencyProfile:
    """The :data:`DEFAULT_PROFILES` entry whose pattern occurs in ``name`` (else the fallback)."""
    low = name.lower()
    for pattern, profile in DEFAULT_PROFILES:
        if pattern in low:
            return profile
    return FALLBACK_PROFILE


class Burst(BaseModel):
    """Extra Poisson arrivals at ``rate_per_s`` during ``[start_s, start_s + duration_s)``."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    start_s: float = Field(ge=0)
    duration_s: float = Field(gt=0)
    rate_per_s: float = Field(gt=0, description="Added to the base rate inside the window.")

    @classmethod
    def parse(cls, text: str) -> Burst:
        """``"start:duration:rate"`` in seconds and queries per second, e.g. ``"60:20:15"``."""
        try:
            start, duration, rate = (float(p) for p in text.split(":"))
            return cls(start_s=start, duration_s=duration, rate_per_s=rate)
        except ValueError as exc:  # wrong arity, not numbers, or pydantic's ValidationError
            raise ConfigError(f"a burst is 'start:duration:rate' with start >= 0, duration > 0, rate > 0; got {text!r}") from exc


def poisson_arrivals(
    n: int, rate_per_s: float, rng: np.random.Generator, bursts: Sequence[Burst] = ()
) -> np.ndarray:
    """The first ``n`` arrival times (sorted, seconds from 0) of a Poisson process plus bursts."""
    if not (isinstance(rate_per_s, (int, float)) and math.isfinite(rate_per_s) and rate_per_s > 0):
        raise ConfigError(f"rate_per_s must be a finite number > 0, got {rate_per_s!r}")
    times = [np.cumsum(rng.exponential(1.0 / rate_per_s, size=n))]
    for b in bursts:
        k = int(rng.poisson(b.rate_per_s * b.duration_s))
        times.append(b.start_s + b.duration_s * rng.random(k))
    return np.sort(np.concatenate(times), kind="stable")[:n]
