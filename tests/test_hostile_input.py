"""Hostile and broken input (hypothesis): every bad input gets the library's own exception.

Queries (empty, whitespace, megabytes long, lone surrogates, non-strings) into route, route_batch
and the encoders; training tables (NaN, inf, negative cost, one model, one row, non-numeric) into
RoutingDataset and fit; configs (out-of-range, wrong types) into MixLLMRouter / RouterConfig;
checkpoints (truncated, bit-flipped, wrong format version, a pickle planted where an array should
be, path traversal in the manifest, a manifest that names a huge or absent file, random values
anywhere in the manifest). The contract (docs/guarantees.md): a result, or a
:class:`~mixllm_router.MixLLMError` subclass (``TypeError`` only for a wrong argument type at the
API boundary, where documented), and files on disk left byte-for-byte unchanged by a failed load.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mixllm_router import (
    Candidate,
    CheckpointError,
    ConfigError,
    DataError,
    MixLLMError,
    MixLLMRouter,
    RouterConfig,
    RoutingDataset,
)
from mixllm_router.checkpoint.save_load import MANIFEST
from mixllm_router.encoders import CachedEncoder, HashingEncoder

ENC = HashingEncoder(dim=32)
MODELS = ("big", "small", "tiny")
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
SLOWER = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])


def records(n: int = 30) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        for j, m in enumerate(MODELS):
            out.append({"query_id": f"q{i}", "query": f"query {i} about {'math' if i % 2 else 'poems'}",
                        "model": m, "quality": float(rng.random() < 0.3 + 0.3 * j), "cost": 10.0 ** -(3 + j)})
    return out


@pytest.fixture(scope="module")
def router() -> MixLLMRouter:
    cfg = {"encoder": {"kind": "hashing", "use_cache": False}, "calibration_folds": 2}
    return MixLLMRouter(config=cfg, encoder=ENC).fit(RoutingDataset.from_records(records()))


@pytest.fixture(scope="module")
def saved(router, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "router"
    router.save(path)
    return path


def tree_hash(folder: Path) -> dict[str, str]:
    def digest(p: Path) -> str:
        st_ = p.stat()
        if st_.st_size > 2**26:  # the planted sparse giant: its size and mtime stand for its bytes
            return f"{st_.st_size}:{st_.st_mtime_ns}"
        return hashlib.sha256(p.read_bytes()).hexdigest()

    return {p.name: digest(p) for p in sorted(folder.iterdir()) if p.is_file()}


# ------------------------------------------------------------------------------------------ queries
any_text = st.one_of(
    st.text(st.characters(blacklist_categories=()), max_size=200),  # includes lone surrogates
    st.sampled_from(["", " ", "\t\n\r ", "\x00", "\ufeff", "\u200b" * 10, "\ud800", "a\udfffb", "🙂" * 50]),
    st.builds(lambda c, n: c * n, st.sampled_from(["x", "é ", "word ", "\n"]), st.integers(1_000, 50_000)),  # 2 MB: test_megabytes_long_query
)


@FAST
@given(query=any_text)
def test_route_any_string_gives_a_decision(router, query) -> None:
    decision = router.route(query)
    assert decision.chosen in MODELS
    assert all(math.isfinite(s.quality) and math.isfinite(s.cost_usd) for s in decision.scores)
    assert decision.query == query


@FAST
@given(queries=st.lists(any_text, max_size=5))
def test_route_batch_and_encoders_accept_any_strings(router, queries, tmp_path_factory) -> None:
    decisions = router.route_batch(queries)
    assert [d.query for d in decisions] == queries
    for enc in (ENC, CachedEncoder(ENC, None)):
        e = enc.encode(queries)
        assert e.shape == (len(queries), ENC.dim) and e.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)


def test_megabytes_long_query(router) -> None:
    query = "lorem ipsum dolor sit amet " * 80_000  # ~2 MB
    assert router.route(query).chosen in MODELS


non_strings = st.one_of(st.none(), st.integers(), st.floats(), st.binary(max_size=20), st.lists(st.text(), max_size=2),
                        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@FAST
@given(query=non_strings)
def test_route_refuses_non_strings_with_type_error(router, query) -> None:
    with pytest.raises(TypeError):
        router.route(query)


@FAST
@given(queries=st.one_of(st.none(), st.integers(), st.floats(), st.binary(max_size=20),
                         st.lists(st.one_of(st.none(), st.integers(), st.binary()), min_size=1, max_size=3)))
def test_route_batch_refuses_non_string_items(router, queries) -> None:
    assume(not (hasattr(queries, "__len__") and len(queries) == 0))  # an empty container routes nothing
    # a str is a sequence of 1-char strings: route_batch refuses it rather than routing each letter
    with pytest.raises((TypeError, MixLLMError)):
        router.route_batch(queries)


@FAST
@given(items=st.lists(st.one_of(st.none(), st.integers(), st.binary(), st.floats()), min_size=1, max_size=3))
def test_encoders_refuse_non_string_items(items) -> None:
    from mixllm_router import EncoderError

    for enc in (ENC, CachedEncoder(ENC, None)):
        with pytest.raises(EncoderError):
            enc.encode(items)
        with pytest.raises(EncoderError):
            enc.encode("a bare string")


def test_route_batch_of_nothing(router) -> None:
    assert router.route_batch([]) == []


number = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10**6))


@FAST
@given(cost_weight=st.one_of(st.none(), number), max_cost=st.one_of(st.none(), number),
       cost_share=st.one_of(st.none(), number))
def test_route_knobs_out_of_range(router, cost_weight, max_cost, cost_share) -> None:
    try:
        d = router.route("a question", cost_weight=cost_weight, max_cost_usd=max_cost, cost_share=cost_share)
    except ConfigError:
        return
    assert d.chosen in MODELS
    if cost_weight is not None:
        assert cost_weight >= 0
    if max_cost is not None:
        assert max_cost >= 0


@FAST
@given(candidates=st.one_of(st.lists(st.text(max_size=8), max_size=3), st.just([]), st.just("big")))
def test_route_candidates_argument(router, candidates) -> None:
    try:
        d = router.route("q", candidates=candidates)
    except MixLLMError:
        return
    assert d.chosen in candidates


# ------------------------------------------------------------------------------------------ tables
cell_number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5),
    st.sampled_from(["", "n/a", "abc", "1e-3", " 0.5 ", None, True]),
)


@SLOWER
@given(
    n_queries=st.integers(1, 6),
    models=st.lists(st.sampled_from(["a", "b", "c", " ", ""]), min_size=1, max_size=3),
    qualities=st.lists(cell_number, min_size=1, max_size=18),
    costs=st.lists(cell_number, min_size=1, max_size=18),
    drop=st.integers(0, 3),
)
def test_hostile_training_tables_raise_data_error_or_fit(n_queries, models, qualities, costs, drop) -> None:
    rows = []
    k = 0
    for i in range(n_queries):
        for m in models:
            rows.append({"query_id": f"q{i}", "query": f"question {i}", "model": m,
                         "quality": qualities[k % len(qualities)], "cost": costs[k % len(costs)]})
            k += 1
    rows = rows[: max(1, len(rows) - drop)]
    try:
        data = RoutingDataset.from_records(rows)
    except DataError:
        return
    # whatever the validator let through must be usable
    q = data.matrix("quality")
    c = data.matrix("cost")
    assert np.all((q[np.isfinite(q)] >= 0) & (q[np.isfinite(q)] <= 1))
    assert np.all(c[np.isfinite(c)] >= 0)
    router = MixLLMRouter(config={"encoder": {"kind": "hashing", "use_cache": False}}, encoder=ENC)
    try:
        router.fit(data)
    except MixLLMError:
        return
    assert router.route("question 0").chosen in data.models


@pytest.mark.parametrize("bad", [
    [],
    [1, 2],
    [{"query": "q", "model": "m", "quality": 1.0}],  # no cost column
    [{"query": "q", "model": "m", "quality": float("nan"), "cost": 0.1}],
    [{"query": "q", "model": "m", "quality": 1.0, "cost": -1.0}],
    [{"query": "q", "model": "m", "quality": 1.0, "cost": float("inf")}],
    [{"query": "q", "model": "m", "quality": 2.0, "cost": 0.1}],
    [{"query": "q", "model": "m", "quality": "good", "cost": 0.1}],
    [{"query": None, "model": "m", "quality": 1.0, "cost": 0.1}],
    [{"query": "q", "model": "m", "quality": [1.0], "cost": {"usd": 0.1}}],
])
def test_bad_tables_raise_data_error(bad) -> None:
    with pytest.raises(DataError):
        RoutingDataset.from_records(bad)


@pytest.mark.parametrize("frame", [None, 42, "query,model", [[1, 2]], {"query": "q"}])
def test_routing_dataset_constructor_refuses_non_frames(frame) -> None:
    with pytest.raises((TypeError, DataError)):
        RoutingDataset(frame)


def test_one_row_and_one_model_tables_fit_or_explain() -> None:
    router = MixLLMRouter(config={"encoder": {"kind": "hashing", "use_cache": False}}, encoder=ENC)
    one = RoutingDataset.from_records([{"query": "only", "model": "solo", "quality": 1.0, "cost": 0.01}])
    with pytest.warns(UserWarning):  # too little data to calibrate cost_share: said, not crashed
        router.fit(one)
    assert router.route("anything").chosen == "solo"


@pytest.mark.parametrize("bad", [None, [], "", 42])
def test_fit_refuses_non_datasets(bad) -> None:
    router = MixLLMRouter(config={"encoder": {"kind": "hashing", "use_cache": False}}, encoder=ENC)
    with pytest.raises((TypeError, DataError)):
        router.fit(bad)


@pytest.mark.parametrize("bad", [records(2), "data.csv", {"query": ["q"]}])
def test_fit_refuses_records_and_paths_with_a_clear_error(bad) -> None:
    router = MixLLMRouter(config={"encoder": {"kind": "hashing", "use_cache": False}}, encoder=ENC)
    with pytest.raises((TypeError, DataError)):
        router.fit(bad)


# ------------------------------------------------------------------------------------------ configs
config_value = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6),
    st.text(max_size=5), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
config_field = st.sampled_from([
    "cost_weight", "exploration", "feedback_weight", "prior_strength", "quality_model", "knn_k", "mlp_hidden",
    "mlp_alpha", "reference_model", "calibration_folds", "encoder", "latency", "decision_log_size", "learning",
    "seed", "no_such_field",
])


@FAST
@given(field=config_field, value=config_value)
def test_router_config_overrides_raise_config_error(field, value) -> None:
    try:
        router = MixLLMRouter(config={field: value})  # the encoder is built lazily: nothing loads here
    except ConfigError:
        return
    cfg = router.config
    for name in ("cost_weight", "exploration", "feedback_weight", "prior_strength", "mlp_alpha"):
        v = getattr(cfg, name)
        assert math.isfinite(v) or math.isinf(v)  # never NaN
        assert v >= 0


@FAST
@given(section=st.sampled_from(["encoder", "latency", "learning"]), key=st.text(min_size=1, max_size=12),
       value=config_value)
def test_nested_config_sections_raise_config_error(section, key, value) -> None:
    try:
        MixLLMRouter(config={section: {key: value}}, encoder=ENC)
    except ConfigError:
        pass


@pytest.mark.parametrize("config", [5, "cost_weight=1", [("cost_weight", 1)], RouterConfig])
def test_config_of_the_wrong_type(config) -> None:
    with pytest.raises(ConfigError):
        MixLLMRouter(config=config, encoder=ENC)


def test_router_config_built_directly_raises_config_error() -> None:
    with pytest.raises(ConfigError):
        RouterConfig(cost_weight=-1.0)


@pytest.mark.parametrize("kwargs", [{"name": ""}, {"name": " padded "}, {"name": "m", "input_price": -1},
                                    {"name": "m", "max_concurrency": 0}])
def test_bad_candidates_via_the_router(kwargs) -> None:
    with pytest.raises((ConfigError, ValueError)):
        MixLLMRouter([Candidate(**kwargs)], encoder=ENC)


# ------------------------------------------------------------------------------------------ checkpoints
def _copy(saved: Path, tmp: Path) -> Path:
    dest = tmp / f"copy-{len(list(tmp.iterdir()))}"
    shutil.copytree(saved, dest)
    return dest


def _arrays(path: Path) -> Path:
    (p,) = [p for p in path.iterdir() if p.name.startswith("arrays-")]
    return p


def _manifest(path: Path) -> dict:
    return json.loads((path / MANIFEST).read_text())


def _write_manifest(path: Path, manifest: dict) -> None:
    (path / MANIFEST).write_text(json.dumps(manifest))


def assert_load_fails_cleanly(path: Path, *, may_load: bool = False) -> None:
    """Loading raises CheckpointError (or, with may_load, succeeds and routes); files unchanged."""
    before = tree_hash(path)
    try:
        loaded = MixLLMRouter.load(path, encoder=ENC)
    except CheckpointError as exc:
        assert str(path) in str(exc)  # the message names the file
    else:
        assert may_load, "a damaged checkpoint loaded"
        assert loaded.route("still routes").chosen in loaded.candidate_names
    assert tree_hash(path) == before


@SLOWER
@given(cut=st.floats(0, 0.999), which=st.sampled_from(["arrays", "manifest"]))
def test_truncated_checkpoint(saved, tmp_path_factory, cut, which) -> None:
    path = _copy(saved, tmp_path_factory.mktemp("trunc"))
    target = _arrays(path) if which == "arrays" else path / MANIFEST
    data = target.read_bytes()
    target.write_bytes(data[: int(len(data) * cut)])
    assert_load_fails_cleanly(path)


@SLOWER
@given(position=st.floats(0, 0.999), bit=st.integers(0, 7))
def test_bit_flipped_arrays_file(saved, tmp_path_factory, position, bit) -> None:
    path = _copy(saved, tmp_path_factory.mktemp("flip"))
    target = _arrays(path)
    data = bytearray(target.read_bytes())
    data[int(len(data) * position)] ^= 1 << bit
    target.write_bytes(bytes(data))
    assert_load_fails_cleanly(path)


@SLOWER
@given(position=st.floats(0, 0.999), bit=st.integers(0, 7))
def test_bit_flipped_manifest_loads_or_raises_checkpoint_error(saved, tmp_path_factory, position, bit) -> None:
    # the manifest carries no checksum of its own: a flip inside a number may still load (e.g. saved_at)
    path = _copy(saved, tmp_path_factory.mktemp("mflip"))
    data = bytearray((path / MANIFEST).read_bytes())
    data[int(len(data) * position)] ^= 1 << bit
    (path / MANIFEST).write_bytes(bytes(data))
    assert_load_fails_cleanly(path, may_load=True)


@pytest.mark.parametrize("version", [0, -1, 2, 999, "1", None, 1.5, [1]])
def test_wrong_format_version(saved, tmp_path, version) -> None:
    path = _copy(saved, tmp_path)
    manifest = _manifest(path)
    manifest["format_version"] = version
    _write_manifest(path, manifest)
    assert_load_fails_cleanly(path)


@pytest.mark.parametrize("fmt", ["something-else", None, 1])
def test_wrong_format_name(saved, tmp_path, fmt) -> None:
    path = _copy(saved, tmp_path)
    manifest = _manifest(path)
    manifest["format"] = fmt
    _write_manifest(path, manifest)
    assert_load_fails_cleanly(path)


class _Boom:
    """Unpickling this writes a marker file: proof that pickle was executed."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).write_text, ("pwned",))


