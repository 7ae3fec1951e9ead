"""Online scoring: grade delivered answers in the host process, off the caller's path, as feedback.

``online = router.attach_scorer(scorer, sample_rate=0.2, budget_usd=5.0)``. From then on every
answer the router delivers (``invoke``, ``ainvoke``, a finished ``stream``, and the integrations
that report their answers with :meth:`MixLLMRouter.answered`) is offered to ``online.submit``:

* **Off the caller's path.** ``submit`` does O(1) work and never blocks: a coin flip
  (``sample_rate``), a budget check, and ``put_nowait`` on a bounded queue (``max_queue``). A full
  queue drops the job and counts it (``stats["dropped"]``). Background worker threads
  (``workers``) run the scorer; a slow scorer delays nothing but later scores, and an exception in
  it is counted (``stats["failed"]``), logged, and never reaches the caller.
* **Feedback.** A graded answer (``Score.value`` not ``None``) becomes
  ``router.feedback(decision_id, value)``: journaled and applied exactly like a user's verdict.
  An answer the scorer could not grade is counted (``unscored``), not fed back. A decision is
  rated once, so if the user rated it first the scorer's verdict is refused and counted
  (``feedback_refused``), and vice versa.
* **Budget.** ``budget_usd`` caps what scoring spends (an LLM judge's ``Score.cost_usd``); once
  spent, new jobs are skipped (``over_budget``). The cost of a judgement is known only after it, so
  the jobs already running when the budget runs out can overshoot it.
* **Shadow calls.** With probability ``shadow_rate`` per scored answer, and while
  ``shadow_budget_usd`` lasts (estimated before, counted after), the same messages also go to
  another candidate with a client: the one with the largest uncertainty ``u_l(e)`` in the
  decision, so a new candidate is tried first. Its answer is scored too, and the score becomes
  feedback on a decision recorded for that candidate (id ``<decision_id>:shadow:<name>``). The
  router thus learns about candidates it did not choose, which is how a new candidate earns traffic.
  The call goes through the router's caller (retries, load tracking, the spending guard).

``online.drain(timeout)`` waits until the queue is empty (tests, shutdown); ``online.close()``
stops the workers after the queued jobs, and ``router.detach_scorer(online)`` also unhooks it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from queue import Empty, Full, Queue
from typing import TYPE_CHECKING, Any, Protocol

from .._exceptions import FeedbackError, ScoringError
from ..clients.base import Message
from .base import Score, Scorer

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..candidates import CandidatePool
    from ..clients.base import ChatClient
    from ..clients.fallback import FallbackCaller
    from ..policy.decision import DecisionLog, RoutingDecision

__all__ = ["OnlineScorer", "AnsweredCall", "ScoringHost"]


class ScoringHost(Protocol):
    """What online scoring needs from the router it grades: the pool and clients (shadow calls go
    through ``caller`` with its retries and spending guard), the decision log, and ``feedback``
    (a grade is journaled and applied like a user's verdict)."""

    decisions: DecisionLog

    @property
    def pool(self) -> CandidatePool: ...

    @property
    def clients(self) -> Mapping[str, ChatClient]: ...

    @property
    def caller(self) -> FallbackCaller: ...

    def feedback(self, key: str, score: bool | float, *, output_tokens: int | None = None,
                 latency_s: float | None = None) -> int: ...

logger = logging.getLogger(__name__)

ReferenceFn = Callable[[str], "str | None"]


@dataclass(frozen=True)
class AnsweredCall:
    """One delivered answer, as the router reports it to its listeners."""

    decision: RoutingDecision
    messages: tuple[Message, ...]
    text: str
    candidate: str  # the candidate that answered (after fallbacks)

    @property
    def query(self) -> str:
        return self.decision.query


class OnlineScorer:
    """Scores delivered answers in background threads and feeds the scores back (module docstring)."""

    def __init__(
        self,
        router: ScoringHost,
        scorer: Scorer,
        *,
        sample_rate: float = 1.0,
        budget_usd: float | None = None,
        max_queue: int = 256,
        workers: int = 1,
        shadow_rate: float = 0.0,
        shadow_budget_usd: float | None = None,
        shadow_candidates: Sequence[str] | None = None,
        reference: ReferenceFn | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(scorer, Scorer):
            raise ScoringError(f"scorer must be a mixllm_router.scoring.Scorer, got {type(scorer).__name__}")
        for label, rate in (("sample_rate", sample_rate), ("shadow_rate", shadow_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ScoringError(f"{label} must be in [0, 1], got {rate!r}")
        for label, value in (("budget_usd", budget_usd), ("shadow_budget_usd", shadow_budget_usd)):
            if value is not None and not value >= 0:
                raise ScoringError(f"{label} must be >= 0, got {value!r}")
        if max_queue < 1 or workers < 1:
            raise ScoringError("max_queue and workers must be >= 1")
        if shadow_candidates is not None:
            unknown = [n for n in shadow_candidates if n not in router.pool]
            if unknown:
                raise ScoringError(f"shadow_candidates {unknown} are not in the pool {router.pool.names}")
        self.router, self.scorer = router, scorer
        self.sample_rate, self.budget_usd, self.max_queue = sample_rate, budget_usd, max_queue
        self.shadow_rate, self.shadow_budget_usd = shadow_rate, shadow_budget_usd
        self.shadow_candidates = None if shadow_candidates is None else list(shadow_candidates)
        self.reference = reference
        self._rng = random.Random(seed)
        self._queue: Queue[AnsweredCall | None] = Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._unfinished = 0
        self._closed = False
        self._stats: Counter[str] = Counter()
        self._spent = 0.0
        self._shadow_spent = 0.0
        self._threads = [threading.Thread(target=self._work, name=f"mixllm-scorer-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    # -- the caller's side (must stay cheap and never raise) -----------------------------------
    def submit(self, call: AnsweredCall) -> bool:
        """Offer one delivered answer; True when it was queued. Never blocks, never raises."""
        try:
            with self._lock:
                self._stats["submitted"] += 1
                if self._closed:
                    self._stats["dropped"] += 1
                    return False
                if self._rng.random() >= self.sample_rate:
                    self._stats["sampled_out"] += 1
                    return False
                if self.budget_usd is not None and self._spent >= self.budget_usd:
                    self._stats["over_budget"] += 1
                    return False
                try:
                    self._queue.put_nowait(call)
                except Full:
                    self._stats["dropped"] += 1
                    return False
                self._unfinished += 1
                self._stats["max_queue_seen"] = max(self._stats["max_queue_seen"], self._queue.qsize())
                return True
        except Exception:  # a listener must never break an answer
            logger.exception("online scoring: submit failed")
            return False

    # -- the workers ---------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            call = self._queue.get()
            if call is None:
                return
            try:
                self._process(call)
            except Exception:
                self._failed("a job failed")
            finally:
                with self._idle:
                    self._unfinished -= 1
                    self._idle.notify_all()

    def _count(self, key: str, amount: float = 1) -> None:
        with self._lock:
            self._stats[key] += amount  # type: ignore[assignment]

    def _grade(self, query: str, text: str) -> Score:
        reference = self.reference(query) if self.reference is not None else None
        started = time.perf_counter()
        score = self.scorer.score(query, text, reference)
        with self._lock:
            self._stats["scorer_seconds"] += time.perf_counter() - started  # type: ignore[assignment]
        return score

    def _feed(self, key: str, score: Score, counter: str) -> None:
        if not score.ok:
            self._count("unscored")
            return
        try:
            self.router.feedback(key, score.value)  # type: ignore[arg-type]
        except FeedbackError as exc:  # already rated by the user, expired, candidate removed
            logger.info("online scoring: feedback on %s refused: %s", key, exc)
            self._count("feedback_refused")
            return
        self._count(counter)

    def _failed(self, what: str) -> None:
        """Count a failed job; the first failure is logged with its traceback, later ones at debug
        level (a broken scorer on busy traffic must not flood the host's logs)."""
        with self._lock:
            first = not self._stats["failed"]
            self._stats["failed"] += 1
        if first:
            logger.exception("online scoring: %s (later failures are counted in stats['failed'])", what)
        else:
            logger.debug("online scoring: %s", what, exc_info=True)

    def _process(self, call: AnsweredCall) -> None:
        try:
            score = self._grade(call.query, call.text)
        except Exception:
            self._failed("the scorer raised")
            return
        with self._lock:
            self._spent += score.cost_usd
            self._stats["scored"] += 1
        self._feed(call.decision.decision_id, score, "feedback")
        self._maybe_shadow(call)

    # -- shadow calls --------------------------------------------------------------------------
    def _shadow_target(self, call: AnsweredCall) -> str | None:
        clients = self.router.clients
        allowed = self.shadow_candidates if self.shadow_candidates is not None else list(self.router.pool.names)
        options = [s for s in call.decision.scores
                   if s.name != call.candidate and s.name in clients and s.name in allowed and s.name in self.router.pool]
        if not options:
            return None
        top = max(s.uncertainty for s in options)
        best = [s.name for s in options if s.uncertainty >= top - 1e-12]
        return best[0] if len(best) == 1 else self._rng.choice(best)

    def _maybe_shadow(self, call: AnsweredCall) -> None:
        if self.shadow_rate <= 0 or self._rng.random() >= self.shadow_rate:
            return
        name = self._shadow_target(call)
        if name is None:
            self._count("shadow_no_candidate")
            return
        estimate = call.decision.score_of(name).cost_usd
        with self._lock:
            if self.shadow_budget_usd is not None and self._shadow_spent + estimate > self.shadow_budget_usd:
                self._stats["shadow_over_budget"] += 1
                return
            self._shadow_spent += estimate  # reserved; replaced by the real cost below
        router = self.router
        messages = list(call.messages) or [Message(role="user", content=call.query)]
        try:
            result = router.caller.call([(router.pool.get(name), router.clients[name])], messages,
                                        estimated_costs={name: estimate})
        except Exception as exc:
            with self._lock:
                self._shadow_spent -= estimate
            logger.info("online scoring: shadow call to %s failed: %s", name, exc)
            self._count("shadow_failed")
            return
        key = self._record_shadow(call, name, result)
        try:
            score = self._grade(call.query, result.text)
        except Exception:
            logger.exception("online scoring: the scorer raised on a shadow answer")
            score = Score.failed("the scorer raised")
        with self._lock:
            self._shadow_spent += result.cost_usd - estimate + score.cost_usd
            self._stats["shadow_calls"] += 1
        self._feed(key, score, "shadow_feedback")

    def _record_shadow(self, call: AnsweredCall, name: str, result: Any) -> str:
        """A decision record for the shadow answer, so its feedback teaches ``name``."""
        from ..policy.decision import DecisionRecord

        original = self.router.decisions.get(call.decision.decision_id)
        if original is None:
            raise ScoringError(f"decision {call.decision.decision_id} has expired from the decision log")
        key = f"{call.decision.decision_id}:shadow:{name}"
        self.router.decisions.add(DecisionRecord(
            decision_id=key, chosen=name, embedding=original.embedding, input_tokens=original.input_tokens,
            created_at=time.time(), answered_by=name, output_tokens=result.output_tokens,
            latency_s=result.latency_s, cost_usd=result.cost_usd,
        ))
        return key

    # -- operator's side -----------------------------------------------------------------------
    @property
    def stats(self) -> dict[str, float]:
        """Counters: submitted, sampled_out, over_budget, dropped (queue full), scored, unscored,
        failed, feedback (applied), feedback_refused, shadow_calls, shadow_feedback, shadow_failed,
        shadow_over_budget; spent_usd (scoring), shadow_spent_usd, queued now, max_queue_seen."""
        with self._lock:
            out = {k: float(v) for k, v in self._stats.items()}
            out.update(spent_usd=self._spent, shadow_spent_usd=self._shadow_spent, queued=float(self._queue.qsize()))
        return out

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued job is done; False if ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._unfinished:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float | None = 10.0) -> bool:
        """Finish the queued jobs (up to ``timeout`` seconds), then stop the workers. Idempotent."""
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        finished = self.drain(timeout)
        if not finished:  # drop what is still queued; the running jobs end on their own
            try:
                while True:
                    if self._queue.get_nowait() is not None:
                        with self._idle:
                            self._unfinished -= 1
                            self._stats["dropped"] += 1
            except Empty:
                pass
        for _ in self._threads:
            try:
                self._queue.put_nowait(None)
            except Full:
                break
        return finished
