"""The outcome of one :class:`~mixllm_router.evaluation.simulator.Simulator` run, and its table and plot."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..policy.load import LatencySettings

__all__ = ["SimulationReport"]


@dataclass(frozen=True)
class SimulationReport:
    """What happened to each query of one simulated stream (arrays are in arrival order).

    ``expected_wait_s[i, l]`` is the router's estimate ``W_l`` when it decided query ``i``;
    ``load[k, l]`` / ``queued[k, l]`` are candidate ``l``'s in-flight (running + queued) and
    queued requests at ``load_times[k]``.
    """

    candidates: list[str]
    reference: str
    latency: LatencySettings
    cost_weight: float
    query_ids: list[str]
    arrival_s: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    chosen: np.ndarray
    quality: np.ndarray
    cost: np.ndarray
    reference_quality: np.ndarray
    reference_cost: np.ndarray
    expected_wait_s: np.ndarray
    load_times: np.ndarray
    load: np.ndarray
    queued: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def tolerance_s(self) -> float:
        return self.latency.tolerance_s

    @property
    def wait_s(self) -> np.ndarray:
        return self.start_s - self.arrival_s

    @property
    def quality_pct(self) -> float:
        """Mean quality as % of always-reference on the same queries."""
        return 100.0 * float(self.quality.mean()) / float(self.reference_quality.mean())

    @property
    def cost_pct(self) -> float:
        """Total cost as % of always-reference on the same queries."""
        return 100.0 * float(self.cost.sum()) / float(self.reference_cost.sum())

    @property
    def past_tolerance_pct(self) -> float:
        """% of queries that waited longer than τ."""
        return 100.0 * float(np.mean(self.wait_s > self.tolerance_s))

    def candidate_shares(self) -> dict[str, float]:
        """% of queries sent to each candidate."""
        counts = np.bincount(self.chosen, minlength=len(self.candidates))
        return {name: 100.0 * float(c) / len(self.chosen) for name, c in zip(self.candidates, counts)}

    def summary(self) -> dict[str, float]:
        w = self.wait_s
        return {
            "queries": float(len(w)),
            "quality_pct": self.quality_pct,
            "cost_pct": self.cost_pct,
            "mean_wait_s": float(w.mean()),
            "p95_wait_s": float(np.percentile(w, 95)),
            "max_wait_s": float(w.max()),
            "past_tolerance_pct": self.past_tolerance_pct,
            "mean_latency_s": float((self.end_s - self.arrival_s).mean()),
            "duration_s": float(self.end_s.max()),
        }

    def table(self) -> str:
        """A printable summary: the headline figures, then each candidate's share and peak load."""
        s = self.summary()
        lat = self.latency
        lines = [
            f"{int(s['queries'])} queries over {s['duration_s']:.0f} s; λ={self.cost_weight:g}, "
            f"β={lat.weight:g}, ξ={lat.xi:g}, τ={lat.tolerance_s:g} s, hard limit {'on' if lat.hard_limit else 'off'}",
            f"quality {s['quality_pct']:.1f}% and cost {s['cost_pct']:.1f}% of {self.reference}",
            f"wait: mean {s['mean_wait_s']:.1f} s, p95 {s['p95_wait_s']:.1f} s, max {s['max_wait_s']:.1f} s; "
            f"{s['past_tolerance_pct']:.1f}% waited longer than τ",
            f"{'candidate':<36} {'share %':>8} {'peak load':>9} {'mean wait s':>11}",
        ]
        shares = self.candidate_shares()
        w = self.wait_s
        for j, name in enumerate(self.candidates):
            mine = self.chosen == j
            peak = int(self.load[:, j].max()) if self.load.size else 0
            mw = f"{w[mine].mean():11.1f}" if mine.any() else f"{'—':>11}"
            lines.append(f"{name:<36} {shares[name]:8.1f} {peak:9d} {mw}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """Summary, settings, candidate shares and the sampled load (JSON-serialisable)."""
        return {
            "summary": self.summary(),
            "reference": self.reference,
            "cost_weight": self.cost_weight,
            "latency": self.latency.model_dump(),
            "candidate_shares_pct": self.candidate_shares(),
            "load_times_s": self.load_times.tolist(),
            "load": {name: self.load[:, j].astype(int).tolist() for j, name in enumerate(self.candidates)},
            "meta": self.meta,
        }

    def plot(self, path: str | Path, *, title: str | None = None) -> Path:
        """PNG: each candidate's load over time (top) and each query's wait against τ (bottom)."""
        from matplotlib.figure import Figure  # object API: renders with Agg, no global backend state

        fig = Figure(figsize=(9, 6.5), dpi=110)
        top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
        for j, name in enumerate(self.candidates):
            if self.load[:, j].any():
                top.step(self.load_times, self.load[:, j], where="post", linewidth=1.2, color=f"C{j % 10}",
                         label=name.split("/")[-1])
        top.set_ylabel("in flight (running + queued)")
        top.grid(alpha=0.3)
        top.legend(fontsize=7, loc="upper left", ncol=2)
        lat = self.latency
        top.set_title(title or f"λ={self.cost_weight:g}, β={lat.weight:g}, ξ={lat.xi:g}, τ={lat.tolerance_s:g} s: "
                      f"{self.past_tolerance_pct:.1f}% waited > τ, quality {self.quality_pct:.1f}%")
        bottom.scatter(self.arrival_s, self.wait_s, s=4, c=[f"C{j % 10}" for j in self.chosen])  # colours as above
        bottom.axhline(lat.tolerance_s, color="red", linewidth=0.8, label="τ")
        bottom.set_xlabel("time, s")
        bottom.set_ylabel("wait, s")
        bottom.grid(alpha=0.3)
        bottom.legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png")
        return out
