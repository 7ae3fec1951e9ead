"""Rule-based scorers: what each grades 1, 0, or leaves ungraded, and the errors for bad settings."""

from __future__ import annotations

import asyncio

import pytest

from mixllm_router import ScoringError
from mixllm_router.scoring import (
    ExactMatch,
    FunctionScorer,
    JSONSchemaValid,
    MultipleChoice,
    NumericAnswer,
    RegexMatch,
    Score,
    as_score,
    extract_number,
    extract_option,
    option_labels,
)

ARC = """Which gas do plants take in?
A) oxygen
B) carbon dioxide
C) nitrogen
D) helium
Answer:
B

What is the mass of a carbon atom that has 6 protons, 7 neutrons, and 6 electrons?
A) 19
B) 7
C) 13
D) 6
Print only a single choice from "A" or "B" or "C" or "D" without explanation.
Answer:"""

WINO = """He never comes to my home, but I always go to his house because the _ is bigger.
A) home
B) house
Answer: B

Jeffrey asked Hunter when was the date set for the wedding because _ was his best man.
A) Jeffrey
B) Hunter
Answer:"""


def test_score_validates_its_value():
    assert Score(True).value == 1.0
    assert Score(0.25).ok
    for bad in (1.5, -0.1, float("nan"), "x"):
        with pytest.raises(ScoringError):
            Score(bad)
    with pytest.raises(ScoringError, match="needs an error"):
        Score(None)
    failed = Score.failed("no verdict")
    assert not failed.ok and failed.error == "no verdict"


def test_as_score_accepts_the_documented_shapes():
    assert as_score(True).value == 1.0
    assert as_score(0.5).value == 0.5
    assert as_score((0.7, "close")).rationale == "close"
    assert as_score(None).error
    with pytest.raises(ScoringError):
        as_score("good")


@pytest.mark.parametrize(("response", "reference", "value"), [
    ("The Eiffel Tower.", "eiffel tower", 1.0),
    ("  PARIS ", "Paris", 1.0),
    ("Paris, France", "Paris", 0.0),
])
def test_exact_match(response, reference, value):
    assert ExactMatch().score("q", response, reference).value == value


def test_exact_match_a_reference_that_is_only_an_article():
    assert ExactMatch().score("q", "The", "A").value == 0.0
    assert ExactMatch().score("q", " a ", "A").value == 1.0


def test_exact_match_contains_whole_words():
    s = ExactMatch(contains=True)
    assert s.score("q", "I think it is Paris, France.", "paris").value == 1.0
    assert s.score("q", "Parisian", "paris").value == 0.0


def test_reference_scorers_do_not_grade_without_a_reference():
    for scorer in (ExactMatch(), MultipleChoice(), NumericAnswer(), RegexMatch(r"{reference}")):
        result = scorer.score("q", "answer", None)
        assert result.value is None and "reference" in (result.error or "")


def test_option_labels_come_from_the_last_question():
    assert option_labels(ARC) == ("A", "B", "C", "D")
    assert option_labels(WINO) == ("A", "B")
    assert option_labels("1) red\n2) blue\n3) green\nPick one") == ("1", "2", "3")
    assert option_labels("no options here") == ()


@pytest.mark.parametrize(("response", "expected"), [
    ("C", "C"), ("C\n", "C"), ("C) 13", "C"), ("(C)", "C"), ("**C**", "C"),
    ("The answer is C.", "C"), ("Answer: (D)", "D"), ("I think [[B]]", "B"),
    ("I pick option (A) because ...", "A"), ("3", "C"), ("13", None),
    ("I do not know", None), ("Unfortunately I cannot", None), ("E", None), ("", None),
])
def test_extract_option(response, expected):
    assert extract_option(response, ("A", "B", "C", "D")) == expected


def test_extract_option_numbers_can_be_switched_off():
    assert extract_option("2", "ABCD", numbers_for_letters=False) is None
    assert extract_option("2", ("1", "2", "3")) == "2"


def test_multiple_choice_grades_against_a_label_or_a_graded_answer():
    mc = MultipleChoice()
    assert mc.score(ARC, "C", "C").value == 1.0
    assert mc.score(ARC, "C\n", "C) 13").value == 1.0  # the reference may be another model's answer
    wrong = mc.score(ARC, "A\n", "C")
    assert wrong.value == 0.0 and wrong.details["chosen"] == "A"
    none = mc.score(ARC, "I do not know", "C")
    assert none.value == 0.0 and "none of the options" in (none.rationale or "")
    assert mc.score(WINO, "C", "A").value == 0.0  # C is not an option of a two-option question


