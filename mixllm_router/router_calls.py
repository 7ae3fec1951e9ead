"""The call stage of :class:`~mixllm_router.MixLLMRouter`: clients, ``invoke`` / ``stream`` (sync and
async), and the listeners told of each delivered answer (online scoring).

Every path is route → rank the candidates that can serve the call (``responses.prepare_call``) →
the fallback caller (retries, cooldowns, spending guard) → the answer with its decision
(``responses.RoutedResponse``). Sync and async differ only in how the caller is awaited.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._router_parts import RouterParts
from ._validate import candidate_names

if TYPE_CHECKING:
    from .candidates import Candidate
    from .clients.base import ChatClient
    from .clients.fallback import FallbackCaller
    from .policy.decision import RoutingDecision
    from .responses import RoutedResponse, RoutedStream

__all__ = ["CallingMixin"]


class CallingMixin(RouterParts):
    """Methods of :class:`~mixllm_router.MixLLMRouter` that call candidates; see that class."""


    # ------------------------------------------------------------------------------ calling
    def set_client(self, name: str, client: ChatClient) -> None:
        """Say how to call candidate ``name``; its calls then feed the load tracker.

        Metadata the candidate does not know yet (``Candidate.unknown``: tool support, context
        window) is taken from the client where it can tell (:func:`~mixllm_router.clients.hints.client_metadata`).
        """
        from .clients.hints import client_metadata
        from .clients.tracking import TrackedClient

        cand = self.pool.get(name)  # unknown name -> UnknownCandidateError
        hints = {k: v for k, v in client_metadata(client).items() if k in cand.unknown}
        if hints:
            with self.learning.lock:
                self.pool.replace(cand.updated(**hints))
        self._track(name)
        self._clients[name] = TrackedClient(client, self.load_tracker, name)

    def update_candidate(self, name: str, **fields: Any) -> Candidate:
        """Change a candidate's metadata (prices, ``context_window``, ``max_concurrency``,
        ``supports_tools``) without retraining; returns the updated :class:`Candidate`.

        Kept in checkpoints. New prices change the predicted cost at once for candidates whose
        cost is predicted from output tokens (``cost_mode="tokens"``) and every call's accounted
        cost; a new ``max_concurrency`` goes to the load tracker. Raises :class:`ConfigError` for
        a bad field or value and :class:`UnknownCandidateError` for an unknown name; nothing
        changes then.
        """
        with self.learning.lock:  # a route sees the old metadata or the new, never half
            cand = self.pool.replace(self.pool.get(name).updated(**fields))
            if "max_concurrency" in fields and name in self.load_tracker:
                self.load_tracker.set_max_concurrency(name, cand.max_concurrency)
        return cand

    @property
    def caller(self) -> FallbackCaller:
        if self._caller is None:
            from .clients.fallback import FallbackCaller

            self._caller = FallbackCaller()
        return self._caller

    def callable_candidates(self, tools: Sequence[Any] | None, candidates: Sequence[str] | None) -> list[str]:
        """The candidates (of ``candidates``, default all) that have a client and, when ``tools`` are
        given, support tools; :class:`ClientError` when none does."""
        candidates = candidate_names(candidates)
        names = [n for n in (candidates if candidates is not None else self.pool.names) if n in self._clients]
        if tools:
            names = [n for n in names if self.pool.get(n).supports_tools and self._clients[n].supports_tools]
        if not names:
            from ._exceptions import ClientError

            need = " that support tools" if tools else ""
            raise ClientError(f"no candidate{need} has a client: attach them with set_client(name, client)")
        return names

    def invoke(
        self,
        messages: Any,
        *,
        tools: Sequence[Any] | None = None,
        cost_weight: float | None = None,
        cost_share: float | None = None,
        max_cost_usd: float | None = None,
        candidates: Sequence[str] | None = None,
        **generation: Any,
    ) -> RoutedResponse:
        """Route ``messages`` (a string or chat turns), call the chosen candidate, fall back on failure.

        Returns the answer with the decision, token usage, actual cost and latency. ``generation``:
        ``max_tokens``, ``temperature``, ``stop``, ``timeout``.
        """
        from .responses import RoutedResponse, prepare_call

        msgs, decision, ranked, costs = prepare_call(self, messages, tools, cost_weight, cost_share, max_cost_usd, candidates)
        result = self.caller.call(ranked, msgs, tools=tools, estimated_costs=costs, **generation)
        return RoutedResponse.build(self, decision, result, msgs)

    async def ainvoke(
        self,
        messages: Any,
        *,
        tools: Sequence[Any] | None = None,
        cost_weight: float | None = None,
        cost_share: float | None = None,
        max_cost_usd: float | None = None,
        candidates: Sequence[str] | None = None,
        **generation: Any,
    ) -> RoutedResponse:
        """Async :meth:`invoke`; encoding runs in a worker thread so the event loop never blocks."""
        import asyncio

        from .responses import RoutedResponse, prepare_call

        msgs, decision, ranked, costs = await asyncio.to_thread(
            prepare_call, self, messages, tools, cost_weight, cost_share, max_cost_usd, candidates
        )
        result = await self.caller.acall(ranked, msgs, tools=tools, estimated_costs=costs, **generation)
        return RoutedResponse.build(self, decision, result, msgs)

    def stream(
        self,
        messages: Any,
        *,
        tools: Sequence[Any] | None = None,
        cost_weight: float | None = None,
        cost_share: float | None = None,
        max_cost_usd: float | None = None,
        candidates: Sequence[str] | None = None,
        **generation: Any,
    ) -> RoutedStream:
        """Route, then stream the answer; falls back only before the first token."""
        from .responses import RoutedStream, prepare_call

        msgs, decision, ranked, costs = prepare_call(self, messages, tools, cost_weight, cost_share, max_cost_usd, candidates)
        return RoutedStream(self, decision, self.caller.stream(ranked, msgs, tools=tools, estimated_costs=costs, **generation),
                            msgs)

    async def astream(
        self,
        messages: Any,
        *,
        tools: Sequence[Any] | None = None,
        cost_weight: float | None = None,
        cost_share: float | None = None,
        max_cost_usd: float | None = None,
        candidates: Sequence[str] | None = None,
        **generation: Any,
    ) -> RoutedStream:
        """Async :meth:`stream`: ``async for chunk in await router.astream(...)``."""
        import asyncio

        from .responses import RoutedStream, prepare_call

        msgs, decision, ranked, costs = await asyncio.to_thread(
            prepare_call, self, messages, tools, cost_weight, cost_share, max_cost_usd, candidates
        )
        return RoutedStream(self, decision, self.caller.astream(ranked, msgs, tools=tools, estimated_costs=costs, **generation),
                            msgs)

    # ------------------------------------------------------------------------------ online scoring
    def answered(self, decision: RoutingDecision, text: str, candidate: str | None = None,
                 messages: Sequence[Any] | None = None) -> None:
        """Report a delivered answer to the listeners (``attach_scorer``). ``invoke``, ``ainvoke``
        and ``stream`` call it; an integration that calls the candidate itself calls it too. Cheap,
        never raises: a listener's error is logged."""
        if not self.answer_listeners:
            return
        from .clients.base import normalize_messages
        from .scoring.online import AnsweredCall

        try:
            msgs = tuple(normalize_messages(messages)) if messages else ()
            call = AnsweredCall(decision, msgs, text, candidate or decision.chosen)
        except Exception:
            logging.getLogger("mixllm_router.router").exception("answered(): bad arguments; no listener called")
            return
        for listener in list(self.answer_listeners):
            try:
                listener(call)
            except Exception:
                logging.getLogger("mixllm_router.router").exception("an answer listener failed")

    def attach_scorer(self, scorer: Any, **options: Any) -> Any:
        """Grade delivered answers in the background and feed the grades back as feedback.

        Returns the :class:`~mixllm_router.scoring.online.OnlineScorer` (``stats``, ``drain``,
        ``close``); ``options``: ``sample_rate``, ``budget_usd``, ``max_queue``, ``workers``,
        ``shadow_rate``, ``shadow_budget_usd``, ``shadow_candidates``, ``reference``, ``seed``.
        See ``docs/scoring.md``.
        """
        from .scoring.online import OnlineScorer

        online = OnlineScorer(self, scorer, **options)
        self.answer_listeners.append(online.submit)
        return online

    def detach_scorer(self, online: Any, *, timeout: float | None = 10.0) -> None:
        """Stop offering answers to ``online`` and close it (its queued jobs finish first)."""
        self.answer_listeners = [f for f in self.answer_listeners if getattr(f, "__self__", None) is not online]
        online.close(timeout)

