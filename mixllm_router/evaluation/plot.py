"""The quality-vs-cost picture of an evaluation, as a PNG (matplotlib, optional extra ``plot``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .benchmark import EvalReport

__all__ = ["plot_tradeoff"]


def plot_tradeoff(report: EvalReport, path: str | Path, *, title: str | None = None) -> Path:
    """Routers as their upper frontier, single models and random as points; shares in %."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for m in report.methods:
        if m.kind in ("router", "baseline", "oracle"):
            x, y = m.curve.envelope()
            style = {"router": "-", "baseline": "--", "oracle": ":"}[m.kind]
            ax.step(100 * x, 100 * y, where="post", linestyle=style, linewidth=2 if m.kind == "router" else 1.2,
                    label=m.name)
        else:
            ax.scatter(100 * m.curve.cost_share, 100 * m.curve.quality_share, s=22, zorder=3)
            ax.annotate(m.name.split("/")[-1], (100 * m.curve.cost_share[0], 100 * m.curve.quality_share[0]),
                        fontsize=6, xytext=(3, 2), textcoords="offset points")
    ax.axhline(97.25, color="grey", linewidth=0.6)
    ax.set_xlim(0, 105)
    ax.set_xlabel(f"cost, % of {report.reference}")
    ax.set_ylabel(f"quality, % of {report.reference}")
    ax.set_title(title or f"Quality vs cost on {report.n_test} test queries")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
