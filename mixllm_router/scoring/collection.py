"""Collect outcomes: call every candidate on every query, score the answers, write the outcome CSV.

``collect(queries, candidates, scorer, out)`` is the path from a file of your own queries to the
long outcome CSV the router trains on (``README.md`` "Your data"): one row per (query, model) with
``quality`` (the scorer's grade), ``cost`` (the usage the provider reported times the candidate's
prices), ``input_tokens``, ``output_tokens``, ``latency_s`` and ``response``.

* **Concurrency per candidate**: each candidate has its own workers
  (``concurrency`` or ``Candidate.max_concurrency``), so a slow provider does not hold up the
  others.
* **Failures**: each call goes through :class:`~mixllm_router.clients.fallback.FallbackCaller` with that
  candidate alone (429/5xx/timeouts retried with bounded backoff, never answered by another
  model). A call that still fails is recorded as failed, reported, and tried again on the next
  run. Neither a failed call nor a bad query row stops the collection.
* **Spending cap** (``max_spend_usd``): the cap covers everything the results file records,
  earlier runs included, candidates' calls plus the scorer's own cost (an LLM judge). Before each
  call its cost is estimated as ``r_l·(p_in·t_in + p_out·t_out)`` (``t_in`` from the text length,
  ``t_out = max_tokens`` or ``output_tokens_guess``; ``r_l ≥ 1`` the largest ratio of real to
  estimated cost among candidate ``l``'s finished calls). The first call that would take
  ``spent + in flight + estimate`` over the cap stops the run cleanly: calls in flight finish and
  are recorded, no new call starts, the CSV is written, and ``stopped_at_cap`` is set. The cap
  holds as long as the estimates are not below the real cost; before a candidate's first call
  finishes, ``r_l = 1``, so its first concurrent calls can go over by their misestimate. A judge's
  cost is not estimated in advance (it is counted once paid).
* **Resumable**: results are appended to ``<out>.calls.jsonl`` (:mod:`.results`); each finished
  call is fsynced with its key before it counts. A rerun after a crash, SIGKILL or Ctrl-C skips
  every finished key, so no finished call is paid for twice. Answers whose score failed (a
  judge's unparsed reply) are rescored from the stored response, without calling again.
* ``only=[name]`` collects just those candidates, e.g. a new model over logged queries. The CSV
  holds every finished outcome in the results file, so it then has the old and the new rows.
* ``reference_model=name``: that candidate's answer is the reference of every other candidate's
  (for :class:`~mixllm_router.scoring.PairwiseJudge`). It is collected first.
"""

from __future__ import annotations

import asyncio
import csv
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._exceptions import ScoringError
from ..candidates import Candidate
from ..clients.base import ChatClient, Message, estimate_tokens
from ..clients.fallback import FallbackCaller
from .base import Score, Scorer
from .queries import PASSTHROUGH_COLUMNS, QueryItem, QueryProblem, items_from_rows, read_queries
from .results import ResultsFile, call_key

__all__ = ["CollectReport", "collect", "acollect", "results_path_for", "OUTCOME_COLUMNS"]

OUTCOME_COLUMNS = ("query_id", "query", "model", "quality", "cost", "input_tokens", "output_tokens", "latency_s",
                   "response")

CandidatesInput = Sequence[tuple[Candidate | str, ChatClient]] | Mapping[str, ChatClient]
QueriesInput = str | os.PathLike[str] | Sequence[QueryItem | str | Mapping[str, Any]]


def results_path_for(out: str | os.PathLike[str]) -> Path:
    """Where the results (the resumable record of every call) of the CSV ``out`` live."""
    out = Path(out)
    return out.with_name(out.name + ".calls.jsonl")


