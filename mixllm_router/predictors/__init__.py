"""Per-candidate predictors of quality and cost, with the LinUCB uncertainty."""

from .candidate import CandidatePredictor, features
from .knn import KNNRegressor
from .linear import LinUCBRidge
from .mlp import MLPRegressorNP

__all__ = ["CandidatePredictor", "KNNRegressor", "LinUCBRidge", "MLPRegressorNP", "features"]
