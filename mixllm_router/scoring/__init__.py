"""Turn answers into outcomes: scorers, LLM judges, online scoring and collection.

The router learns from outcomes ``(query, model, quality, cost)``. This package makes them from a
user's own traffic:

* :class:`Scorer` and the built-ins grade one answer in [0, 1] (``reference``: exact match,
  multiple choice, final number, regex, JSON schema, a function; ``judge``: an LLM judge, absolute
  or pairwise with a position swap);
* :func:`collect` calls every candidate on a file of queries and writes the long outcome CSV the
  router trains on (``mixllm collect``), resumable after a crash;
* online scoring (``mixllm_router.scoring.online``) grades live answers in a background worker and
  turns the grades into feedback.
"""

from .base import Score, Scorer, as_score
from .collection import CollectReport, acollect, collect
from .judge import DEFAULT_RUBRIC, LLMJudge, PairwiseJudge
from .queries import QueryItem, QueryProblem, read_queries
from .reference import (
    ExactMatch,
    FunctionScorer,
    JSONSchemaValid,
    MultipleChoice,
    NumericAnswer,
    RegexMatch,
    extract_number,
    extract_option,
    normalize_text,
    option_labels,
)

__all__ = [
    "CollectReport",
    "QueryItem",
    "QueryProblem",
    "acollect",
    "collect",
    "read_queries",
    "DEFAULT_RUBRIC",
    "ExactMatch",
    "FunctionScorer",
    "JSONSchemaValid",
    "LLMJudge",
    "MultipleChoice",
    "NumericAnswer",
    "PairwiseJudge",
    "RegexMatch",
    "Score",
    "Scorer",
    "as_score",
    "extract_number",
    "extract_option",
    "normalize_text",
    "option_labels",
]