@pytest.mark.parametrize("kind", ["pickle", "npy-object"])
def test_a_planted_pickle_is_never_executed(saved, tmp_path, kind) -> None:
    path = _copy(saved, tmp_path)
    marker = tmp_path / "executed.txt"
    if kind == "pickle":
        blob = pickle.dumps({"bank.embeddings": _Boom(str(marker))})
    else:
        import io

        buf = io.BytesIO()
        np.save(buf, np.array([_Boom(str(marker))], dtype=object), allow_pickle=True)
        blob = buf.getvalue()
    target = _arrays(path)
    target.write_bytes(blob)
    manifest = _manifest(path)  # make the checksum and size match, so only the format can stop it
    manifest["arrays_sha256"] = hashlib.sha256(blob).hexdigest()
    manifest["arrays_bytes"] = len(blob)
    _write_manifest(path, manifest)
    assert_load_fails_cleanly(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", [
    "../evil.safetensors", "/etc/passwd", "arrays-0123456789abcdef.safetensors/../../x",
    "..\\arrays-0123456789abcdef.safetensors", "arrays-0123456789ABCDEF.safetensors", "", None, 7,
    "sub/arrays-0123456789abcdef.safetensors", "arrays-0123456789abcdef.safetensors\x00.txt",
])
def test_path_traversal_in_the_manifest(saved, tmp_path, name) -> None:
    path = _copy(saved, tmp_path)
    outside = tmp_path / "evil.safetensors"
    shutil.copy(_arrays(path), outside)  # a valid file outside the folder must not be reachable
    manifest = _manifest(path)
    manifest["arrays_file"] = name
    _write_manifest(path, manifest)
    assert_load_fails_cleanly(path)


