"""``mixllm collect`` end to end on recorded answers (--replay): CSV out, rerun, --only, scorer specs."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mixllm_router import ScoringError
from mixllm_router.cli.collect import scorer_from_spec
from mixllm_router.cli.main import main
from mixllm_router.scoring import ExactMatch, JSONSchemaValid, MultipleChoice, RegexMatch

RECORDED = [
    {"query": "Capital of France?", "model": "m1", "quality": 1, "cost": 0.1, "response": "Paris"},
    {"query": "Capital of France?", "model": "m2", "quality": 0, "cost": 0.01, "response": "Lyon"},
    {"query": "2 + 2?", "model": "m1", "quality": 1, "cost": 0.1, "response": "4"},
    {"query": "2 + 2?", "model": "m2", "quality": 1, "cost": 0.01, "response": "4"},
]


def test_collect_command_replays_scores_and_resumes(tmp_path, capsys):
    recorded = tmp_path / "recorded.csv"
    pd.DataFrame(RECORDED).to_csv(recorded, index=False)
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"query": "Capital of France?", "reference": "paris"}) + "\n"
                       + json.dumps({"query": "2 + 2?", "reference": "4"}) + "\n" + "{broken\n")
    out = tmp_path / "outcomes.csv"
    argv = ["collect", "--queries", str(queries), "--replay", str(recorded), "--scorer", "exact", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "4 called now" in err and "1 query rows skipped" in err
    frame = pd.read_csv(out).sort_values(["query", "model"])
    assert frame["quality"].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert main(argv) == 0
    assert "4 done before, 0 called now" in capsys.readouterr().err
    assert main(argv[:-1] + ["--only", "m2", "--no-progress"]) == 0
    assert "2 (query, candidate) pairs: 2 done before" in capsys.readouterr().err


def test_collect_command_errors_are_reported(tmp_path, capsys):
    assert main(["collect", "--queries", str(tmp_path / "none.csv"), "--replay", str(tmp_path / "x.csv"),
                 "--scorer", "exact", "--out", str(tmp_path / "o.csv")]) == 2
    assert "mixllm: error" in capsys.readouterr().err


def test_scorer_specs(tmp_path):
    assert isinstance(scorer_from_spec("exact"), ExactMatch)
    assert scorer_from_spec("contains").contains
    assert isinstance(scorer_from_spec("mc"), MultipleChoice)
    assert isinstance(scorer_from_spec(r"regex:\d+"), RegexMatch)
    schema = tmp_path / "s.json"
    schema.write_text('{"type": "object"}')
    assert isinstance(scorer_from_spec(f"json-schema:{schema}"), JSONSchemaValid)
    for bad in ("nope", "regex:", "judge:nobody", f"json-schema:{tmp_path / 'missing.json'}"):
        with pytest.raises(ScoringError):
            scorer_from_spec(bad)