@dataclass
class CollectReport:
    """What one run of :func:`collect` did. Counts are (query, candidate) pairs."""

    planned: int = 0
    already_done: int = 0
    called: int = 0
    succeeded: int = 0
    failed: int = 0
    rescored: int = 0
    unscored: int = 0
    not_started: int = 0
    in_flight_at_crash: int = 0
    spent_usd: float = 0.0
    scorer_cost_usd: float = 0.0
    total_spent_usd: float = 0.0
    stopped_at_cap: bool = False
    bad_rows: list[QueryProblem] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    rows_written: int = 0
    csv_path: Path | None = None
    results_path: Path | None = None

    def summary(self) -> str:
        lines = [
            f"{self.planned} (query, candidate) pairs: {self.already_done} done before, {self.called} called now "
            f"({self.succeeded} answered, {self.failed} failed), {self.rescored} rescored without a call",
            f"spent ${self.spent_usd:.4f} on calls and ${self.scorer_cost_usd:.4f} on scoring in this run; "
            f"${self.total_spent_usd:.4f} recorded in all",
            f"{self.rows_written} outcome rows written to {self.csv_path}",
        ]
        if self.unscored:
            lines.append(f"{self.unscored} answers could not be scored (kept in {self.results_path}; rescored next run)")
        if self.in_flight_at_crash:
            lines.append(f"{self.in_flight_at_crash} calls were in flight when an earlier run stopped; called again")
        if self.stopped_at_cap:
            lines.append(f"stopped at the spending cap: {self.not_started} calls not started")
        if self.errors:
            lines.append("failed calls: " + ", ".join(f"{k} x{v}" for k, v in self.errors.most_common()))
        if self.bad_rows:
            shown = "; ".join(str(p) for p in self.bad_rows[:5])
            lines.append(f"{len(self.bad_rows)} query rows skipped: {shown}" + (" ..." if len(self.bad_rows) > 5 else ""))
        return "\n".join(lines)


@dataclass
class _Job:
    item: QueryItem
    candidate: Candidate
    client: ChatClient
    key: str
    stored: dict[str, Any] | None = None  # a finished call whose score is to be redone


def _candidates(candidates: CandidatesInput) -> list[tuple[Candidate, ChatClient]]:
    pairs = list(candidates.items()) if isinstance(candidates, Mapping) else list(candidates)
    out: list[tuple[Candidate, ChatClient]] = []
    for entry in pairs:
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise ScoringError(f"candidates must be (Candidate or name, client) pairs, got {entry!r:.80}")
        cand, client = entry
        cand = Candidate(name=cand) if isinstance(cand, str) else cand
        if not isinstance(cand, Candidate) or not hasattr(client, "acomplete"):
            raise ScoringError(f"candidates must be (Candidate or name, client) pairs, got {entry!r:.80}")
        out.append((cand, client))
    names = [c.name for c, _ in out]
    if not out or len(set(names)) != len(names):
        raise ScoringError(f"candidates must be non-empty with distinct names, got {names}")
    return out


def _queries(queries: QueriesInput) -> tuple[list[QueryItem], list[QueryProblem]]:
    if isinstance(queries, (str, os.PathLike)):
        return read_queries(queries)
    if isinstance(queries, Mapping) or not isinstance(queries, Sequence):
        raise ScoringError(f"queries must be a file path or a list, got {type(queries).__name__}")
    rows: list[tuple[int, Any]] = []
    for number, q in enumerate(queries, start=1):
        if isinstance(q, QueryItem):
            q = {"query": q.query, "query_id": q.query_id, "reference": q.reference, **q.extra}
        rows.append((number, {"query": q} if isinstance(q, str) else q))
    return items_from_rows(rows)


