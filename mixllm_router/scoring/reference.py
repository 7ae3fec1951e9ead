"""Rule-based scorers: exact match, multiple-choice option, final number, regex, JSON schema, a function.

Each grades 0 or 1 (a function may grade anything in [0, 1]) and says why in ``rationale``.
Reference-based scorers grade ``None`` (with the reason) when no reference is given, because a 0
would teach the router that the candidate was wrong when nobody knew.

Normalisation, where answers are compared as text (SQuAD's rule): lower case, punctuation
removed, the articles *a*, *an*, *the* removed, whitespace collapsed.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import re
import string
from collections.abc import Callable, Sequence
from typing import Any

from .._exceptions import ScoringError
from .base import Score, Scorer, as_score

__all__ = [
    "ExactMatch",
    "MultipleChoice",
    "NumericAnswer",
    "RegexMatch",
    "JSONSchemaValid",
    "FunctionScorer",
    "normalize_text",
    "extract_option",
    "extract_number",
    "option_labels",
]

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_text(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces."""
    text = _PUNCT.sub(" ", str(text).lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


class ExactMatch(Scorer):
    """1 when the normalised response equals the normalised reference (or, with ``contains=True``,
    when the normalised reference occurs in the normalised response as whole words). A reference
    that normalises to nothing (``"A"``, an article) is compared lower-cased and stripped instead,
    so ``"A"`` never equals ``"The"``."""

    needs_reference = True

    def __init__(self, *, contains: bool = False, name: str | None = None) -> None:
        self.contains = contains
        self.name = name or ("contains" if contains else "exact_match")

    def score(self, query: str, response: str, reference: str | None = None) -> Score:
        missing = self._missing_reference(reference)
        if missing is not None:
            return missing
        got, want = normalize_text(response), normalize_text(str(reference))
        if not want:  # the reference is only an article or punctuation ("A", "-"): compare the stripped texts
            got, want = str(response).strip().lower(), str(reference).strip().lower()
        hit = f" {want} " in f" {got} " if self.contains else got == want
        return Score(1.0 if hit else 0.0, rationale=f"normalised response {got[:80]!r} vs reference {want[:80]!r}")


# ------------------------------------------------------------------------------ multiple choice
_OPTION_LINE = re.compile(r"^\s*\(?([A-Za-z]|\d{1,2})[\).:]\s+\S", re.MULTILINE)


def option_labels(query: str) -> tuple[str, ...]:
    """The option labels of the *last* question in ``query``: the last run of lines that start
    with ``A)``, ``B.``, ``(C)``, ``1)`` ... in sequence. Few-shot prompts hold several questions;
    the one being asked is the last. Empty when no option lines are found."""
    runs: list[list[str]] = []
    for match in _OPTION_LINE.finditer(query):
        label = match.group(1).upper()
        if runs and _follows(runs[-1][-1], label):
            runs[-1].append(label)
        else:
            runs.append([label])
    runs = [r for r in runs if len(r) >= 2]
    return tuple(runs[-1]) if runs else ()


def _follows(prev: str, label: str) -> bool:
    if prev.isdigit() and label.isdigit():
        return int(label) == int(prev) + 1
    return len(prev) == 1 and len(label) == 1 and ord(label) == ord(prev) + 1


def extract_option(text: str, labels: Sequence[str], *, numbers_for_letters: bool = True) -> str | None:
    """The option a response chose, as one of ``labels``, or ``None`` when it names none.

    In order: an explicit statement (``answer is B``, ``Answer: (B)``, ``[[B]]``); a response that
    *starts* with a label followed by nothing, white space or ``) . : ,`` (``"B"``, ``"B) house"``,
    ``"(B)"``); one label in parentheses or followed by ``)`` anywhere, when only one such label
    appears. With letter labels and ``numbers_for_letters``, a response that is just the number
    ``n`` (1 ≤ n ≤ number of options) chooses the n-th label. Labels are matched case-sensitively
    for letters (a lower-case ``a`` is an article, not option A) once the text is stripped.
    """
    labels = [str(label).upper() for label in labels]
    if not labels:
        return None
    alt = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    s = str(text).strip().strip("*`'\"").strip()
    if not s:
        return None
    explicit = re.search(rf"(?:answer|choice|option)\s*(?:is|:|=)?\s*[\(\[]?\s*({alt})\s*[\)\]]?(?![A-Za-z0-9])",
                         s, re.IGNORECASE)
    if explicit is None:
        explicit = re.search(rf"\[\[\s*({alt})\s*\]\]", s)
    if explicit is not None:
        found = explicit.group(1).upper()
        if found in labels:
            return found
    lead = re.match(rf"[\(\[]?\s*({alt})\s*(?:$|[\s\).:,\]])", s)
    if lead is not None:
        return lead.group(1)
    marked = set(re.findall(rf"\(({alt})\)|(?<![A-Za-z0-9])({alt})\)", s))
    chosen = {a or b for a, b in marked}
    if len(chosen) == 1:
        return chosen.pop()
    if numbers_for_letters and labels[0].isalpha() and re.fullmatch(r"\d{1,2}", s):
        n = int(s)
        if 1 <= n <= len(labels):
            return labels[n - 1]
    return None


class MultipleChoice(Scorer):
    """1 when the option the response chose equals the reference option.

    ``labels``: the option labels (``"ABCD"``, ``["1", "2", "3"]``); ``None`` reads them from the
    query's option lines (:func:`option_labels`), falling back to ``A``–``E``. The reference may be
    a label (``"B"``) or a whole correct answer (``"B) house"``, another model's graded answer);
    the option is extracted from it the same way. A response that names no option scores 0 (the
    model did not answer the question), with the rationale saying so.
    """

    needs_reference = True

    def __init__(self, labels: Sequence[str] | str | None = None, *, numbers_for_letters: bool = True,
                 name: str = "multiple_choice") -> None:
        if labels is not None:
            labels = [str(x).strip().upper() for x in labels]
            if len(labels) < 2 or len(set(labels)) != len(labels) or not all(labels):
                raise ScoringError(f"labels must be two or more distinct non-empty labels, got {labels!r}")
        self.labels = tuple(labels) if labels is not None else None
        self.numbers_for_letters = numbers_for_letters
        self.name = name

    def labels_for(self, query: str) -> tuple[str, ...]:
        return self.labels or option_labels(query) or tuple("ABCDE")

    def score(self, query: str, response: str, reference: str | None = None) -> Score:
        missing = self._missing_reference(reference)
        if missing is not None:
            return missing
        labels = self.labels_for(query)
        want = extract_option(str(reference), labels, numbers_for_letters=self.numbers_for_letters)
        if want is None:
            return Score.failed(f"the reference {str(reference)[:40]!r} names none of the options {''.join(labels)}")
        got = extract_option(response, labels, numbers_for_letters=self.numbers_for_letters)
        if got is None:
            return Score(0.0, rationale=f"the response names none of the options {'/'.join(labels)}",
                         details={"chosen": None, "reference": want})
        return Score(1.0 if got == want else 0.0, rationale=f"chose {got}, reference {want}",
                     details={"chosen": got, "reference": want})


# ------------------------------------------------------------------------------ numbers
_NUMBER = r"-?\$?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+"


def _to_float(raw: str) -> float | None:
    cleaned = raw.replace(",", "").replace("$", "").replace(" ", "")
    try:
        return float(cleaned)
    except ValueError:
        return None


def extract_number(text: str) -> float | None:
    """The final numeric answer of a response or a GSM8K reference.

    In order: the number after the last ``####``; inside the last ``\\boxed{…}``; after the last
    "answer is" / "answer:"; else the last number in the text. Thousands separators and ``$`` are
    dropped.
    """
    s = str(text)
    for pattern in (rf"####\s*({_NUMBER})", rf"\\boxed\{{\s*({_NUMBER})", rf"answer\s*(?:is|:)\s*\**\s*({_NUMBER})"):
        found = re.findall(pattern, s, re.IGNORECASE)
        if found:
            return _to_float(found[-1])
    found = re.findall(_NUMBER, s)
    return _to_float(found[-1]) if found else None


class NumericAnswer(Scorer):
    """1 when the response's final number equals the reference's (GSM8K style), within
    ``|a − b| ≤ abs_tol + rel_tol·|b|``."""

    needs_reference = True

    def __init__(self, *, rel_tol: float = 1e-6, abs_tol: float = 1e-6, name: str = "numeric_answer") -> None:
        if rel_tol < 0 or abs_tol < 0:
            raise ScoringError("tolerances must be >= 0")
        self.rel_tol, self.abs_tol, self.name = rel_tol, abs_tol, name

    def score(self, query: str, response: str, reference: str | None = None) -> Score:
        missing = self._missing_reference(reference)
        if missing is not None:
            return missing
        want = extract_number(str(reference))
        if want is None:
            return Score.failed(f"the reference {str(reference)[:40]!r} holds no number")
        got = extract_number(response)
        if got is None:
            return Score(0.0, rationale="the response holds no number", details={"answer": None, "reference": want})
        hit = math.isclose(got, want, rel_tol=self.rel_tol, abs_tol=self.abs_tol)
        return Score(1.0 if hit else 0.0, rationale=f"answer {got:g}, reference {want:g}",
                     details={"answer": got, "reference": want})


# ------------------------------------------------------------------------------ regex
class RegexMatch(Scorer):
    """1 when ``pattern`` is found in the response (``re.search``; ``fullmatch=True`` for the
    whole stripped response). ``{reference}`` in the pattern is replaced by the escaped reference,
    so ``r"\\b{reference}\\b"`` checks that the answer is mentioned."""

    def __init__(self, pattern: str, *, flags: int = 0, fullmatch: bool = False, name: str = "regex") -> None:
        self.pattern, self.flags, self.fullmatch, self.name = pattern, flags, fullmatch, name
        self.needs_reference = "{reference}" in pattern
        try:
            re.compile(pattern.replace("{reference}", "x"), flags)
        except re.error as exc:
            raise ScoringError(f"invalid regex {pattern!r}: {exc}") from None

    def score(self, query: str, response: str, reference: str | None = None) -> Score:
        missing = self._missing_reference(reference)
        if missing is not None:
            return missing
        pattern = self.pattern.replace("{reference}", re.escape(str(reference).strip())) if self.needs_reference \
            else self.pattern
        text = str(response).strip() if self.fullmatch else str(response)
        match = (re.fullmatch if self.fullmatch else re.search)(pattern, text, self.flags)
        return Score(1.0 if match else 0.0, rationale=f"matched {match.group(0)[:60]!r}" if match else "no match")


# ------------------------------------------------------------------------------ JSON schema
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL | re.IGNORECASE)


