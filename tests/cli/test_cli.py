"""The ``mixllm`` command line, on a long CSV with other models and prices than RouterBench."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from mixllm_router.cli.main import main


@pytest.fixture()
def long_csv(tmp_path):
    """Four made-up models with their own prices; a train and a test split in one file."""
    rng = np.random.default_rng(1)
    path = tmp_path / "outcomes.csv"
    models = {"acme-large": (0.95, 0.02), "acme-small": (0.55, 0.002), "open-7b": (0.45, 0.0005), "coder-x": (0.7, 0.004)}
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["query_id", "query", "model", "quality", "cost", "split"])
        writer.writeheader()
        for i in range(120):
            topic = ["python code", "french poem", "tax law", "chemistry"][i % 4]
            for model, (skill, price) in models.items():
                bonus = 0.3 if (model == "coder-x" and topic == "python code") else 0.0
                writer.writerow({
                    "query_id": f"q{i}", "query": f"Question {i} about {topic}: explain it.",
                    "model": model, "quality": float(rng.random() < min(skill + bonus, 1.0)),
                    "cost": price * (1 + rng.random()), "split": "train" if i < 90 else "test",
                })
    return path


def test_eval_on_a_long_csv(long_csv, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["eval", "--data", str(long_csv), "--out", str(out), "--encoder", "hashing",
                 "--reference-model", "acme-large", "--decisions", str(tmp_path / "d.jsonl")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "acme-large" in printed and "knn baseline" in printed and "oracle" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["reference"] == "acme-large" and results["n_test"] == 30
    assert results["encoder"].startswith("hashing") and f"encoder {results['encoder']}" in printed
    names = {m["name"] for m in results["methods"]}
    assert {"coder-x", "open-7b", "random", "oracle"} <= names
    assert (out / "tradeoff.png").stat().st_size > 10_000
    decisions = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert len(decisions) == 30 * 300  # the table's whole λ grid
    assert {d["chosen"] for d in decisions} <= set(names)


def _write_rows(path, rows):
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _without_split(src, dst):
    with src.open() as fh:
        rows = list(csv.DictReader(fh))
    with dst.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[c for c in rows[0] if c != "split"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return dst


def test_eval_without_a_split_column_holds_queries_out(long_csv, tmp_path, capsys):
    """No split column: a seeded share of the queries is the test set, never the training queries."""
    data = _without_split(long_csv, tmp_path / "nosplit.csv")
    out = tmp_path / "eval"
    code = main(["eval", "--data", str(data), "--out", str(out), "--encoder", "hashing", "--reference-model",
                 "acme-large", "--test-size", "0.25", "--seed", "3"])
    assert code == 0
    assert "held out as the test set" in capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["n_train"] == 90 and results["n_test"] == 30


def test_eval_on_sparse_outcomes_tests_only_on_queries_every_model_answered(long_csv, tmp_path, capsys):
    """Logs where each query went to some models only: the held-out test set is drawn from the
    queries every model answered (only those can score every λ); all the others train."""
    sparse = tmp_path / "sparse.csv"
    with long_csv.open() as fh:  # queries 0, 4, 8, ... keep every model; the others lose two
        rows = [r for r in csv.DictReader(fh)
                if int(r["query_id"][1:]) % 4 == 0 or r["model"] in ("acme-large", "coder-x")]
    _write_rows(sparse, rows)
    sparse = _without_split(sparse, tmp_path / "sparse_nosplit.csv")
    out = tmp_path / "eval"
    assert main(["eval", "--data", str(sparse), "--out", str(out), "--encoder", "hashing",
                 "--reference-model", "acme-large"]) == 0
    assert "with every model's outcome" in capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["n_test"] == 6 and results["n_train"] == 114 and results["dropped_test_queries"] == 0
    none_complete = tmp_path / "none.csv"  # no query answered by every model: the other two answer q0, q4, ...
    _write_rows(none_complete, [r for r in rows if int(r["query_id"][1:]) % 4 != 0
                                or r["model"] in ("acme-small", "open-7b")])
    assert main(["eval", "--data", str(_without_split(none_complete, tmp_path / "n2.csv")), "--encoder", "hashing",
                 "--out", str(out)]) == 2
    assert "every model's outcome" in capsys.readouterr().err


def test_split_column_without_test_rows_or_split_without_column_is_an_error(long_csv, tmp_path, capsys):
    only_train = tmp_path / "only_train.csv"
    with long_csv.open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "train"]
    with only_train.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert main(["eval", "--data", str(only_train), "--encoder", "hashing", "--out", str(tmp_path / "e")]) == 2
    assert "'train' and 'test'" in capsys.readouterr().err
    nosplit = _without_split(long_csv, tmp_path / "nosplit.csv")
    assert main(["train", "--data", str(nosplit), "--split", "train", "--out", str(tmp_path / "r"),
                 "--encoder", "hashing"]) == 2
    assert "no 'split' column" in capsys.readouterr().err


def test_train_then_route(long_csv, tmp_path, capsys):
    ckpt = tmp_path / "router"
    assert main(["train", "--data", str(long_csv), "--split", "train", "--out", str(ckpt), "--encoder", "hashing"]) == 0
    capsys.readouterr()
    assert main(["route", "--router", str(ckpt), "--encoder", "hashing", "--json", "--cost-share", "0.3",
                 "Question about python code: explain it."]) == 0
    decision = json.loads(capsys.readouterr().out.strip())
    assert decision["chosen"] in {"acme-large", "acme-small", "open-7b", "coder-x"}
    assert len(decision["scores"]) == 4


def test_errors_are_one_line_not_tracebacks(tmp_path, capsys):
    assert main(["eval", "--data", str(tmp_path / "missing.csv"), "--encoder", "hashing"]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("query,model,quality\nq,m,1\n")
    assert main(["train", "--data", str(bad), "--out", str(tmp_path / "x"), "--encoder", "hashing"]) == 2
    assert "cost" in capsys.readouterr().err
    assert main(["route", "--router", str(tmp_path / "nothing"), "--encoder", "hashing", "hi"]) == 2


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "mixllm_router.cli.main", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "train" in out.stdout and "eval" in out.stdout


def test_each_command_is_its_own_module_and_evaluation_knows_no_cli():
    """``mixllm X`` runs ``mixllm_router.cli.X``; the evaluation and simulators do not parse options."""
    import ast
    from pathlib import Path

    import mixllm_router.evaluation as evaluation
    from mixllm_router.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, parser in sub.choices.items():
        module = parser.get_default("func").__module__
        assert module == f"mixllm_router.cli.{name.replace('-', '_')}", (name, module)
    for path in Path(evaluation.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            else:
                continue
            assert not any(n == "argparse" or n.startswith(("..cli", "mixllm_router.cli")) for n in names), path


def test_train_with_tag_enhanced_embeddings_saves_the_projection(tmp_path, capsys):
    topics = ["python code", "french poem", "tax law", "organic chemistry", "roman history", "jazz harmony",
              "tennis rules", "bread baking", "linear algebra", "bird migration"]
    rows = [{"query": f"Question {i} about {topics[i % 10]}: explain the {topics[i % 10]} idea.", "model": m,
             "quality": float((i + j) % 3 != 0), "cost": 0.001 * (j + 1)}
            for i in range(100) for j, m in enumerate(["big", "small"])]
    data = tmp_path / "topics.csv"
    with data.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    ckpt = tmp_path / "tagged"
    code = main(["train", "--data", str(data), "--out", str(ckpt), "--encoder", "hashing",
                 "--embeddings", "tag-enhanced", "--n-domains", "4", "--tag-epochs", "20"])
    assert code == 0
    manifest = json.loads((ckpt / "manifest.json").read_text())
    assert manifest["encoder_state"] is not None  # the learned projection travels with the router
    capsys.readouterr()
    # no --encoder: load() rebuilds the tag-enhanced encoder from the checkpoint, on its hashing base
    assert main(["route", "--router", str(ckpt), "--json", "Question about tax law: explain the tax law idea."]) == 0
    assert json.loads(capsys.readouterr().out.strip())["chosen"]