def test_a_manifest_naming_an_absent_file(saved, tmp_path) -> None:
    path = _copy(saved, tmp_path)
    _arrays(path).unlink()
    assert_load_fails_cleanly(path)


def test_a_manifest_naming_a_huge_file_is_not_read(saved, tmp_path) -> None:
    path = _copy(saved, tmp_path)
    huge = path / "arrays-0123456789abcdef.safetensors"
    with open(huge, "wb") as fh:  # sparse: 4 GiB on paper, nothing on disk
        fh.truncate(4 * 2**30)
    manifest = _manifest(path)
    manifest["arrays_file"] = huge.name
    _write_manifest(path, manifest)
    tracemalloc.start()
    try:
        assert_load_fails_cleanly(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"loading read {peak / 2**20:.0f} MB"


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 10**12), st.floats(allow_nan=False), st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=5,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data(), value=json_value)
def test_any_value_anywhere_in_the_manifest(saved, tmp_path_factory, data, value) -> None:
    manifest = _manifest(saved)
    paths = [p for p in _paths(manifest) if p and p[0] not in ("saved_at", "versions")]
    where = data.draw(st.sampled_from(paths))
    node = manifest
    for k in where[:-1]:
        node = node[k]
    assume(node[where[-1]] != value)
    node[where[-1]] = value
    path = tmp_path_factory.mktemp("mutate") / "router"
    shutil.copytree(saved, path)
    _write_manifest(path, manifest)
    assert_load_fails_cleanly(path, may_load=True)


