"""Base class of every settings model: an invalid value raises :class:`ConfigError`, never
pydantic's ``ValidationError`` (which is outside the library's exception tree)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from ._exceptions import ConfigError

__all__ = ["Settings", "describe"]


def describe(exc: ValidationError) -> str:
    """Every problem of a pydantic error, one ``field.path: message`` each.

    A nested settings model reports its own :class:`ConfigError` (pydantic calls its ``__init__``
    during validation and wraps the error as "Value error, ..."); its message is used as it is.
    """
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        inner = (err.get("ctx") or {}).get("error")
        message = str(inner) if isinstance(inner, ConfigError) else err["msg"]
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


class Settings(BaseModel):
    """Settings base: constructing it with bad values raises :class:`ConfigError` listing each field."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(f"invalid {type(self).__name__}: {describe(exc)}") from None


def _path_text(value: str | None) -> str | None:
    """A path setting: a NUL byte would make every later ``open`` raise a raw ``ValueError``."""
    if value is not None and "\x00" in value:
        raise ValueError("a path may not contain a NUL byte")
    return value
