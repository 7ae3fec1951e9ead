"""Checks of values callers hand to the router at run time (route options, feedback numbers).

Why a module of its own: every public entry point must turn a bad value into the library's own
error (:class:`ConfigError` for route options, :class:`FeedbackError` for feedback) *before* any
state changes, and Python's numbers have many ways to fail later: ``float(10**400)`` raises
``OverflowError``, ``Decimal("sNaN") >= 0`` raises ``decimal.InvalidOperation``, ``"1" >= 0`` and
``1j >= 0`` raise ``TypeError``, and ``[["x"]]`` as a set of names raises ``TypeError: unhashable``.

A real number here is an ``int``, ``float``, ``fractions.Fraction``, ``decimal.Decimal`` or a numpy
integer/floating scalar (``bool`` is refused: ``True`` as a weight is a bug, not a 1). It is
converted to a finite ``float``; anything else, including ``str``, ``complex``, NaN and values too
large for a float, is refused with the error class the caller names.
"""

from __future__ import annotations

import decimal
import math
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

from ._exceptions import ConfigError, MixLLMError

__all__ = ["finite_real", "candidate_names"]


def finite_real(value: Any, what: str, error: type[MixLLMError] = ConfigError, *, minimum: float | None = 0.0,
                maximum: float | None = None) -> float:
    """``value`` as a finite float in ``[minimum, maximum]``, else ``error`` naming ``what``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, decimal.Decimal, np.integer,
                                                                      np.floating)):
        raise error(f"{what} must be a real number, got {type(value).__name__} {_short(value)}")
    try:
        number = float(value)
    except (OverflowError, ValueError, decimal.InvalidOperation):  # 10**400, Decimal('sNaN')
        raise error(f"{what} must be a finite number, got {_short(value)}") from None
    if not math.isfinite(number):
        raise error(f"{what} must be a finite number, got {_short(value)}")
    if minimum is not None and number < minimum:
        raise error(f"{what} must be >= {minimum:g}, got {_short(value)}")
    if maximum is not None and number > maximum:
        raise error(f"{what} must be <= {maximum:g}, got {_short(value)}")
    return number


def candidate_names(value: Any) -> list[str] | None:
    """``candidates=``: None, or a non-empty collection of names (a bare ``str`` is refused: it
    would be read as its letters)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError(f"candidates= takes a list of candidate names, got {type(value).__name__} {_short(value)}")
    names = list(value)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise ConfigError(f"candidates= must hold names (str); got {_short(bad[0])} ({type(bad[0]).__name__})")
    if not names:
        raise ConfigError("candidates= must name at least one candidate")
    return names


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a hostile __repr__ (or a 5000-digit int) must not hide the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
