"""What the online-learning replay (:mod:`mixllm_router.evaluation.online`) found: traces, tables, plots.

Kept apart from the simulation so the results can be read, printed and plotted without the
streaming machinery; the simulation fills these dataclasses and the CLI prints and writes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..policy.tradeoff import TradeoffCurve

__all__ = ["HoldoutResult", "OnlineReport", "ShareResult", "StreamTrace", "plot_online"]


@dataclass
class StreamTrace:
    """What one router chose along the stream, and what that choice scored and cost."""

    chosen: np.ndarray  # candidate index per event
    quality: np.ndarray
    cost: np.ndarray


@dataclass
class ShareResult:
    offline_share: float
    n_offline: int
    n_stream_train: int
    n_test: int
    cost_weight: float
    names: list[str]
    online: StreamTrace
    frozen: StreamTrace
    ref_quality: np.ndarray  # reference model's recorded quality per stream event
    ref_cost: np.ndarray
    auc_events: list[int] = field(default_factory=list)
    auc_online: list[float] = field(default_factory=list)
    auc_frozen: float = float("nan")
    frozen_curve: TradeoffCurve | None = None  # the frozen router on the test queries, swept over λ
    frozen_choices: np.ndarray | None = None  # (len(λ grid), n_test): the frozen router's picks per λ
    test_quality: np.ndarray | None = None  # (n_test, m) recorded outcomes, for the bootstrap
    test_cost: np.ndarray | None = None
    reference_index: int = 0
    auc_full: float = float("nan")  # full-information ceiling: test AUC of the batch refit on all training queries
    full_choices: np.ndarray | None = None  # its picks on the test queries at λ
    feedback_seconds: float = 0.0
    route_seconds: float = 0.0
    changes_detected: int = 0  # alarms of the online router's change detector (learning.change_detection)

    def test_slice(self) -> slice:
        return slice(self.n_stream_train, self.n_stream_train + self.n_test)

    def shares(self, trace: StreamTrace, part: slice | None = None) -> tuple[float, float]:
        """(quality %, cost %) of the reference over ``part`` of the stream (default: the test part)."""
        part = part or self.test_slice()
        q = 100 * trace.quality[part].mean() / self.ref_quality[part].mean()
        c = 100 * trace.cost[part].sum() / self.ref_cost[part].sum()
        return float(q), float(c)

    def summary(self) -> dict[str, float]:
        q_on, c_on = self.shares(self.online)
        q_fr, c_fr = self.shares(self.frozen)
        n = len(self.online.quality)
        at_cost = 100 * self.frozen_curve.quality_at(c_on / 100) if self.frozen_curve is not None else float("nan")
        full_q = full_c = full_at = float("nan")
        if self.full_choices is not None and self.test_quality is not None and self.test_cost is not None:
            full_q, full_c = _shares_of(self.full_choices, self.test_quality, self.test_cost, self.reference_index)
            if self.frozen_curve is not None:
                full_at = 100 * self.frozen_curve.quality_at(full_c / 100)
        lo, hi = self.gain_interval()
        return {
            "offline_share": self.offline_share,
            "n_offline": self.n_offline,
            "feedback_events": n,
            "online_quality": q_on,
            "online_cost": c_on,
            "frozen_quality": q_fr,
            "frozen_cost": c_fr,
            "quality_gain": q_on - q_fr,
            "cost_change": c_on - c_fr,
            "frozen_quality_at_online_cost": at_cost,
            "gain_at_equal_cost": q_on - at_cost,
            "gain_at_equal_cost_lo": lo,
            "gain_at_equal_cost_hi": hi,
            "full_info_quality": full_q,
            "full_info_cost": full_c,
            "full_info_gain_at_equal_cost": full_q - full_at,
            "auc_full_info": 100 * self.auc_full,
            "auc_frozen": 100 * self.auc_frozen,
            "auc_online_end": 100 * self.auc_online[-1] if self.auc_online else float("nan"),
            "changes_detected": self.changes_detected,
            "ms_per_feedback": 1000 * self.feedback_seconds / max(n, 1),
            "ms_per_route": 1000 * self.route_seconds / max(n, 1),
        }

    def choice_counts(self) -> dict[str, dict[str, int]]:
        """How often each candidate was chosen: online on the training / test part, frozen on the test part."""
        part = self.test_slice()
        train = slice(0, self.n_stream_train)

        def count(chosen: np.ndarray) -> dict[str, int]:
            return {n: int(c) for n, c in zip(self.names, np.bincount(chosen, minlength=len(self.names))) if c}

        return {"online_train": count(self.online.chosen[train]), "online_test": count(self.online.chosen[part]),
                "frozen_test": count(self.frozen.chosen[part])}

    def gain_interval(self, n_resamples: int = 500, seed: int = 0) -> tuple[float, float]:
        """95% paired-bootstrap interval of the gain at equal cost (test queries resampled).

        Every router's choices stay fixed (the online router's as it made them, the frozen router's
        at each λ of its sweep); each resample recomputes the online quality and cost, the frozen
        curve, and the frozen quality at the online cost on the same resampled queries.
        """
        if self.frozen_choices is None or self.test_quality is None or self.test_cost is None:
            return float("nan"), float("nan")
        part = self.test_slice()
        on_q, on_c = self.online.quality[part], self.online.cost[part]
        qt, ct, ref = self.test_quality, self.test_cost, self.reference_index
        rows = np.arange(qt.shape[0])
        fr_q = qt[rows[None, :], self.frozen_choices]  # (L, n)
        fr_c = ct[rows[None, :], self.frozen_choices]
        rng = np.random.default_rng(seed)
        gains = np.empty(n_resamples)
        for b in range(n_resamples):
            idx = rng.integers(0, len(rows), size=len(rows))
            ref_q, ref_c = qt[idx, ref].mean(), ct[idx, ref].sum()
            c_on = on_c[idx].sum() / ref_c
            fq, fc = fr_q[:, idx].mean(axis=1) / ref_q, fr_c[:, idx].sum(axis=1) / ref_c
            ok = fc <= c_on + 1e-12
            at = fq[ok].max() if ok.any() else 0.0
            gains[b] = 100 * (on_q[idx].mean() / ref_q - at)
        lo, hi = np.percentile(gains, [2.5, 97.5])
        return float(lo), float(hi)

    def window(self, trace: StreamTrace, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sliding-window (events, quality %, cost %) of the reference over the same window."""
        k = np.ones(size)
        def roll(a: np.ndarray) -> np.ndarray:
            return np.convolve(a, k, mode="valid")
        q = 100 * roll(trace.quality) / np.maximum(roll(self.ref_quality), 1e-12)
        c = 100 * roll(trace.cost) / np.maximum(roll(self.ref_cost), 1e-12)
        return np.arange(size, len(trace.quality) + 1), q, c