class _Collection:
    def __init__(self, items: list[QueryItem], pairs: list[tuple[Candidate, ChatClient]], scorer: Scorer,
                 out: Path, *, only: Sequence[str] | None, max_spend_usd: float | None, reference_model: str | None,
                 concurrency: int | None, generation: dict[str, Any], system_prompt: str | None,
                 caller: FallbackCaller | None, output_tokens_guess: int, fsync: bool, progress: bool) -> None:
        names = [c.name for c, _ in pairs]
        for name in list(only or []) + ([reference_model] if reference_model else []):
            if name not in names:
                raise ScoringError(f"{name!r} is not among the candidates {names}")
        if max_spend_usd is not None and not max_spend_usd >= 0:
            raise ScoringError(f"max_spend_usd must be >= 0, got {max_spend_usd}")
        if concurrency is not None and concurrency < 1:
            raise ScoringError(f"concurrency must be >= 1, got {concurrency}")
        self.items, self.pairs, self.scorer, self.out = items, pairs, scorer, out
        self.only = set(only) if only else None
        self.cap, self.reference_model, self.concurrency = max_spend_usd, reference_model, concurrency
        self.generation, self.system_prompt = generation, system_prompt
        self.settings = {k: v for k, v in {**generation, "system_prompt": system_prompt}.items() if v is not None}
        self.caller = caller or FallbackCaller(max_attempts_per_candidate=5, backoff_max_s=10.0, cooldown_s=0.0)
        self.guess = output_tokens_guess
        self.results = ResultsFile(results_path_for(out), fsync=fsync)
        self.report = CollectReport(csv_path=out, results_path=self.results.path)
        self.progress = progress
        self.reserved = 0.0
        self.ratio: dict[str, float] = {}  # candidate -> largest real / estimated cost so far
        self.stop = False
        self._bar: Any = None

    # -- planning ------------------------------------------------------------------------------
    def _key(self, item: QueryItem, cand: Candidate) -> str:
        return call_key(item.query_id, item.query, cand.name, self.settings)

    def plan(self) -> list[list[_Job]]:
        """The jobs, in phases (the reference model first when there is one)."""
        self.results.load()
        done = self.results.done
        self.report.total_spent_usd = sum(float(r.get("cost") or 0) + float(r.get("scorer_cost_usd") or 0)
                                          for r in done.values())
        phases: list[list[_Job]] = [[], []]
        for cand, client in self.pairs:
            if self.only is not None and cand.name not in self.only and cand.name != self.reference_model:
                continue
            phase = 0 if cand.name == self.reference_model or self.reference_model is None else 1
            for item in self.items:
                key = self._key(item, cand)
                self.report.planned += 1
                record = done.get(key)
                if record is None:
                    self.report.in_flight_at_crash += key in self.results.in_flight
                    phases[phase].append(_Job(item, cand, client, key))
                elif record.get("quality") is None and record.get("response") is not None:
                    phases[phase].append(_Job(item, cand, client, key, stored=record))
                else:
                    self.report.already_done += 1
        return [p for p in phases if p]

    # -- running -------------------------------------------------------------------------------
    def _reference(self, item: QueryItem) -> str | None:
        if self.reference_model is None:
            return item.reference
        cand = next(c for c, _ in self.pairs if c.name == self.reference_model)
        record = self.results.done.get(self._key(item, cand))
        return None if record is None else record.get("response")

    def _messages(self, item: QueryItem) -> list[Message]:
        msgs = [Message(role="user", content=item.query)]
        if self.system_prompt:
            msgs.insert(0, Message(role="system", content=self.system_prompt))
        return msgs

    def _estimate(self, job: _Job) -> float:
        t_in = estimate_tokens(job.item.query) + estimate_tokens(self.system_prompt or "")
        base = job.candidate.call_cost(t_in, self.generation.get("max_tokens") or self.guess)
        return base * self.ratio.get(job.candidate.name, 1.0)

    def _learn_ratio(self, job: _Job, estimate: float, cost: float) -> None:
        """Keep the largest real/estimated cost ratio of each candidate's finished calls (chat
        templates add prompt tokens the text length does not show), so later estimates hold."""
        if estimate > 0 and cost > estimate:
            name = job.candidate.name
            self.ratio[name] = max(self.ratio.get(name, 1.0), self.ratio.get(name, 1.0) * cost / estimate)

    async def _score(self, job: _Job, text: str) -> Score:
        # the reference candidate's own answer is graded against itself (a pairwise judge: a tie)
        reference = text if job.candidate.name == self.reference_model else self._reference(job.item)
        try:
            return await self.scorer.ascore(job.item.query, text, reference)
        except Exception as exc:  # a scorer's bug must not lose the paid answer
            return Score.failed(f"the scorer raised {type(exc).__name__}: {exc}")

    def _done_record(self, job: _Job, score: Score, call: dict[str, Any]) -> dict[str, Any]:
        return {"key": job.key, "status": "done", "query_id": job.item.query_id, "query": job.item.query,
                "model": job.candidate.name, **{c: job.item.extra[c] for c in job.item.extra},
                "quality": score.value, "score_error": score.error,
                "rationale": None if score.rationale is None else score.rationale[:500],
                "scorer_cost_usd": score.cost_usd, **call, "t": time.time()}

    async def _run_job(self, job: _Job) -> None:
        if job.stored is not None:
            stored = job.stored
            score = await self._score(job, str(stored["response"]))
            call = {k: stored.get(k) for k in ("cost", "cost_estimated", "input_tokens", "output_tokens",
                                               "latency_s", "response", "attempts")}
            record = self._done_record(job, score, call)
            # the record replaces the stored one: it keeps the call's cost and adds both scorings'
            record["scorer_cost_usd"] = score.cost_usd + float(stored.get("scorer_cost_usd") or 0.0)
            self.results.append(record, durable=True)
            self.report.rescored += 1
            self._account(0.0, score)
            return
        estimate = self._estimate(job)
        if self.stop or (self.cap is not None and
                         self.report.total_spent_usd + self.reserved + estimate > self.cap):
            self.stop = True
            self.report.stopped_at_cap = self.cap is not None
            self.report.not_started += 1
            return
        self.reserved += estimate
        self.results.append({"key": job.key, "status": "started", "query_id": job.item.query_id,
                             "model": job.candidate.name, "t": time.time()}, durable=False)
        self.report.called += 1
        try:
            result = await self.caller.acall([(job.candidate, job.client)], self._messages(job.item), **self.generation)
        except Exception as exc:  # reported and retried on the next run, never fatal
            self.reserved -= estimate
            self.results.append({"key": job.key, "status": "failed", "query_id": job.item.query_id,
                                 "model": job.candidate.name, "error": f"{type(exc).__name__}: {exc}"[:500],
                                 "t": time.time()}, durable=True)
            self.report.failed += 1
            self.report.errors[type(exc).__name__] += 1
            self._tick()
            return
        # the paid cost stays reserved until it is counted as spent (scoring awaits in between)
        self.reserved += result.cost_usd - estimate
        self._learn_ratio(job, estimate, result.cost_usd)
        self.report.succeeded += 1
        score = await self._score(job, result.text)
        call = {"cost": result.cost_usd, "cost_estimated": result.cost_estimated,
                "input_tokens": result.input_tokens, "output_tokens": result.output_tokens,
                "latency_s": result.latency_s, "response": result.text, "attempts": len(result.attempts)}
        self.results.append(self._done_record(job, score, call), durable=True)
        self.reserved -= result.cost_usd
        self._account(result.cost_usd, score)

    def _account(self, cost: float, score: Score) -> None:
        self.report.spent_usd += cost
        self.report.scorer_cost_usd += score.cost_usd
        self.report.total_spent_usd += cost + score.cost_usd
        self.report.unscored += not score.ok
        self._tick()

    def _tick(self) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix_str(f"spent ${self.report.total_spent_usd:.4f}, failed {self.report.failed}",
                                      refresh=False)

    async def _worker(self, queue: asyncio.Queue[_Job]) -> None:
        while True:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await self._run_job(job)

    async def run(self) -> CollectReport:
        phases = self.plan()
        total = sum(len(p) for p in phases)
        if self.progress and total:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc="collect", unit="call", dynamic_ncols=True)
        try:
            for jobs in phases:
                queues: dict[str, asyncio.Queue[_Job]] = {}
                for job in jobs:
                    queues.setdefault(job.candidate.name, asyncio.Queue()).put_nowait(job)
                workers = []
                for cand, _ in self.pairs:
                    if cand.name in queues:
                        n = self.concurrency or cand.max_concurrency
                        workers += [asyncio.ensure_future(self._worker(queues[cand.name])) for _ in range(n)]
                await asyncio.gather(*workers)
        finally:
            if self._bar is not None:
                self._bar.close()
            for _, client in self.pairs:  # their async connection pools belong to this loop
                aclose = getattr(client, "aclose", None)
                if aclose is not None:
                    try:
                        await aclose()
                    except Exception:  # closing is best effort; the results are already on disk
                        pass
        return self.report

    # -- output --------------------------------------------------------------------------------
    def write_csv(self) -> int:
        """Write every scored outcome the results file holds to ``out`` (atomically); rows written."""
        records = [r for r in self.results.done.values() if r.get("quality") is not None]
        extra = [c for c in PASSTHROUGH_COLUMNS if any(c in r for r in records)]
        columns = [*OUTCOME_COLUMNS, *extra]
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_name(self.out.name + ".tmp")
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for r in records:
                writer.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in columns})
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.out)
        self.report.rows_written = len(records)
        return len(records)