def test_multiple_choice_reference_without_an_option_is_not_graded():
    result = MultipleChoice().score(ARC, "C", "thirteen")
    assert result.value is None and "reference" in (result.error or "")


def test_multiple_choice_rejects_bad_labels():
    for bad in (["A"], ["A", "A"], ["A", ""]):
        with pytest.raises(ScoringError):
            MultipleChoice(bad)


@pytest.mark.parametrize(("text", "number"), [
    ("Natalia sold 48 + 24 = 72 clips.\n#### 72", 72.0),
    ("So she earns $1,250.50 in total.", 1250.5),
    ("The answer is 18. (Checked 3 times.)", 18.0),
    ("\\boxed{-4}", -4.0),
    ("no digits", None),
])
def test_extract_number(text, number):
    assert extract_number(text) == number


def test_numeric_answer():
    s = NumericAnswer()
    assert s.score("q", "She has 3 + 4 = 7 apples. The answer is 7.", "#### 7").value == 1.0
    assert s.score("q", "It is 7.5", "#### 7").value == 0.0
    assert s.score("q", "I cannot say", "#### 7").value == 0.0
    assert s.score("q", "7", "seven").value is None
    with pytest.raises(ScoringError):
        NumericAnswer(rel_tol=-1)


def test_regex():
    assert RegexMatch(r"\bSELECT\b", flags=0).score("q", "SELECT * FROM t", None).value == 1.0
    assert RegexMatch(r"\d+", fullmatch=True).score("q", " 42 ", None).value == 1.0
    assert RegexMatch(r"\d+", fullmatch=True).score("q", "42 apples", None).value == 0.0
    mention = RegexMatch(r"\b{reference}\b")
    assert mention.needs_reference
    assert mention.score("q", "It costs 3.5 (USD)", "3.5").value == 1.0  # the reference is escaped
    assert mention.score("q", "It costs 3x5", "3.5").value == 0.0
    with pytest.raises(ScoringError, match="invalid regex"):
        RegexMatch("(")


SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
          "required": ["name"]}


def test_json_schema():
    s = JSONSchemaValid(SCHEMA)
    assert s.score("q", '{"name": "Ada", "age": 36}').value == 1.0
    assert s.score("q", '```json\n{"name": "Ada"}\n```').value == 1.0
    bad = s.score("q", '{"name": "Ada", "age": -1}')
    assert bad.value == 0.0 and "age" in (bad.rationale or "")
    assert s.score("q", "{'name': 'Ada'}").value == 0.0  # Python, not JSON
    assert "not JSON" in (s.score("q", "hello").rationale or "")
    with pytest.raises(ScoringError, match="invalid JSON Schema"):
        JSONSchemaValid({"type": "no-such-type"})


def test_function_scorer_sync_and_async():
    def length_ok(query, response, reference):
        return (1.0 if len(response) < 20 else 0.0, "short enough")

    async def agrees(query, response, reference):
        await asyncio.sleep(0)
        return response == reference

    s = FunctionScorer(length_ok)
    assert s.score("q", "short").value == 1.0 and s.name == "length_ok"
    assert asyncio.run(s.ascore("q", "x" * 30)).value == 0.0
    a = FunctionScorer(agrees, needs_reference=True)
    assert a.score("q", "yes", "yes").value == 1.0  # no loop running: run it
    assert asyncio.run(a.ascore("q", "yes", "no")).value == 0.0
    assert a.score("q", "yes", None).value is None
    with pytest.raises(ScoringError):
        FunctionScorer("not callable")  # type: ignore[arg-type]


def test_function_scorer_bad_return_is_an_error():
    with pytest.raises(ScoringError):
        FunctionScorer(lambda q, r, ref: "great").score("q", "r")
    with pytest.raises(ScoringError):
        FunctionScorer(lambda q, r, ref: 3).score("q", "r")


def test_default_ascore_runs_the_sync_scorer():
    assert asyncio.run(ExactMatch().ascore("q", "Paris", "paris")).value == 1.0