class JSONSchemaValid(Scorer):
    """1 when the response is JSON (a surrounding Markdown code fence is allowed) that validates
    against ``schema`` (JSON Schema, checked with the ``jsonschema`` package, extra ``scoring``)."""

    def __init__(self, schema: dict[str, Any], *, name: str = "json_schema") -> None:
        try:
            import jsonschema
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ScoringError("JSONSchemaValid needs the jsonschema package: pip install 'mixllm-router[scoring]'") \
                from exc
        if not isinstance(schema, dict):
            raise ScoringError(f"schema must be a dict (a JSON Schema), got {type(schema).__name__}")
        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except jsonschema.exceptions.SchemaError as exc:
            raise ScoringError(f"invalid JSON Schema: {exc.message}") from None
        self.schema, self.name = schema, name
        self._validator = cls(schema)

    def score(self, query: str, response: str, reference: str | None = None) -> Score:
        text = str(response).strip()
        fenced = _FENCE.match(text)
        if fenced is not None:
            text = fenced.group(1)
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            return Score(0.0, rationale=f"not JSON: {exc}")
        errors = sorted(self._validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "(root)"
            return Score(0.0, rationale=f"{len(errors)} schema error(s); at {where}: {errors[0].message}")
        return Score(1.0, rationale="valid")


# ------------------------------------------------------------------------------ a function
class FunctionScorer(Scorer):
    """A user function ``fn(query, response, reference) -> Score | bool | float | (float, rationale) | None``,
    sync or ``async def``. ``None`` means "could not grade". An exception inside ``fn`` is not
    caught here: online scoring counts it as a failed job, collection records it against the row."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, needs_reference: bool = False) -> None:
        if not callable(fn):
            raise ScoringError(f"FunctionScorer needs a callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = name or str(getattr(fn, "__name__", "function"))
        self.needs_reference = needs_reference
        self._is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)

    def score(self, query: str, response: str, reference: str | None = None) -> Score:
        missing = self._missing_reference(reference)
        if missing is not None:
            return missing
        if self._is_async:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return as_score(asyncio.run(self.fn(query, response, reference)))
            raise ScoringError(f"{self.name!r} is an async function: use ascore() inside an event loop")
        return as_score(self.fn(query, response, reference))

    async def ascore(self, query: str, response: str, reference: str | None = None) -> Score:
        missing = self._missing_reference(reference)
        if missing is not None:
            return missing
        if self._is_async:
            return as_score(await self.fn(query, response, reference))
        return as_score(await asyncio.to_thread(self.fn, query, response, reference))
