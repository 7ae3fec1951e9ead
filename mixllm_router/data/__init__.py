"""Routing datasets: recorded outcomes of several LLMs on the same queries.

A router learns, for every candidate ``l``, how good (``q_l``) and how expensive (``c_l``) its
answer to a query would be. The training data is therefore a set of *outcomes*: query ``x`` was
sent to model ``l``, the answer scored ``q`` and cost ``c`` USD. :class:`RoutingDataset` holds
them as a LONG table, one row per (query, model) outcome, because that layout survives every
real-world irregularity (a model added later, a model that was not run on every query, extra
per-call measurements) where a wide table would need one column per model and metric.

The long CSV format
-------------------
One header line, then one row per (query, model) outcome. Column order does not matter; unknown
columns are kept as they are.

=================  ========  ===================================================================
column             required  meaning
=================  ========  ===================================================================
``query``          yes       the query text, exactly as the model saw it (not stripped)
``model``          yes       the candidate's name (surrounding whitespace is stripped); must
                             match ``Candidate.name`` in the pool
``quality``        yes       score of the answer, a float in [0, 1] (1 = best)
``cost``           yes       USD actually charged for this call, >= 0
``query_id``       no        a stable id of the query; where absent or empty it is derived as
                             the first 16 hex digits of ``sha256(query.encode("utf-8"))``
``split``          no        e.g. ``train`` / ``test``; one value per query
``task``           no        a label of the query (e.g. RouterBench ``eval_name``); one per query
``input_tokens``   no        prompt tokens, integer >= 0 (empty = unknown)
``output_tokens``  no        completion tokens, integer >= 0 (empty = unknown)
``latency_s``      no        seconds until the full answer, >= 0 (empty = unknown)
``response``       no        the model's answer text (used by the replay client)
=================  ========  ===================================================================

Example::

    query_id,query,model,quality,cost,split
    q1,What is 2+2?,gpt-4o,1.0,0.00031,train
    q1,What is 2+2?,gpt-4o-mini,1.0,0.00002,train
    q2,"Prove that sqrt(2) is irrational.",gpt-4o,0.9,0.0042,test
    q2,"Prove that sqrt(2) is irrational.",gpt-4o-mini,0.4,0.0003,test

Validation
----------
Every constructor validates a copy of its input. A problem is described by a :class:`DataIssue`
(``kind``, ``count``, a few ``examples``, ``action``). With ``on_error="raise"`` (the default for
your own data) one :class:`~mixllm_router.DataError` lists *all* problems found; with
``on_error="drop"`` the offending rows (or whole queries) are removed, the issues are kept in
``dataset.issues`` and one warning summarises them. The checks, in order (a row dropped by an
earlier check is not looked at again):

1. row level: ``empty_query``, ``empty_model``, ``non_numeric_<column>``, ``nan_quality``,
   ``quality_out_of_range``, ``nan_cost``, ``infinite_cost``, ``negative_cost``,
   ``negative_<column>`` / ``non_integer_<column>`` for the optional numeric columns;
2. query level: ``conflicting_query_id`` (one id, several texts), ``conflicting_split``,
   ``conflicting_task`` -- every row of such a query is removed, since we cannot tell which is right;
3. ``duplicate_row``: a second row for the same (query_id, model); the first is kept;
4. ``missing_model``: a query without a usable outcome for every model. A problem only with
   ``require_complete=True`` (then the query is removed); otherwise it is noted with action "kept".

A missing required column always raises, whatever ``on_error`` says: there is nothing to drop.

Where the code lives: :mod:`.validate` (the checks, :class:`DataIssue`, :func:`query_id_for`),
:mod:`.dataset` (:class:`RoutingDataset`), :mod:`.routerbench` (:func:`load_routerbench`); all of it
is importable from ``mixllm_router.data``.
"""

from __future__ import annotations

from .dataset import RoutingDataset
from .routerbench import load_routerbench
from .validate import CANONICAL_COLUMNS, REQUIRED_COLUMNS, DataIssue, OnError
from .validate import query_id_for as query_id_for  # not public, but mixllm_router.scoring imports it from here

__all__ = ["OnError", "DataIssue", "RoutingDataset", "load_routerbench", "REQUIRED_COLUMNS", "CANONICAL_COLUMNS"]