@dataclass
class HoldoutResult:
    name: str
    offline_share: float
    prior: str
    auc_with: float
    auc_without: float
    events: list[int]
    auc: list[float]
    chosen_share: list[float]  # share of stream decisions that went to the added candidate, per interval

    def first_event(self, target: float) -> int | None:
        for n, a in zip(self.events, self.auc):
            if a >= target - 1e-12:
                return n
        return None

    def summary(self) -> dict[str, Any]:
        gap_target = self.auc_without + 0.9 * (self.auc_with - self.auc_without)
        return {
            "candidate": self.name,
            "prior": self.prior,
            "offline_share": self.offline_share,
            "auc_with_from_start": 100 * self.auc_with,
            "auc_without": 100 * self.auc_without,
            "auc_at_0_events": 100 * self.auc[0],
            "auc_at_end": 100 * self.auc[-1],
            "events_to_90pct_auc": self.first_event(0.9 * self.auc_with),
            "events_to_close_90pct_of_gap": self.first_event(gap_target) if self.auc_with > self.auc_without else 0,
            "events_total": self.events[-1],
        }


@dataclass
class OnlineReport:
    reference: str
    cost_share: float
    label_noise: float
    config: dict[str, Any]
    shares: list[ShareResult]
    holdout: HoldoutResult | None = None
    window: int = 300
    thompson: float = 0.0  # σ of Thompson-sampling exploration (0: the router's UCB routing)
    recalibrate_every: int = 0  # the online router re-solves λ every this many events (0: λ fixed)
    drift: tuple[str, str] | None = None  # (candidate, like): from the first test query on, answers like `like`

    def table(self) -> str:
        knob = (f"λ re-solved every {self.recalibrate_every} events for" if self.recalibrate_every
                else "λ fixed at")
        lines = [
            f"online vs frozen, {knob} cost_share={self.cost_share:g} of {self.reference}; "
            f"label noise {self.label_noise:g}; exploration "
            f"{f'Thompson σ={self.thompson:g}' if self.thompson else 'UCB α=' + str(self.config.get('exploration'))}; test part of the stream (quality and cost, % of {self.reference})",
            f"{'offline':>7} {'events':>6} {'online Q':>8} {'frozen Q':>8} {'ΔQ':>6} {'online C':>8} "
            f"{'frozen C':>8} {'ΔC':>6} {'fr Q@C':>6} {'ΔQ@C':>6} {'95% interval':>14} {'AUC fr':>6} {'AUC on':>6} "
            f"{'AUC full':>8} {'full ΔQ@C':>9} {'ms/fb':>6}",
        ]
        if self.drift is not None:
            lines.insert(1, f"drift: from the first test query on, {self.drift[0]} answers like {self.drift[1]} "
                            "(its recorded quality replaced, its cost kept); test figures use the drifted outcomes")
        for r in self.shares:
            s = r.summary()
            lines.append(
                f"{100 * r.offline_share:6.0f}% {s['feedback_events']:6d} {s['online_quality']:8.2f} "
                f"{s['frozen_quality']:8.2f} {s['quality_gain']:+6.2f} {s['online_cost']:8.2f} "
                f"{s['frozen_cost']:8.2f} {s['cost_change']:+6.2f} {s['frozen_quality_at_online_cost']:6.2f} "
                f"{s['gain_at_equal_cost']:+6.2f} {s['gain_at_equal_cost_lo']:+6.2f}..{s['gain_at_equal_cost_hi']:+6.2f} "
                f"{s['auc_frozen']:6.2f} {s['auc_online_end']:6.2f} {s['auc_full_info']:8.2f} "
                f"{s['full_info_gain_at_equal_cost']:+9.2f} {s['ms_per_feedback']:6.2f}"
            )
        lines.append("fr Q@C = the frozen router's test quality at the online router's test cost (its λ swept, "
                     "exploration bonus included); ΔQ@C = online − that: the gain at equal cost.")
        lines.append("AUC on = test AUC of the online router's predictions after the training part of the stream.")
        lines.append("95% interval: paired bootstrap of ΔQ@C over the test queries (choices fixed).")
        lines.append("AUC full / full ΔQ@C = full-information ceiling: the router refitted on the offline queries plus "
                     "every training query of the stream with every candidate's outcome (at the same λ)"
                     + ("; with drift it knows only the outcomes from before the change, so it bounds nothing."
                        if self.drift is not None else "."))
        if self.holdout is not None:
            h = self.holdout.summary()
            lines += [
                "",
                f"hold-out: {h['candidate']} added live with no labelled examples (prior: {h['prior']}), "
                f"offline share {100 * h['offline_share']:.0f}%",
                f"  test AUC: trained with it from the start {h['auc_with_from_start']:.2f}, without it "
                f"{h['auc_without']:.2f}, after adding it {h['auc_at_0_events']:.2f} (0 events) → "
                f"{h['auc_at_end']:.2f} ({h['events_total']} events)",
                f"  feedback events to reach 90% of the from-start AUC: {h['events_to_90pct_auc']}; "
                f"to close 90% of the gap: {h['events_to_close_90pct_of_gap']}",
            ]
        return "\n".join(lines)

    def learning_curve_table(self, every: int = 250) -> str:
        """Cumulative quality/cost % over the stream at regular event counts (online vs frozen)."""
        lines = [f"{'offline':>7} {'events':>6} {'online Q':>8} {'frozen Q':>8} {'online C':>8} {'frozen C':>8}"]
        for r in self.shares:
            n = len(r.online.quality)
            for end in [*range(every, n, every), n]:
                part = slice(0, end)
                q_on, c_on = r.shares(r.online, part)
                q_fr, c_fr = r.shares(r.frozen, part)
                lines.append(f"{100 * r.offline_share:6.0f}% {end:6d} {q_on:8.2f} {q_fr:8.2f} {c_on:8.2f} {c_fr:8.2f}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        def clean(d: dict[str, Any]) -> dict[str, Any]:
            return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()}

        return {
            "reference": self.reference,
            "cost_share": self.cost_share,
            "label_noise": self.label_noise,
            "thompson": self.thompson,
            "recalibrate_every": self.recalibrate_every,
            "drift": None if self.drift is None else {"candidate": self.drift[0], "like": self.drift[1]},
            "config": self.config,
            "shares": [
                {**clean(r.summary()), "cost_weight": r.cost_weight, "auc_events": r.auc_events,
                 "auc_online": [100 * a for a in r.auc_online], "choices": r.choice_counts()}
                for r in self.shares
            ],
            "holdout": None if self.holdout is None else {
                **clean(self.holdout.summary()), "events": self.holdout.events,
                "auc": [100 * a for a in self.holdout.auc], "chosen_share": self.holdout.chosen_share,
            },
        }

    def write(self, folder: str | Path) -> list[Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = [folder / "online.json", folder / "online.txt"]
        out[0].write_text(json.dumps(self.to_json(), indent=2))
        out[1].write_text(self.table() + "\n\nLearning curves (cumulative over the stream):\n"
                          + self.learning_curve_table() + "\n")
        try:
            out.append(plot_online(self, folder / "online.png"))
        except ImportError:
            pass
        return out


def _shares_of(choices: np.ndarray, q_true: np.ndarray, c_true: np.ndarray, ref: int) -> tuple[float, float]:
    rows = np.arange(q_true.shape[0])
    return (float(100 * q_true[rows, choices].mean() / q_true[:, ref].mean()),
            float(100 * c_true[rows, choices].sum() / c_true[:, ref].sum()))


# ---------------------------------------------------------------------------------- plot
def plot_online(report: OnlineReport, path: str | Path) -> Path:
    """Sliding-window quality and cost (% of the reference) vs feedback events, online vs frozen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = len(report.shares) + (1 if report.holdout is not None else 0)
    fig, axes = plt.subplots(2, cols, figsize=(4.2 * cols, 6.5), dpi=110, squeeze=False)
    for k, r in enumerate(report.shares):
        size = min(report.window, max(len(r.online.quality) // 4, 1))
        for trace, label, style in ((r.online, "online", "-"), (r.frozen, "frozen", "--")):
            x, q, c = r.window(trace, size)
            axes[0, k].plot(x, q, style, label=label, linewidth=1.2)
            axes[1, k].plot(x, c, style, label=label, linewidth=1.2)
        for ax in axes[:, k]:
            ax.axvline(r.n_stream_train, color="grey", linewidth=0.8)
            ax.grid(alpha=0.3)
        axes[0, k].set_title(f"offline {100 * r.offline_share:.0f}% ({r.n_offline} queries)", fontsize=9)
        axes[1, k].set_xlabel("feedback events (grey: test queries start)")
    axes[0, 0].set_ylabel(f"quality, % of {report.reference.split('/')[-1]} ({report.window}-event window)")
    axes[1, 0].set_ylabel(f"cost, % of {report.reference.split('/')[-1]}")
    axes[0, 0].legend(fontsize=8)
    if report.holdout is not None:
        h = report.holdout
        ax = axes[0, -1]
        ax.plot(h.events, [100 * a for a in h.auc], "-o", markersize=2, label="online, added live")
        ax.axhline(100 * h.auc_with, color="C2", linestyle="--", label="trained with it")
        ax.axhline(100 * h.auc_without, color="C3", linestyle=":", label="without it")
        ax.set_title(f"{h.name.split('/')[-1]} added live: test AUC", fontsize=9)
        ax.set_xlabel("feedback events")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax2 = axes[1, -1]
        mids = [(a + b) / 2 for a, b in zip(h.events[:-1], h.events[1:]) if b > a]
        ax2.plot(mids[: len(h.chosen_share)], [100 * s for s in h.chosen_share], "-")
        ax2.set_ylabel(f"% of queries routed to {h.name.split('/')[-1]}")
        ax2.set_xlabel("feedback events")
        ax2.grid(alpha=0.3)
    fig.suptitle(f"Online learning vs frozen router (λ fixed at cost share {report.cost_share:g}, "
                 f"label noise {report.label_noise:g})", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
