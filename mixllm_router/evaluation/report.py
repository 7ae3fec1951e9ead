"""What ``mixllm eval`` prints and writes: the table and a strict-JSON ``results.json``.

Two kinds of data get two tables:

- with a cost trade-off: per router the AUC of the quality-cost curve, Q@10% / Q@25% (best quality
  within that share of the reference's cost) and C@97.25% (cost share to reach 97.25% of the
  reference's quality), beside the fixed choices' points;
- quality only (:func:`~mixllm_router.policy.tradeoff.is_quality_only`: every candidate costs the same on
  every query, or nothing): a cost sweep has nothing to trade, so per router the mean quality of
  its choice at λ = 0, in % of the reference and in % of the best single candidate on the test
  queries.

Every figure is computed from the fields of :class:`EvalReport`, and ``results.json`` holds them
with ``null`` (never a bare ``NaN``/``Infinity``, which strict JSON parsers reject) where a number
does not exist, each null's reason listed under ``nulls``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..policy.tradeoff import TradeoffCurve

__all__ = ["EvalReport", "MethodResult", "strict_json"]

_NULL_REASONS = {
    "cost_weights": "a fixed choice (single model, random) has no cost weight λ",
    "cost_to_97_25": "never reaches 97.25% of the reference's quality at any λ",
}


@dataclass
class MethodResult:
    """One method's curve (routers) or point (single models, random)."""

    name: str
    kind: str  # "router", "baseline", "single", "oracle"
    curve: TradeoffCurve

    def summary(self) -> dict[str, float]:
        return self.curve.summary()


