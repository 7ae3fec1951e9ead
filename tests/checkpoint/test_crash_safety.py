"""Crash safety: SIGKILL at random points while saving a checkpoint and while journaling feedback.

A driver subprocess fits a small router once, then for every trial forks a worker that saves (or
gives feedback) in a tight loop and kills it with SIGKILL after a random delay. The worker reports
over a pipe, *before* each save, the scores its router gives a fixed set of probe queries, and
after it, that the save returned; for feedback it reports each acknowledged sequence number.
After each kill the driver checks, on the files alone:

- checkpoint: the folder loads, and routes the probes exactly as the last version whose save
  returned, or as the version whose save was in progress — never a mix, never an error;
- journal: loading the last checkpoint replays the journal, and every feedback that was
  acknowledged (``router.feedback`` returned) is applied after the reload; at most the one in
  flight is extra; and the journal accepts new appends afterwards (a torn tail is cut).

Forking after the imports keeps a trial at ~0.1-0.3 s, so the default run does 30 kills of each
kind; the ``slow`` variant does 200. The counts are printed (``pytest -s``) for docs/guarantees.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork and SIGKILL (POSIX)")

DRIVER = textwrap.dedent(
    r'''
    import json, os, random, signal, sys, time, warnings
    from pathlib import Path

    import numpy as np

    from mixllm_router import Candidate, MixLLMRouter, RoutingDataset
    from mixllm_router.encoders import HashingEncoder

    warnings.simplefilter("ignore")
    mode, trials, workdir, seed = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    ENC = HashingEncoder(dim=64)
    MODELS = {"big": (0.9, 0.9, 1e-3), "math-small": (0.85, 0.15, 1e-4), "poet-small": (0.15, 0.85, 1e-4)}
    PROBES = ["math integral proof", "poem rose sonnet", "an unrelated question", "sum of a series"]

    def data():
        r = np.random.default_rng(0)
        recs = []
        for i in range(60):
            topic = "math" if i % 2 else "poem"
            for m, (pm, pp, price) in MODELS.items():
                p = pm if topic == "math" else pp
                recs.append({"query_id": f"q{i}", "query": f"{topic} item {i}", "model": m,
                             "quality": float(r.random() < p), "cost": price * (1 + r.random())})
        return RoutingDataset.from_records(recs)

    def probe_scores(router):
        return [s.score for d in router.route_batch(PROBES) for s in d.scores]

    ckpt = workdir / "ckpt"
    journal = workdir / "feedback.jsonl"
    config = {"encoder": {"kind": "hashing", "use_cache": False}, "quality_model": "ridge+knn", "knn_k": 5,
              "feedback_weight": 0.5}
    if mode == "journal":
        config["learning"] = {"journal_path": str(journal)}
    base = MixLLMRouter([Candidate(name=m) for m in MODELS], config=config, encoder=ENC).fit(data(), calibrate=False)
    base.save(ckpt)  # the committed starting point

    def send(fd, obj):
        os.write(fd, (json.dumps(obj) + "\n").encode())  # one small write: whole lines or nothing

    def worker(fd, router, start):
        if mode == "save":
            for k in range(start, start + 10_000):
                d = router.route(f"worker step {k} math")
                router.feedback(d.decision_id, k % 3 != 0)
                send(fd, {"begin": k, "scores": probe_scores(router)})
                router.save(ckpt)
                send(fd, {"done": k})
        else:
            for k in range(10_000):
                d = router.route(f"question {start}-{k} about poems")
                seq = router.feedback(d.decision_id, k % 2 == 0)
                send(fd, {"ack": seq})
        os._exit(0)

    survived = 0
    committed = None  # (version, scores) of the last save that returned, across trials
    in_flight = None
    version = 0
    acked_total = 0
    faults = []
    t_start = time.time()
    for trial in range(trials):
        r_fd, w_fd = os.pipe()
        if mode == "save":
            router = MixLLMRouter.load(ckpt, encoder=ENC)
        else:
            router = MixLLMRouter.load(ckpt, encoder=ENC, journal_path=journal)  # checkpoint + journal replay
            router.learning.close()
        pid = os.fork()
        if pid == 0:
            os.close(r_fd)
            try:
                worker(w_fd, router, version)
            finally:
                os._exit(1)
        os.close(w_fd)
        time.sleep(rng.uniform(0.005, 0.25))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        with os.fdopen(r_fd, "rb") as fh:
            lines = [json.loads(line) for line in fh.read().decode().splitlines()]
        try:
            if mode == "save":
                pending = None
                for msg in lines:
                    if "begin" in msg:
                        pending = (msg["begin"], msg["scores"])
                    else:
                        committed, pending = pending, None
                        version = committed[0] + 1
                loaded = MixLLMRouter.load(ckpt, encoder=ENC)
                got = probe_scores(loaded)
                options = [v for v in (committed, pending) if v is not None]
                if committed is None:  # nothing saved by any worker yet: the starting checkpoint
                    options.append((-1, probe_scores(base)))
                match = [v for v, s in options if np.allclose(got, s, rtol=0, atol=1e-9)]
                if not match:
                    faults.append(f"trial {trial}: loaded state matches none of versions {[v for v, _ in options]}")
                elif pending is not None and match[-1] == pending[0]:
                    committed, version = pending, pending[0] + 1  # the in-flight save did complete
                leftovers = [p.name for p in ckpt.iterdir() if p.name.endswith(".tmp")]
                if len(leftovers) > 50:
                    faults.append(f"temporary files pile up: {len(leftovers)}")
            else:
                acked = [m["ack"] for m in lines]
                acked_total += len(acked)
                loaded = MixLLMRouter.load(ckpt, encoder=ENC, journal_path=journal)
                applied = loaded.learning.applied_seq
                from mixllm_router.learning.learner import FeedbackJournal
                seqs = {e.seq for e in FeedbackJournal(journal).read()}
                missing = [s for s in acked if s not in seqs]
                if missing:
                    faults.append(f"trial {trial}: acknowledged feedback lost: {missing[:5]}")
                if acked and applied < max(acked):
                    faults.append(f"trial {trial}: applied_seq {applied} < last acknowledged {max(acked)}")
                if loaded.learning.n_events != len(seqs):
                    faults.append(f"trial {trial}: {loaded.learning.n_events} events applied, journal has {len(seqs)}")
                # the journal takes new appends after a crash (the torn tail, if any, is cut)
                d = loaded.route("after the crash")
                loaded.feedback(d.decision_id, True)
                if FeedbackJournal(journal).read()[-1].seq != loaded.learning.applied_seq:
                    faults.append(f"trial {trial}: append after recovery not readable")
                if trial % 5 == 4:  # a new checkpoint now and then: replay starts after its applied_seq
                    loaded.save(ckpt)
                loaded.learning.close()
            survived += 1
        except Exception as exc:  # noqa: BLE001 - reported to the test
            faults.append(f"trial {trial}: {type(exc).__name__}: {exc}")
    if mode == "save":  # the next completed save clears what killed saves left behind
        MixLLMRouter.load(ckpt, encoder=ENC).save(ckpt)
        left = sorted(p.name for p in ckpt.iterdir())
        if len(left) != 2 or not left[0].startswith("arrays-"):
            faults.append(f"after a clean save the folder holds {left}")
    print(json.dumps({"mode": mode, "kills": trials, "survived": survived - len(faults) if faults else survived,
                      "faults": faults[:10], "versions_committed": version, "acked": acked_total,
                      "seconds": round(time.time() - t_start, 1)}))
    '''
)


def run_driver(tmp_path: Path, mode: str, trials: int, seed: int = 0) -> dict:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(script), mode, str(trials), str(tmp_path), str(seed)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\n[crash-safety] {mode}: {result['survived']}/{result['kills']} SIGKILLs survived "
          f"({result['versions_committed']} checkpoint versions committed, {result['acked']} feedback "
          f"events acknowledged) in {result['seconds']} s")
    return result


def test_sigkill_while_saving_never_loses_the_last_committed_checkpoint(tmp_path: Path) -> None:
    result = run_driver(tmp_path, "save", 30)
    assert result["faults"] == [], result["faults"]
    assert result["survived"] == 30
    assert result["versions_committed"] > 0  # kills landed after real saves, not only before the first


def test_sigkill_while_journaling_never_loses_acknowledged_feedback(tmp_path: Path) -> None:
    result = run_driver(tmp_path, "journal", 30, seed=1)
    assert result["faults"] == [], result["faults"]
    assert result["survived"] == 30
    assert result["acked"] > 30


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["save", "journal"])
def test_sigkill_many_times(tmp_path: Path, mode: str) -> None:
    result = run_driver(tmp_path, mode, 200, seed=2)
    assert result["faults"] == [], result["faults"]
    assert result["survived"] == 200
