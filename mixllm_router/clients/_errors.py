"""Map provider exceptions onto the library's tree (Transient / Permanent / ContextLength).

The classification decides what the fallback loop does, so it is by meaning, not by SDK class:

* transient (retry, then another candidate): HTTP 408, 409, 429 (``retry_after`` from the
  ``retry-after-ms`` / ``retry-after`` headers), every 5xx, Anthropic 529 ``overloaded_error``,
  timeouts, connection errors, a connection that broke mid-body;
* context length (another candidate with a larger window): a 400/413 whose message says so;
* permanent (raise at once): every other 4xx (401, 403, 400, 404, 422, ...).

Messages are built from the provider's status and error text only, with anything that looks like
an API key blanked out (OpenAI echoes a masked key on 401), so no secret reaches a log.
"""

from __future__ import annotations

import contextlib
import email.utils
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .._exceptions import ClientError, ContextLengthError, PermanentClientError, TransientClientError

__all__ = ["map_provider_error", "raising_ours", "redact"]

_CONTEXT_RE = re.compile(
    r"context[ _-]?(length|window)|too many tokens|prompt is too long|maximum context|"
    r"input is too long|reduce the length|exceeds the model'?s? (maximum|context)",
    re.IGNORECASE,
)
_KEY_RE = re.compile(r"(sk-[A-Za-z0-9_\-*]{6,}|sk-ant-[A-Za-z0-9_\-*]{6,}|Bearer\s+\S+)")
_TRANSIENT_TYPES = {"overloaded_error", "rate_limit_error", "api_error", "server_error", "timeout_error"}
_HTTPX_TRANSIENT = {"TimeoutException", "TransportError", "NetworkError", "RemoteProtocolError", "StreamError"}


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with the given secrets and anything shaped like an API key replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return _KEY_RE.sub("***", text)


def _retry_after(headers: Any) -> float | None:
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
        value = headers.get("retry-after")
    except Exception:  # pragma: no cover - exotic header containers
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return None if parsed is None else max(0.0, parsed.timestamp() - time.time())


def _error_body(exc: Any) -> tuple[str | None, str]:
    """(error type, message) from an SDK status error's JSON body, when it has one."""
    body = getattr(exc, "body", None)
    kind, message = None, ""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            kind = err.get("type") or err.get("code")
            message = str(err.get("message") or "")
    if not message:
        message = str(getattr(exc, "message", "") or exc)
    return (str(kind) if kind else None), message


def _mro_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def map_provider_error(
    exc: BaseException, *, provider: str, candidate: str | None = None, secrets: Iterable[str | None] = ()
) -> ClientError | None:
    """Our error for ``exc``, or ``None`` when ``exc`` is not a provider/transport failure.

    Works for openai and anthropic SDK errors (duck-typed on ``status_code``/``body``/class names, so
    it needs neither SDK imported), httpx/httpx2 transport errors, and builtin timeouts.
    """
    if isinstance(exc, ClientError):
        return exc
    secrets = list(secrets)
    names = _mro_names(exc)
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None) if "HTTPStatusError" in names else None
    if "APITimeoutError" in names or isinstance(exc, TimeoutError) or "TimeoutException" in names:
        return TransientClientError(f"{provider}: request timed out", candidate=candidate)
    if "APIConnectionError" in names or isinstance(exc, ConnectionError):
        detail = redact(str(exc), secrets)
        return TransientClientError(f"{provider}: connection error: {detail}", candidate=candidate)
    if isinstance(status, int) and status >= 400:
        kind, message = _error_body(exc)
        message = redact(message, secrets)
        text = f"{provider} HTTP {status}" + (f" ({kind})" if kind else "") + f": {message}"
        headers = getattr(getattr(exc, "response", None), "headers", None)
        if status in (408, 409, 429) or status >= 500:
            return TransientClientError(text, candidate=candidate, retry_after=_retry_after(headers))
        if status in (400, 413) and _CONTEXT_RE.search(message):
            return ContextLengthError(text, candidate=candidate)
        return PermanentClientError(text, candidate=candidate)
    if "APIError" in names:  # error event inside a 200 stream, or a response that did not validate
        kind, message = _error_body(exc)
        message = redact(message, secrets)
        text = f"{provider} error" + (f" ({kind})" if kind else "") + f": {message}"
        if kind in _TRANSIENT_TYPES:
            return TransientClientError(text, candidate=candidate)
        if _CONTEXT_RE.search(message):
            return ContextLengthError(text, candidate=candidate)
        return PermanentClientError(text, candidate=candidate)
    if names & _HTTPX_TRANSIENT and type(exc).__module__.split(".")[0] in {"httpx", "httpx2", "httpcore"}:
        return TransientClientError(f"{provider}: transport error: {redact(str(exc), secrets)}", candidate=candidate)
    return None


@contextlib.contextmanager
def raising_ours(to_ours: Callable[[BaseException], BaseException | None]) -> Iterator[None]:
    """Around a provider call (or a whole stream): an exception escaping the block is raised as
    ``to_ours(exc)``, with the provider's exception chained as ``__cause__``; one ``to_ours``
    leaves alone (``None``, or ``exc`` itself) propagates unchanged.

    Why a context manager: every client wraps each of its four calls this way, and inside a
    generator it covers the chunks as they are read, while ``GeneratorExit`` (a consumer that
    stops early) is no ``Exception`` and passes through.
    """
    try:
        yield
    except Exception as exc:
        mapped = to_ours(exc)
        if mapped is None or mapped is exc:
            raise
        raise mapped from exc
