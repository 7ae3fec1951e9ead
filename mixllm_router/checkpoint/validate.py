"""Validate what a checkpoint holds before anything is built from it.

Everything a manifest or an arrays file can hold is checked here, so that a hostile or damaged
checkpoint raises :class:`CheckpointError` at load instead of a raw ``ValueError``,
``RecursionError`` or ``MemoryError`` there, or an ``IndexError`` at the first route, a
``ValueError`` at the first feedback, or an ``OverflowError`` at the next save:

- **JSON** (:func:`parse_manifest`): integers of at most 19 digits and within int64 (Python refuses
  5000-digit ones with a raw ``ValueError``, and sizes of 2**63 or more break numpy later), finite
  floats only (``NaN``, ``Infinity`` and ``1e999`` are refused: the library never writes them),
  nesting at most :data:`MAX_DEPTH` deep (the decoder's recursion is caught too).
- **Predictor descriptions**: ``kinds`` a non-empty list of ``ridge``/``knn``/``mlp`` (a dict
  there used to leave a candidate with no predictor and a NaN quality), ``cost_mode`` known,
  ``prior_strength`` > 0 and ``mlp_alpha`` >= 0.
- **Arrays** (:func:`validate_router_arrays`): every float array finite (a NaN weight makes its
  candidate's meta score NaN, and ``argmax`` then picks it every time); the embedding bank 2-D with
  at most :data:`MAX_DIM` columns; each candidate's declared ``dim`` equal to the bank's (a declared
  dim of 10**6 used to allocate a 10**12-entry matrix); its ridge ``A⁻¹`` of shape ``(d+2, d+2)``,
  ``b`` of ``(d+2, 2)``, ``offset`` of 2 and a non-negative integer ``n_seen``; kNN rows integer
  indices into the bank, with as many finite targets; the MLP's layers chained
  ``(d, h) → (h,) → (h, 1) → (1,)``; the calibration curve three equal-length vectors.

Settings (ranges, finite floats) are validated by the pydantic models of :mod:`.config` when the
manifest's config is parsed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._exceptions import CheckpointError

__all__ = ["MAX_DEPTH", "MAX_DIM", "check_finite", "parse_manifest", "validate_router_arrays"]

#: Deepest nesting of lists and objects a manifest may have (the library writes about 6).
MAX_DEPTH = 32
#: Largest embedding dimension a checkpoint may declare (MiniLM: 384; the largest encoders: 4096).
MAX_DIM = 1 << 15
#: Largest hidden width of a predictor's MLP.
MAX_HIDDEN = 1 << 15
_INT64 = 1 << 63
_KINDS = frozenset({"ridge", "knn", "mlp"})


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > 19:
        raise ValueError(f"integer of {len(text)} digits")
    value = int(text)
    if not -_INT64 <= value < _INT64:
        raise ValueError(f"integer {value} does not fit in 64 bits")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is not finite")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _depth(obj: Any) -> int:
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                return deepest
            stack.extend((v, depth + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def parse_manifest(data: bytes, where: object) -> Any:
    """Decode and parse a manifest's bytes with the bounds of the module doc."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{where} is damaged (not UTF-8): {exc}") from None
    try:
        obj = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_refuse_constant)
    except RecursionError:
        raise CheckpointError(f"{where} nests lists or objects too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError is one, and so are the bounds above
        raise CheckpointError(f"{where} is damaged (not valid JSON within bounds): {exc}") from None
    if _depth(obj) > MAX_DEPTH:
        raise CheckpointError(f"{where} nests lists or objects more than {MAX_DEPTH} deep")
    return obj


# ---------------------------------------------------------------------------------- arrays
def _need(arrays: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    if name not in arrays:
        raise CheckpointError(f"the arrays file lacks {name!r}")
    return arrays[name]


def _shape(a: np.ndarray, name: str, shape: tuple[int, ...], kinds: str = "f") -> None:
    if a.dtype.kind not in kinds:
        raise CheckpointError(f"array {name!r} has dtype {a.dtype}; expected {'a float' if kinds == 'f' else 'an int'}")
    if a.shape != shape:
        raise CheckpointError(f"array {name!r} has shape {a.shape}; expected {shape}")


def _int_field(meta: Mapping[str, Any], key: str, lo: int, hi: int, what: str) -> int:
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise CheckpointError(f"{what}: {key} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def check_finite(arrays: Mapping[str, np.ndarray]) -> None:
    """Every array numeric (float, int, bool), every float finite."""
    for name, a in arrays.items():
        if a.dtype.kind not in "fiub":
            raise CheckpointError(f"array {name!r} has unsupported dtype {a.dtype}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise CheckpointError(f"array {name!r} holds NaN or infinite values")


def validate_router_arrays(manifest: Mapping[str, Any], arrays: Mapping[str, np.ndarray], *, hidden: int) -> None:
    """Check the arrays against each other and against the manifest (module doc); ``hidden`` is the
    feedback network's trunk width from the (validated) config."""
    check_finite(arrays)
    bank = _need(arrays, "bank.embeddings")
    if bank.ndim != 2 or bank.dtype.kind != "f" or bank.shape[0] < 1 or not 1 <= bank.shape[1] <= MAX_DIM:
        raise CheckpointError(
            f"array 'bank.embeddings' must be a float matrix with at least one row and 1..{MAX_DIM} columns, "
            f"got {bank.dtype} {bank.shape}"
        )
    n, d = bank.shape
    candidates = manifest.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        raise CheckpointError("the manifest names no candidates")
    for i, entry in enumerate(candidates):
        meta = entry.get("predictor") if isinstance(entry, dict) else None
        if not isinstance(meta, dict):
            raise CheckpointError(f"candidate {i}: its predictor description is missing")
        what = f"candidate {i}"
        kinds = meta.get("kinds")
        if not isinstance(kinds, list) or not kinds or not all(k in _KINDS for k in kinds):
            raise CheckpointError(f"{what}: kinds must be a non-empty list of {sorted(_KINDS)}, got {kinds!r}")
        if meta.get("cost_mode") not in ("tokens", "direct"):
            raise CheckpointError(f"{what}: cost_mode must be 'tokens' or 'direct', got {meta.get('cost_mode')!r}")
        for key, low in (("prior_strength", 0.0), ("mlp_alpha", -1.0)):
            value = meta.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > low:
                raise CheckpointError(f"{what}: {key} must be a number > {max(low, 0.0):g}, got {value!r}")
        _int_field(meta, "dim", d, d, f"{what} (the embedding bank has {d} columns)")
        _int_field(meta, "knn_k", 1, 1 << 20, what)
        _int_field(meta, "mlp_hidden", 1, MAX_HIDDEN, what)
        _int_field(meta, "seed", 0, _INT64 - 1, what)
        p = f"candidate.{i}."
        _shape(_need(arrays, p + "linear.a_inv"), p + "linear.a_inv", (d + 2, d + 2))
        _shape(_need(arrays, p + "linear.b"), p + "linear.b", (d + 2, 2))
        _shape(_need(arrays, p + "linear.offset"), p + "linear.offset", (2,))
        n_seen = _need(arrays, p + "linear.n_seen")
        _shape(n_seen, p + "linear.n_seen", (1,), kinds="iu")
        if int(n_seen[0]) < 0:
            raise CheckpointError(f"array {p}linear.n_seen is negative")
        rows, targets = _need(arrays, p + "knn.rows"), _need(arrays, p + "knn.targets")
        _shape(rows, p + "knn.rows", (rows.size,), kinds="iu")
        _shape(targets, p + "knn.targets", (rows.size,))
        if rows.size and (int(rows.min()) < 0 or int(rows.max()) >= n):
            raise CheckpointError(f"array {p}knn.rows points outside the embedding bank ({n} rows)")
        if meta.get("has_mlp"):
            w1 = _need(arrays, p + "mlp.w1")
            if w1.ndim != 2 or w1.shape[0] != d or not 1 <= w1.shape[1] <= MAX_HIDDEN:
                raise CheckpointError(f"array {p}mlp.w1 has shape {w1.shape}; expected ({d}, hidden)")
            h = w1.shape[1]
            _shape(w1, p + "mlp.w1", (d, h))
            _shape(_need(arrays, p + "mlp.b1"), p + "mlp.b1", (h,))
            _shape(_need(arrays, p + "mlp.w2"), p + "mlp.w2", (h, 1))
            _shape(_need(arrays, p + "mlp.b2"), p + "mlp.b2", (1,))
    extra = manifest.get("extra")
    learning = extra.get("learning") if isinstance(extra, dict) else None
    net = learning.get("net") if isinstance(learning, dict) else None
    if isinstance(net, dict):  # checked before FeedbackScoreNet allocates its trunk
        _int_field(net, "dim", d, d, f"the feedback network (the embedding bank has {d} columns)")
        _shape(_need(arrays, "extra.learning.net.U"), "extra.learning.net.U", (hidden, d) if hidden else (0, d))
        _shape(_need(arrays, "extra.learning.net.c"), "extra.learning.net.c", (hidden,))
    calibration = [k for k in ("calibration.cost_weights", "calibration.cost_share", "calibration.quality_share")]
    present = [k for k in calibration if k in arrays]
    if present:
        if len(present) != len(calibration):
            raise CheckpointError(f"the calibration curve is incomplete: only {present}")
        m = arrays[calibration[0]].size
        for k in calibration:
            _shape(arrays[k], k, (m,))
        if m < 1:
            raise CheckpointError("the calibration curve is empty")
