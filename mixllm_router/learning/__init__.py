"""Learn: feedback, the journal, bandit updates of the predictors, change detection, pool changes.

See :mod:`.learner` for the update rules (Sherman–Morrison ridge steps, the REINFORCE feedback
score, the residual CUSUM) and :mod:`.journal` for the write-ahead feedback journal.
"""

from __future__ import annotations

from .journal import FeedbackEvent, FeedbackJournal
from .learner import FeedbackScoreNet, JournalWarning, LearningSettings, OnlineLearner, ResidualChangeDetector

__all__ = [
    "FeedbackEvent",
    "FeedbackJournal",
    "FeedbackScoreNet",
    "JournalWarning",
    "LearningSettings",
    "OnlineLearner",
    "ResidualChangeDetector",
]
