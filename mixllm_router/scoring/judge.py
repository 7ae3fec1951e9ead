"""LLM judges: another model grades the answer, on any of the library's clients.

Two modes, after MT-Bench (Zheng et al., 2023, "Judging LLM-as-a-judge"):

* **Absolute** (:class:`LLMJudge`): single-answer grading. The judge reads the question, the
  answer (and a reference answer when one is given), a rubric, explains, and ends with
  ``Rating: [[r]]``, ``r ∈ {1, …, 10}``. The score is ``(r − 1) / 9`` ∈ [0, 1].
* **Pairwise** (:class:`PairwiseJudge`): the answer against a reference candidate's answer to the
  same question. LLM judges prefer the answer shown first (position bias), so every pair is judged
  twice, once in each order. A verdict is ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie); per order the
  answer gets 1 (win), 0.5 (tie) or 0 (loss), and the score is the mean of the two orders. A judge
  that always picks the first position thus scores 0.5, not 1 or 0.

The prompts are attributes (``system``, ``template``), printed by :meth:`LLMJudge.messages`, and
can be replaced in the constructor. A reply that does not parse, or a judge call that fails, is a
:class:`~mixllm_router.scoring.Score` with ``value=None`` and the reason, counted in
:attr:`stats`; it is never scored 0. The judge's own cost (from the usage its provider reports,
times ``judge_candidate``'s prices) is in ``Score.cost_usd`` and summed in ``stats``, apart from
the cost of the answers it grades. Calls go through :class:`~mixllm_router.clients.fallback.FallbackCaller`
(429/5xx retried with backoff).
"""

from __future__ import annotations

import asyncio
import re
import string
import threading
from collections.abc import Sequence
from typing import Any

from .._exceptions import ClientError, ScoringError
from ..candidates import Candidate
from ..clients.base import ChatClient, Message
from ..clients.fallback import CallResult, FallbackCaller
from .base import Score, Scorer

__all__ = ["LLMJudge", "PairwiseJudge", "DEFAULT_RUBRIC"]

DEFAULT_RUBRIC = (
    "Judge correctness first: an answer with a factual or logical error cannot rate above 4. Then "
    "helpfulness, relevance to the question, depth and clarity. Length is not a merit in itself."
)

ABSOLUTE_SYSTEM = (
    "You are an impartial judge of answers written by an AI assistant. You grade one answer at a "
    "time, against the rubric you are given, and you are not swayed by the answer's length or tone."
)

ABSOLUTE_TEMPLATE = """[Question]
{query}

[Reference answer (known to be correct)]
{reference}

[Answer to grade]
{response}

[Rubric]
{rubric}

Explain your assessment in a few sentences, then rate the answer from 1 (useless) to 10 (perfect) on the last line, in exactly this form: Rating: [[N]]"""

PAIRWISE_SYSTEM = (
    "You are an impartial judge comparing two answers written by AI assistants to the same question. "
    "The order in which the answers are shown says nothing about their quality, and neither does their length."
)

PAIRWISE_TEMPLATE = """[Question]
{query}

[Answer A]
{answer_a}

[Answer B]
{answer_b}

[Rubric]
{rubric}

Compare the two answers in a few sentences, then give your verdict on the last line, in exactly this form: [[A]] if A is better, [[B]] if B is better, [[C]] for a tie."""

_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")