def _build(queries: QueriesInput, candidates: CandidatesInput, scorer: Scorer, out: str | os.PathLike[str],
           kw: dict[str, Any]) -> _Collection:
    if not isinstance(scorer, Scorer):
        raise ScoringError(f"scorer must be a mixllm_router.scoring.Scorer, got {type(scorer).__name__}")
    items, problems = _queries(queries)
    generation = {k: v for k in ("max_tokens", "temperature") if (v := kw.pop(k, None)) is not None}
    collection = _Collection(items, _candidates(candidates), scorer, Path(out), generation=generation, **kw)
    collection.report.bad_rows = problems
    return collection


async def acollect(queries: QueriesInput, candidates: CandidatesInput, scorer: Scorer, out: str | os.PathLike[str],
                   **kw: Any) -> CollectReport:
    """Async :func:`collect` (same arguments)."""
    collection = _build(queries, candidates, scorer, out, dict(_defaults(), **kw))
    try:
        return await collection.run()
    finally:
        collection.write_csv()
        collection.results.close()


def _defaults() -> dict[str, Any]:
    return {"only": None, "max_spend_usd": None, "reference_model": None, "concurrency": None, "max_tokens": None,
            "temperature": None, "system_prompt": None, "caller": None, "output_tokens_guess": 256, "fsync": True,
            "progress": True}