@pytest.mark.parametrize("content", [b"", b"null", b"[]", b"{}", b'"text"', b"\xff\xfe\x00", b"{" * 100_000])
def test_garbage_manifests(saved, tmp_path, content) -> None:
    path = _copy(saved, tmp_path)
    (path / MANIFEST).write_bytes(content)
    assert_load_fails_cleanly(path)


def test_not_a_folder(tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    for p in (tmp_path / "file", tmp_path / "absent", tmp_path):
        with pytest.raises(CheckpointError):
            MixLLMRouter.load(p, encoder=ENC)


def test_saving_over_a_file_refuses_and_keeps_it(router, tmp_path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    with pytest.raises(CheckpointError):
        router.save(target)
    assert target.read_text() == "keep me"


def test_a_failed_load_leaves_the_journal_alone(saved, tmp_path) -> None:
    path = _copy(saved, tmp_path)
    journal = tmp_path / "feedback.jsonl"
    journal.write_bytes(b'{"e": {"v": 1}, "sha": "bad"}\nnot json\n')
    before = journal.read_bytes()
    with pytest.raises(MixLLMError):  # the host's journal (a manifest never names one) is damaged
        MixLLMRouter.load(path, encoder=ENC, journal_path=journal)
    assert journal.read_bytes() == before
