"""What the clients over a provider's SDK share (OpenAI, Anthropic): the API key, the SDK's client
objects made on first use (one sync, one per event loop), SDK retries off, and errors mapped onto
the library's tree with the key blanked out.

SDK retries are off (``max_retries=0``): one retry/fallback loop, owned by
:class:`mixllm_router.clients.fallback.FallbackCaller`, decides whether to wait, retry or move to
another candidate, so retries never multiply (SDK retries x our retries).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import SecretStr

from ._errors import map_provider_error
from ._secrets import resolve_key
from .base import BaseChatClient

__all__ = ["SDKChatClient", "SDKClients"]


class SDKClients:
    """The provider SDK's client objects behind one of our clients, made on first use: one for
    sync calls, and one per event loop for async calls (an SDK's async connection pool is bound to
    the loop it was made in, and a client may be used from several loops, e.g. under pytest).

    ``factory(asynchronous)`` builds one.
    """

    def __init__(self, factory: Callable[[bool], Any]) -> None:
        import weakref

        self._factory = factory
        self._sync: Any = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    def sync(self) -> Any:
        if self._sync is None:
            self._sync = self._factory(False)
        return self._sync

    def for_running_loop(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            client = self._async[loop] = self._factory(True)
        return client

    async def aclose_running(self) -> None:
        """Close the async SDK client of the running loop, if one was made (before the loop ends:
        one closed by the garbage collector after its loop logs "Event loop is closed")."""
        client = self._async.pop(asyncio.get_running_loop(), None)
        close = getattr(client, "close", None)
        if close is not None:
            result = close()
            if asyncio.iscoroutine(result):
                await result


class SDKChatClient(BaseChatClient):
    """Base of a client that calls a provider's SDK. A subclass names its provider (``_provider``,
    as in error messages: ``"openai:<model>"``), returns the SDK's (sync, async) client classes
    from :meth:`_sdk_classes` (importing the SDK there, on first use), and calls :meth:`_connect`
    from its ``__init__``."""

    _provider: ClassVar[str] = ""

    def _connect(self, *, api_key: SecretStr | str | None, key_env: str, base_url: str | None,
                 http_client: Any, async_http_client: Any, timeout: float) -> None:
        """Keep what the SDK clients will be made from (the key as a ``SecretStr``, from
        ``key_env`` when not given; ``None`` when there is none: the subclass decides whether
        that is allowed)."""
        self.base_url = base_url
        self.timeout = float(timeout)
        self._api_key = resolve_key(api_key, key_env)
        self._http_client = http_client
        self._async_http_client = async_http_client
        self._sdk = SDKClients(self._new_sdk_client)

    def _sdk_classes(self) -> tuple[Any, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        where = f", base_url={self.base_url!r}" if self.base_url else ""
        return f"{type(self).__name__}(model={self.model!r}{where})"

    def _key(self) -> str:
        return self._api_key.get_secret_value() if self._api_key is not None else "not-needed"

    def _new_sdk_client(self, asynchronous: bool) -> Any:
        sync_cls, async_cls = self._sdk_classes()
        cls = async_cls if asynchronous else sync_cls
        return cls(
            api_key=self._key(), base_url=self.base_url, timeout=self.timeout, max_retries=0,
            http_client=self._async_http_client if asynchronous else self._http_client,
        )

    def _client(self) -> Any:
        return self._sdk.sync()

    def _aclient(self) -> Any:
        return self._sdk.for_running_loop()

    def _error(self, exc: BaseException) -> BaseException | None:
        return map_provider_error(exc, provider=f"{self._provider}:{self.model}", secrets=[self._key()])

    async def aclose(self) -> None:
        await self._sdk.aclose_running()