def collect(
    queries: QueriesInput,
    candidates: CandidatesInput,
    scorer: Scorer,
    out: str | os.PathLike[str],
    *,
    only: Sequence[str] | None = None,
    max_spend_usd: float | None = None,
    reference_model: str | None = None,
    concurrency: int | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    system_prompt: str | None = None,
    caller: FallbackCaller | None = None,
    output_tokens_guess: int = 256,
    fsync: bool = True,
    progress: bool = True,
) -> CollectReport:
    """Call every candidate on every query, score each answer, write the outcome CSV ``out``.

    ``queries``: a CSV/JSONL path (:func:`~mixllm_router.scoring.queries.read_queries`) or a list
    of strings, mappings ``{"query", "query_id"?, "reference"?, "task"?, "split"?}`` or
    :class:`QueryItem`. ``candidates``: ``[(Candidate or name, client), ...]`` or
    ``{name: client}``. ``scorer``: any :class:`~mixllm_router.scoring.Scorer`. The rest is
    described in the module docstring. Returns a :class:`CollectReport`; the CSV is written even
    when the run is interrupted (Ctrl-C), from what the results file holds.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise ScoringError("collect() was called inside a running event loop: await acollect(...) instead")
    kw = {"only": only, "max_spend_usd": max_spend_usd, "reference_model": reference_model,
          "concurrency": concurrency, "max_tokens": max_tokens, "temperature": temperature,
          "system_prompt": system_prompt, "caller": caller, "output_tokens_guess": output_tokens_guess,
          "fsync": fsync, "progress": progress}
    collection = _build(queries, candidates, scorer, out, kw)
    try:
        return asyncio.run(collection.run())
    finally:
        collection.write_csv()
        collection.results.close()
