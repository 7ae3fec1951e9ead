"""Reading the outcome files that training, evaluation and the simulators start from.

``load_data`` takes RouterBench files or folders (wide layout, detected from the header) or long
CSV files (``query, model, quality, cost`` …, see ``mixllm_router.data``); ``load_train_test``
splits them for an offline evaluation. They live here, not in the CLI, because the simulators,
the benchmarks and the commands all need the same reading and the same held-out split.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .._exceptions import MixLLMError

if TYPE_CHECKING:
    from ..data import RoutingDataset

__all__ = ["load_data", "load_train_test"]


def _log(message: str) -> None:
    """Progress notes go to stderr, so a command's stdout stays its result."""
    print(message, file=sys.stderr, flush=True)


def _is_routerbench(path: Path) -> bool:
    if path.is_dir():
        return True
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        header = fh.readline()
    return "|total_cost" in header and "prompt" in header


def load_data(paths: Sequence[str], *, split: str | None = None, on_error: str = "drop") -> RoutingDataset:
    """Read RouterBench (wide) or long-CSV files into one dataset."""
    from ..data import RoutingDataset, load_routerbench

    sets = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise MixLLMError(f"no such file or folder: {path}")
        if _is_routerbench(path):
            sets.append(load_routerbench(path, split=split, on_error=on_error))  # type: ignore[arg-type]
        else:
            data = RoutingDataset.from_csv(path, on_error=on_error)  # type: ignore[arg-type]
            if split is not None:
                if not data.has_column("split"):
                    raise MixLLMError(f"{path}: no 'split' column, so split {split!r} selects nothing; "
                                      "leave the split out to use every row")
                data = data.splits().get(split) or data.subset([])
            sets.append(data)
    if not sets:
        raise MixLLMError("no data given")
    return sets[0] if len(sets) == 1 else sets[0].concat(*sets[1:])


def load_train_test(
    paths: Sequence[str], *, on_error: str = "drop", test_size: float = 0.2, seed: int = 0
) -> tuple[RoutingDataset, RoutingDataset]:
    """Training and test sets from ``--data``.

    With a ``split`` column (RouterBench: from the file names) its ``train`` and ``test`` rows.
    Without one, a seeded share ``test_size`` of the queries (stratified by ``task`` where the data
    has one) is held out: evaluating on the training queries would report memorisation, not routing.
    """
    import numpy as np

    data = load_data(paths, on_error=on_error)
    if data.has_column("split"):
        parts = data.splits()
        if "train" not in parts or "test" not in parts:
            raise MixLLMError(f"the split column holds {sorted(parts)}; this needs 'train' and 'test' rows "
                              "(or no split column at all, and a held-out share is used)")
        return parts["train"], parts["test"]
    complete = np.isfinite(data.matrix("quality")).all(axis=1) & np.isfinite(data.matrix("cost")).all(axis=1)
    if complete.all():
        train, test = data.train_test_split(test_size, seed=seed)
        _log(f"no 'split' column: {len(test)} of {len(data)} queries ({test_size:.0%}, seed {seed}) held out as "
             "the test set")
        return train, test
    # sparse outcomes (not every model ran on every query): only a query every model answered can
    # score the choice at every λ, so the test set is drawn from those; the rest all train
    ids = data.query_ids
    complete_ids = [q for q, ok in zip(ids, complete) if ok]
    if len(complete_ids) < 2:
        raise MixLLMError(f"{len(complete_ids)} of {len(data)} queries have every model's outcome; an offline "
                          "evaluation needs some (a split column, or queries answered by every model)")
    _, test = data.subset(complete_ids).train_test_split(test_size, seed=seed)
    held = set(test.query_ids)
    train = data.subset([q for q in ids if q not in held])
    _log(f"no 'split' column: {len(test)} of the {len(complete_ids)} queries with every model's outcome "
         f"({test_size:.0%}, seed {seed}) held out as the test set; {len(train)} queries train")
    return train, test