def _placeholders(template: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ScoringError(f"the judge template does not parse as a format string: {exc}") from None


def _strip_reference_block(template: str) -> str:
    """The absolute template without its reference block (used when no reference is given)."""
    return re.sub(r"\[Reference answer[^\]]*\]\n\{reference\}\n\n", "", template)


class _JudgeBase(Scorer):
    def __init__(self, client: ChatClient, *, judge_candidate: Candidate | None, caller: FallbackCaller | None,
                 rubric: str, system: str, template: str, allowed: set[str], required: set[str],
                 max_tokens: int, temperature: float | None, name: str) -> None:
        if not hasattr(client, "complete"):
            raise ScoringError(f"the judge needs a ChatClient, got {type(client).__name__}")
        found = _placeholders(template)
        if not required <= found or not found <= allowed:
            raise ScoringError(f"the judge template must use {sorted(required)} and only {sorted(allowed)}; "
                               f"it uses {sorted(found)}")
        self.client = client
        self.candidate = judge_candidate or Candidate(name=f"judge:{getattr(client, 'model', 'llm') or 'llm'}")
        self.caller = caller or FallbackCaller()
        self.rubric, self.system, self.template = rubric, system, template
        self.max_tokens, self.temperature, self.name = max_tokens, temperature, name
        self._lock = threading.Lock()
        self._stats = {"graded": 0, "parse_failures": 0, "call_failures": 0, "calls": 0, "cost_usd": 0.0,
                       "input_tokens": 0, "output_tokens": 0}

    @property
    def stats(self) -> dict[str, float]:
        """Judgements graded, replies that did not parse, failed calls, calls made, their cost (USD)
        and tokens. Thread-safe snapshot."""
        with self._lock:
            return dict(self._stats)

    def _count(self, key: str, amount: float = 1) -> None:
        with self._lock:
            self._stats[key] += amount

    def _account(self, result: CallResult) -> None:
        with self._lock:
            self._stats["calls"] += 1
            self._stats["cost_usd"] += result.cost_usd
            self._stats["input_tokens"] += result.input_tokens
            self._stats["output_tokens"] += result.output_tokens

    def _gen(self) -> dict[str, Any]:
        gen: dict[str, Any] = {"max_tokens": self.max_tokens}
        if self.temperature is not None:
            gen["temperature"] = self.temperature
        return gen

    def _call(self, messages: list[Message]) -> CallResult | str:
        try:
            result = self.caller.call([(self.candidate, self.client)], messages, **self._gen())
        except ClientError as exc:
            self._count("call_failures")
            return f"the judge call failed: {exc}"
        self._account(result)
        return result

    async def _acall(self, messages: list[Message]) -> CallResult | str:
        try:
            result = await self.caller.acall([(self.candidate, self.client)], messages, **self._gen())
        except ClientError as exc:
            self._count("call_failures")
            return f"the judge call failed: {exc}"
        self._account(result)
        return result

    def _chat(self, user: str) -> list[Message]:
        return [Message(role="system", content=self.system), Message(role="user", content=user)]


class LLMJudge(_JudgeBase):
    """Absolute 1–10 grading with a rubric, mapped to ``(r − 1)/9``. See the module docstring.

    ``client``: any library client (``OpenAIClient``, ``AnthropicClient``, ``LangChainClient``,
    ``LlamaIndexClient``, ``CallableClient``). ``judge_candidate``: the judge's prices (USD per
    million tokens) for cost accounting (default: free, cost 0). ``template`` may use ``{query}``,
    ``{response}``, ``{rubric}`` and ``{reference}``; without a reference the default template's
    reference block is left out.
    """

    def __init__(self, client: ChatClient, *, rubric: str = DEFAULT_RUBRIC, judge_candidate: Candidate | None = None,
                 system: str = ABSOLUTE_SYSTEM, template: str = ABSOLUTE_TEMPLATE, max_tokens: int = 512,
                 temperature: float | None = 0.0, caller: FallbackCaller | None = None,
                 name: str = "llm_judge") -> None:
        super().__init__(client, judge_candidate=judge_candidate, caller=caller, rubric=rubric, system=system,
                         template=template, allowed={"query", "response", "rubric", "reference"},
                         required={"query", "response"}, max_tokens=max_tokens, temperature=temperature, name=name)

    def messages(self, query: str, response: str, reference: str | None = None) -> list[Message]:
        """The exact chat the judge is sent (system turn, then the filled template)."""
        template = self.template if reference is not None else _strip_reference_block(self.template)
        if reference is None and "{reference}" in template:
            raise ScoringError("this judge template uses {reference}, and no reference was given")
        fields = {"query": query, "response": response, "rubric": self.rubric, "reference": reference or ""}
        return self._chat(template.format(**fields))

    def parse(self, reply: str) -> tuple[float | None, str | None]:
        """``(rating, None)`` or ``(None, reason)``; the last ``[[r]]`` in the reply counts."""
        found = _RATING.findall(reply or "")
        if not found:
            return None, f"no [[rating]] in the judge's reply: {str(reply)[-120:]!r}"
        rating = float(found[-1])
        if not 1 <= rating <= 10:
            return None, f"the judge's rating {rating:g} is outside 1-10"
        return rating, None

    def _grade(self, result: CallResult | str) -> Score:
        if isinstance(result, str):
            return Score.failed(result)
        rating, reason = self.parse(result.text)
        if rating is None:
            self._count("parse_failures")
            return Score.failed(reason or "unparsed", cost_usd=result.cost_usd, reply=result.text)
        self._count("graded")
        return Score((rating - 1) / 9, rationale=result.text.strip(), cost_usd=result.cost_usd,
                     details={"rating": rating})

    def score(self, query: str, response: str, reference: str | None = None) -> Score:
        return self._grade(self._call(self.messages(query, response, reference)))

    async def ascore(self, query: str, response: str, reference: str | None = None) -> Score:
        return self._grade(await self._acall(self.messages(query, response, reference)))


class PairwiseJudge(_JudgeBase):
    """The response against ``reference`` (a reference candidate's answer), judged in both orders.

    Per order: win 1, tie 0.5, loss 0; the score is their mean. ``details`` holds both verdicts and
    whether they agree (``consistent``). If either order's reply does not parse or its call fails
    the pair is not graded (``value=None``): half a judgement is the biased one. ``template`` uses
    ``{query}``, ``{answer_a}``, ``{answer_b}`` and optionally ``{rubric}``.
    """

    needs_reference = True

    def __init__(self, client: ChatClient, *, rubric: str = DEFAULT_RUBRIC, judge_candidate: Candidate | None = None,
                 system: str = PAIRWISE_SYSTEM, template: str = PAIRWISE_TEMPLATE, max_tokens: int = 512,
                 temperature: float | None = 0.0, caller: FallbackCaller | None = None,
                 name: str = "pairwise_judge") -> None:
        super().__init__(client, judge_candidate=judge_candidate, caller=caller, rubric=rubric, system=system,
                         template=template, allowed={"query", "answer_a", "answer_b", "rubric"},
                         required={"query", "answer_a", "answer_b"}, max_tokens=max_tokens,
                         temperature=temperature, name=name)

    def messages(self, query: str, answer_a: str, answer_b: str) -> list[Message]:
        """The chat for one order (``answer_a`` shown first)."""
        return self._chat(self.template.format(query=query, answer_a=answer_a, answer_b=answer_b, rubric=self.rubric))

    def orders(self, query: str, response: str, reference: str) -> Sequence[list[Message]]:
        """Both chats: the response first, then the reference first."""
        return self.messages(query, response, reference), self.messages(query, reference, response)

    @staticmethod
    def parse(reply: str) -> str | None:
        """``"A"``, ``"B"``, ``"C"`` (tie), or ``None``; the last ``[[X]]`` in the reply counts."""
        found = _VERDICT.findall(reply or "")
        return found[-1] if found else None

    def _grade(self, first: CallResult | str, second: CallResult | str) -> Score:
        cost = sum(r.cost_usd for r in (first, second) if not isinstance(r, str))
        for r in (first, second):
            if isinstance(r, str):
                return Score.failed(r, cost_usd=cost)
        assert not isinstance(first, str) and not isinstance(second, str)
        v1, v2 = self.parse(first.text), self.parse(second.text)
        if v1 is None or v2 is None:
            self._count("parse_failures")
            which = "first" if v1 is None else "second"
            reply = first.text if v1 is None else second.text
            return Score.failed(f"no [[A]]/[[B]]/[[C]] verdict in the {which} order's reply: {reply[-120:]!r}",
                                cost_usd=cost, replies=[first.text, second.text])
        win1 = {"A": 1.0, "C": 0.5, "B": 0.0}[v1]  # response shown as A
        win2 = {"B": 1.0, "C": 0.5, "A": 0.0}[v2]  # response shown as B
        self._count("graded")
        return Score((win1 + win2) / 2, rationale=f"response first: [[{v1}]]; response second: [[{v2}]]",
                     cost_usd=cost, details={"verdicts": (v1, v2), "consistent": win1 == win2,
                                             "replies": (first.text, second.text)})

    def score(self, query: str, response: str, reference: str | None = None) -> Score:
        missing = self._missing_reference(reference)
        if missing is not None:
            return missing
        a, b = self.orders(query, response, str(reference))
        return self._grade(self._call(a), self._call(b))

    async def ascore(self, query: str, response: str, reference: str | None = None) -> Score:
        missing = self._missing_reference(reference)
        if missing is not None:
            return missing
        a, b = self.orders(query, response, str(reference))
        first, second = await asyncio.gather(self._acall(a), self._acall(b))
        return self._grade(first, second)
