"""Hypothesis-generated hostile checkpoints: every one loads and works, or raises our own error.

Part of the ≥ 10,000 hostile inputs of issue #15: route, feedback, configs and training tables
have their own campaign (the journal side of the issue); this script covers checkpoint mutations. Each example takes a
copy of a valid checkpoint (3 candidates, ridge+kNN+MLP, a calibration curve, the feedback network
trained by a few events) and applies one to three mutations drawn by hypothesis:

- **manifest values**: any value anywhere in the manifest replaced by a hostile one (huge, negative
  and 20-digit integers, floats, strings with ``../`` and absolute paths, lists, objects, nulls), a
  key deleted, or a raw-text edit the JSON encoder never writes (a 5000-digit integer, ``NaN``,
  ``Infinity``, ``1e999``, 10,000-deep nesting);
- **arrays**, written back with a *valid* checksum and size so only validation can stop them: a
  value set to NaN, ±inf, ±1e308 or a negative number, an array cut, widened, transposed, given
  an extra axis or another dtype, dropped, or an unknown array added;
- **bytes**: a bit flipped or the file cut, in the manifest or the arrays file.

Then ``MixLLMRouter.load`` (with ``encoder=`` 9 times in 10), and when it loads: ``route``,
``feedback`` and ``save`` into another folder. Counted outcomes: refused with a
:class:`~mixllm_router.MixLLMError`, loaded and used, and *escaped*: any other exception, or a
decision whose scores are not finite. The run fails if anything escaped.

Run:  python benchmarks/hostile_checkpoints.py [--examples 6000] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from mixllm_router import Candidate, MixLLMError, MixLLMRouter, RoutingDataset
from mixllm_router.checkpoint.save_load import MANIFEST, read_checkpoint, write_checkpoint
from mixllm_router.encoders import HashingEncoder

ENC = HashingEncoder(dim=16)
MODELS = ("big", "small", "tiny")


def build(folder: Path) -> None:
    rng = np.random.default_rng(0)
    recs = [{"query_id": f"q{i}", "query": f"query {i} about {'math' if i % 2 else 'poems'}", "model": m,
             "quality": float(rng.random() < 0.3 + 0.3 * j), "cost": 10.0 ** -(3 + j)}
            for i in range(40) for j, m in enumerate(MODELS)]
    cfg = {"encoder": {"kind": "hashing", "use_cache": False}, "calibration_folds": 2,
           "quality_model": "ridge+knn+mlp", "knn_k": 5, "mlp_hidden": 8, "feedback_weight": 0.3}
    router = MixLLMRouter([Candidate(name=m) for m in MODELS], config=cfg, encoder=ENC)
    router.fit(RoutingDataset.from_records(recs))
    for k in range(6):
        router.feedback(router.route(f"warm {k}").decision_id, k % 2 == 0)
    router.save(folder)


def json_paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from json_paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from json_paths(v, (*prefix, i))


hostile_value = st.recursive(
    st.one_of(
        st.none(), st.booleans(),
        st.integers(-(2**70), 2**70), st.sampled_from([0, -1, 1, 2**31, 2**63 - 1, 10**6, 10**12]),
        st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([1e308, -1e308, 5e-324, -0.0]),
        st.text(max_size=12),
        st.sampled_from(["../x", "/etc/passwd", "..", "", "arrays-0123456789abcdef.safetensors", "hf", "minilm",
                         "hashing", "/tmp", "~/.ssh/authorized_keys", "\x00", "tokens", "direct", "ridge"]),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6,
)

RAW_EDITS = ["7" * 5000, "NaN", "Infinity", "-Infinity", "1e999", "[" * 10_000 + "]" * 10_000, '"\\ud800"']


@st.composite
def manifest_mutation(draw, manifest: dict):
    paths = [p for p in json_paths(manifest) if p]
    where = draw(st.sampled_from(paths))
    kind = draw(st.sampled_from(["replace", "replace", "delete", "raw"]))
    if kind == "replace":
        return ("replace", where, draw(hostile_value))
    if kind == "delete":
        return ("delete", where, None)
    return ("raw", where, draw(st.sampled_from(RAW_EDITS)))


@st.composite
def array_mutation(draw, names: list[str]):
    name = draw(st.sampled_from(names))
    op = draw(st.sampled_from(["value", "value", "cut", "widen", "transpose", "axis", "dtype", "drop", "add",
                               "empty"]))
    value = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e308, -1e308, -1.0, 2.0, 0.0, 1e-300]))
    index = draw(st.integers(0, 10**6))
    dtype = draw(st.sampled_from(["float16", "float32", "int8", "int64", "bool", "uint8"]))
    return (op, name, value, index, dtype)


byte_mutation = st.tuples(st.sampled_from(["manifest", "arrays"]), st.sampled_from(["flip", "cut"]),
                          st.floats(0, 1, exclude_max=True), st.integers(0, 7))


def apply_manifest(folder: Path, mutation) -> None:
    kind, where, value = mutation
    text = (folder / MANIFEST).read_text()
    manifest = json.loads(text)
    node = manifest
    for k in where[:-1]:
        node = node[k]
    if kind == "delete":
        del node[where[-1]]
        text = json.dumps(manifest)
    elif kind == "replace":
        node[where[-1]] = value
        text = json.dumps(manifest)
    else:
        node[where[-1]] = "@@HOLE@@"
        text = json.dumps(manifest).replace('"@@HOLE@@"', value)
    (folder / MANIFEST).write_text(text)


def apply_arrays(folder: Path, mutations) -> None:
    manifest, arrays = read_checkpoint(folder)
    for op, name, value, index, dtype in mutations:
        if name not in arrays:
            continue
        a = np.array(arrays[name])
        if op == "value" and a.size:
            a = a.astype(np.float64) if a.dtype.kind == "f" else a
            flat = a.reshape(-1)
            try:
                flat[index % flat.size] = value
            except (OverflowError, ValueError):
                flat[index % flat.size] = -1
        elif op == "cut" and a.ndim:
            a = a[: max(0, a.shape[0] - 1 - index % 3)]
        elif op == "widen":
            a = np.concatenate([a, a[:1]]) if a.ndim and a.shape[0] else np.zeros(3)
        elif op == "transpose":
            a = a.T.copy()
        elif op == "axis":
            a = a[None]
        elif op == "dtype":
            a = a.astype(dtype)
        elif op == "drop":
            arrays.pop(name)
            continue
        elif op == "add":
            arrays[f"{name}.extra"] = np.zeros(2)
            continue
        elif op == "empty":
            a = np.zeros((0,) + a.shape[1:], a.dtype)
        arrays[name] = np.ascontiguousarray(a)
    write_checkpoint(folder, manifest, arrays)


def apply_bytes(folder: Path, mutation) -> None:
    which, op, where, bit = mutation
    target = folder / MANIFEST if which == "manifest" else folder / json.loads(
        (folder / MANIFEST).read_text())["arrays_file"]
    data = bytearray(target.read_bytes())
    pos = int(where * len(data))
    if op == "flip":
        data[pos] ^= 1 << bit
    else:
        data = data[:pos]
    target.write_bytes(bytes(data))


def use(folder: Path, encoder, out: Path) -> None:
    router = MixLLMRouter.load(folder, encoder=encoder)
    decision = router.route("what is the integral of x squared")
    if not all(math.isfinite(s.score) and math.isfinite(s.quality) and math.isfinite(s.cost_usd)
               for s in decision.scores):
        raise AssertionError(f"non-finite scores: {decision.scores}")
    router.feedback(decision.decision_id, True)
    router.save(out)
    router.learning.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    counts: collections.Counter[str] = collections.Counter()
    escaped: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        build(base)
        manifest0 = json.loads((base / MANIFEST).read_text())
        names0 = sorted(read_checkpoint(base)[1])
        work = Path(tmp) / "work"
        out = Path(tmp) / "out"

        @seed(args.seed)
        @settings(max_examples=args.examples, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(m=st.lists(manifest_mutation(manifest0), max_size=2),
               a=st.lists(array_mutation(names0), max_size=2),
               b=st.lists(byte_mutation, max_size=1),
               with_encoder=st.integers(0, 9).map(bool))  # 1 in 10 without encoder=: the config's encoder
        def example(m, a, b, with_encoder) -> None:
            counts["examples"] += 1
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(base, work)
            try:
                if a:
                    apply_arrays(work, a)
                for mutation in m:
                    apply_manifest(work, mutation)
                for mutation in b:
                    apply_bytes(work, mutation)
            except (KeyError, IndexError, TypeError, ValueError, RecursionError, OSError, MixLLMError):
                counts["mutation not applicable"] += 1
                return
            try:
                use(work, ENC if with_encoder else None, out)
                counts["loaded and used"] += 1
            except MixLLMError as exc:
                counts[f"refused: {type(exc).__name__}"] += 1
            except BaseException as exc:  # noqa: BLE001 - what this benchmark hunts
                if isinstance(exc, KeyboardInterrupt):
                    raise
                counts["ESCAPED"] += 1
                if len(escaped) < 10:
                    escaped.append(f"{type(exc).__name__}: {exc} | m={m} a={a} b={b}\n"
                                   + "".join(traceback.format_exception(exc)[-3:]))

        t0 = time.time()
        example()
    print(f"hostile checkpoints: {counts['examples']} examples in {time.time() - t0:.0f} s")
    for key, n in sorted(counts.items()):
        if key != "examples":
            print(f"  {key}: {n}")
    print(f"  exceptions outside the library's tree: {counts['ESCAPED']}")
    for e in escaped:
        print("  ESCAPED:", e)
    sys.exit(1 if counts["ESCAPED"] else 0)


if __name__ == "__main__":
    main()
