"""The call options every client takes besides the messages and ``tools``, named once.

``max_tokens``, ``temperature``, ``stop`` and ``timeout`` used to be spelt out in every signature
of every client, of their base class and protocol, and of the fallback caller; they are now one
``TypedDict``, taken as ``**options: Unpack[CallOptions]``, and checked at run time by
:func:`call_options` so a misspelt one still fails loudly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypedDict, cast

__all__ = ["CALL_OPTION_NAMES", "CallOptions", "call_options", "given_options"]


class CallOptions(TypedDict, total=False):
    """The generation settings every call takes besides the messages and ``tools``, named once.

    ``BaseChatClient``, every client, the :class:`ChatClient` protocol and ``FallbackCaller`` take
    them as ``**options: Unpack[CallOptions]``. ``tools`` stays a keyword of its own: it also
    decides which candidates may be called at all.
    """

    max_tokens: int | None
    temperature: float | None
    stop: Sequence[str] | None
    timeout: float | None


#: The keys of :class:`CallOptions`, in their order.
CALL_OPTION_NAMES: tuple[str, ...] = tuple(CallOptions.__annotations__)


def call_options(options: Mapping[str, Any], owner: str) -> CallOptions:
    """``options`` checked against :class:`CallOptions`, with every key present (``None`` where
    not given).

    Why a check at run time: ``Unpack[CallOptions]`` is a type hint only, and a misspelt option
    (``max_token=``) must fail as loudly as it did when every keyword was spelt out in each
    signature: a ``TypeError`` naming it.
    """
    for name in options:
        if name not in CALL_OPTION_NAMES:
            raise TypeError(f"{owner} got an unexpected keyword argument {name!r} "
                            f"(it takes tools= and {', '.join(n + '=' for n in CALL_OPTION_NAMES)})")
    return cast(CallOptions, {name: options.get(name) for name in CALL_OPTION_NAMES})


def given_options(options: Mapping[str, Any], *, without: Iterable[str] = ()) -> dict[str, Any]:
    """The call options that were given, to pass on to an SDK: those not ``None`` (``stop`` only
    when non-empty, as a list), in :data:`CALL_OPTION_NAMES` order; other keys are ignored."""
    skip = set(without)
    out: dict[str, Any] = {}
    for name in CALL_OPTION_NAMES:
        value = options.get(name)
        if name in skip or value is None or (name == "stop" and not value):
            continue
        out[name] = list(value) if name == "stop" else value
    return out
