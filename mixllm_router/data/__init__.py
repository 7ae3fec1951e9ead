"""Routing datasets; the code is in :mod:`.validate` for now (this commit only moves the file)."""

from __future__ import annotations

from .validate import (
    CANONICAL_COLUMNS,
    REQUIRED_COLUMNS,
    DataIssue,
    OnError,
    RoutingDataset,
    load_routerbench,
)
from .validate import query_id_for as query_id_for

__all__ = ["OnError", "DataIssue", "RoutingDataset", "load_routerbench", "REQUIRED_COLUMNS", "CANONICAL_COLUMNS"]
