"""API keys: taken from an argument or the environment and kept as ``SecretStr``.

A ``SecretStr`` prints as ``**********``, so a client's ``repr``, a log line or a pickled settings
object never shows the key; the plain value is read only when the SDK client is built.
"""

from __future__ import annotations

import os

from pydantic import SecretStr

__all__ = ["resolve_key"]


def resolve_key(api_key: SecretStr | str | None, env_var: str) -> SecretStr | None:
    """``api_key`` as a SecretStr, else the environment variable ``env_var``, else ``None``."""
    if isinstance(api_key, SecretStr):
        return api_key
    if api_key:
        return SecretStr(api_key)
    value = os.environ.get(env_var)
    return SecretStr(value) if value else None
