"""Measuring routers on recorded outcomes: the metrics and baselines of DESIGN §2."""

from .benchmark import EvalReport, MethodResult, evaluate
from .plot import plot_tradeoff

__all__ = ["EvalReport", "MethodResult", "evaluate", "plot_tradeoff"]