@dataclass
class EvalReport:
    reference: str
    n_train: int
    n_test: int
    methods: list[MethodResult]
    dropped_test_queries: int = 0
    decisions: list[dict[str, Any]] = field(default_factory=list)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # router, 95% bootstrap
    quality_only: bool = False
    notes: list[str] = field(default_factory=list)  # warnings about the data or the reference
    duplicate_test_queries: int = 0
    encoder: str = ""  # the fingerprint of the encoder behind every figure (backend included when it changes them)

    def get(self, name: str) -> MethodResult:
        for m in self.methods:
            if m.name == name:
                return m
        raise KeyError(name)

    # ------------------------------------------------------------------------ quality only
    def best_single(self) -> MethodResult | None:
        singles = [m for m in self.methods if m.kind == "single" and m.name != "random"]
        return max(singles, key=lambda m: float(m.curve.quality_share[0])) if singles else None

    def quality_summary(self, name: str) -> dict[str, float]:
        """Quality of the λ = 0 choice (the first grid point; a fixed choice's only point), in %.

        ``quality``: of the reference; ``vs_best_single``: of the best single model on the test
        queries (chosen with hindsight, so a router must beat an oracle over single models).
        """
        q = float(self.get(name).curve.quality_share[0])
        best = self.best_single()
        b = float(best.curve.quality_share[0]) if best is not None else float("nan")
        return {"quality": 100 * q, "vs_best_single": 100 * q / b if b > 0 else float("nan")}

    # ------------------------------------------------------------------------ printing
    def interval_line(self, name: str) -> str:
        def fmt(key: str) -> str:
            lo, hi = self.intervals[key]
            text = lambda v: "never" if math.isinf(v) else f"{v:.1f}"  # noqa: E731
            return f"{text(lo)}–{text(hi)}"

        if self.quality_only:
            return (f"  95% bootstrap intervals of {name} (test queries resampled): quality {fmt('quality')}, "
                    f"vs best single {fmt('vs_best_single')}, gain over the best single model "
                    f"{fmt('gain_over_best_single')} points")
        line = (f"  95% bootstrap intervals of {name} (test queries resampled): AUC {fmt('auc')}, "
                f"Q@10% {fmt('quality_at_10')}, Q@25% {fmt('quality_at_25')}, C@97.25% {fmt('cost_to_97_25')}")
        if math.isinf(self.intervals["cost_to_97_25"][1]):
            line += " (more than 2.5% of the resamples never reach 97.25%)"
        return line

    def _header_lines(self) -> list[str]:
        lines = [f"train {self.n_train} queries, test {self.n_test} queries; reference {self.reference} "
                 "(quality and cost in % of it)"]
        if self.encoder:
            lines.append(f"encoder {self.encoder}")
        if self.dropped_test_queries:
            lines.append(f"{self.dropped_test_queries} test queries without every candidate's outcome left out")
        if self.duplicate_test_queries:
            lines.append(
                f"warning: {self.duplicate_test_queries} of {self.n_test} test queries also appear, word for word, "
                "in the training data: their figures measure recall, not routing"
            )
        lines += [f"warning: {note}" for note in self.notes]
        return lines

    def table(self) -> str:
        return self._quality_table() if self.quality_only else self._curve_table()

    def _width(self) -> int:
        return max([40] + [len(m.name) + 1 for m in self.methods])

    def _curve_table(self) -> str:
        """Routers: AUC, quality at ≤10% / ≤25% cost, cost to reach 97.25%. Fixed choices: their point."""
        w = self._width()
        head = f"{'router (swept over λ)':<{w}} {'AUC':>6} {'Q@10%':>6} {'Q@25%':>6} {'C@97.25%':>9}"
        lines = self._header_lines() + [head, "-" * len(head)]
        for m in self.methods:
            if m.kind == "single":
                continue
            s = m.summary()
            c97 = f"{s['cost_to_97_25']:9.1f}" if np.isfinite(s["cost_to_97_25"]) else f"{'never':>9}"
            lines.append(f"{m.name:<{w}} {s['auc']:6.1f} {s['quality_at_10']:6.1f} {s['quality_at_25']:6.1f} {c97}")
        if self.intervals and self.methods:
            lines.append(self.interval_line(self.methods[0].name))
        lines += ["", f"{'fixed choice':<{w}} {'cost %':>6} {'quality %':>9}", "-" * (w + 17)]
        for m in self.methods:
            if m.kind == "single":
                lines.append(f"{m.name:<{w}} {100 * m.curve.cost_share[0]:6.1f} {100 * m.curve.quality_share[0]:9.1f}")
        return "\n".join(lines)

    def _quality_table(self) -> str:
        w = self._width()
        best = self.best_single()
        lines = self._header_lines() + [
            "quality only: every candidate costs the same on every test query (or nothing), so there is no cost "
            "trade-off to sweep; each router routes on predicted quality alone (λ = 0)",
        ]
        if best is not None:
            lines.append(f"best single model on the test queries: {best.name} "
                         f"({100 * float(best.curve.quality_share[0]):.1f}% of the reference)")
        head = f"{'method':<{w}} {'quality %':>9} {'% of best single model':>23}"
        lines += [head, "-" * len(head)]
        for m in self.methods:
            s = self.quality_summary(m.name)
            lines.append(f"{m.name:<{w}} {s['quality']:9.1f} {s['vs_best_single']:23.1f}")
        if self.intervals and self.methods:
            lines.append(self.interval_line(self.methods[0].name))
        return "\n".join(lines)

    # ------------------------------------------------------------------------ results.json
    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "reference": self.reference,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "encoder": self.encoder,
            "dropped_test_queries": self.dropped_test_queries,
            "duplicate_test_queries": self.duplicate_test_queries,
            "quality_only": self.quality_only,
            "notes": list(self.notes),
            "router_intervals_95": {k: list(v) for k, v in self.intervals.items()},
            "methods": [],
        }
        for m in self.methods:
            entry: dict[str, Any] = {
                "name": m.name,
                "kind": m.kind,
                "summary": m.summary(),
                "cost_weights": m.curve.cost_weights.tolist(),
                "cost_share": m.curve.cost_share.tolist(),
                "quality_share": m.curve.quality_share.tolist(),
            }
            if self.quality_only:
                entry["quality_summary"] = self.quality_summary(m.name)
            out["methods"].append(entry)
        return strict_json(out)

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2, allow_nan=False))


def strict_json(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with every non-finite float replaced by ``None``, and ``payload["nulls"]``
    mapping each replaced path (``methods[3].cost_weights``) to why it has no value."""
    nulls: dict[str, str] = {}

    def walk(value: Any, path: str, key: str) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, f"{path}.{k}" if path else k, k) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            items = [walk(v, f"{path}[{i}]", key) for i, v in enumerate(value)]
            # one reason per list, not per element
            for i in range(len(items)):
                if f"{path}[{i}]" in nulls:
                    nulls.setdefault(path, nulls.pop(f"{path}[{i}]"))
                    for j in range(i + 1, len(items)):
                        nulls.pop(f"{path}[{j}]", None)
                    break
            return items
        if isinstance(value, (float, np.floating)):
            if math.isfinite(float(value)):
                return float(value)
            nulls[path] = _NULL_REASONS.get(key, "not a finite number")
            return None
        if isinstance(value, np.integer):
            return int(value)
        return value

    out = walk(payload, "", "")
    out["nulls"] = nulls
    return out
