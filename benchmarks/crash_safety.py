"""Checkpoint crash safety and one-writer-per-folder, measured (issue #15; docs/guarantees.md).

Two experiments on a small router (3 candidates, HashingEncoder(dim=64), ridge+kNN, the feedback
network on), each forking its workers from this already-imported process (``os.fork``), so a round
costs milliseconds, not an interpreter start:

1. **SIGKILL during save** (``--kills``, default 1,000). A worker gives one feedback and saves, in
   a loop, reporting over a pipe the probe scores of each version *before* its save and that the
   save returned *after* it. The parent kills it with SIGKILL after a random 5–200 ms, then checks
   the folder on disk: it must load, and route a fixed set of probes exactly like the last version
   whose save returned or the one in flight — never a mix, never an error. Counted: kills, kills
   that landed while a save was in flight, unloadable checkpoints, wrong versions, leftover temp
   files after the next clean save.
2. **Two processes, one folder, every alias** (``--rounds`` per alias, default 20). Two workers
   save different routers ``--saves`` times each into one folder, one through its plain path and
   the other through an alias: the same path, a relative path, a symlink, a path with ``..``, a
   bind mount when this process may mount (root with CAP_SYS_ADMIN). A folder cannot be
   hard-linked (POSIX forbids directory hard links), so that alias does not exist for a
   checkpoint; the files inside are never hard-linked by ``save`` either (temp file + rename).
   After each round: every save returned or raised ``CheckpointError`` (never another error), the
   folder loads, holds exactly one manifest and the one arrays file it names, and equals the last
   save of one of the two workers. Saves are serialised by a lock on the folder's identity.

Run:  python benchmarks/crash_safety.py [--kills 1000] [--rounds 20] [--saves 5] [--seed 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from mixllm_router import Candidate, CheckpointError, MixLLMRouter, RoutingDataset
from mixllm_router.checkpoint.save_load import MANIFEST
from mixllm_router.encoders import HashingEncoder

ENC = HashingEncoder(dim=64)
MODELS = {"big": (0.9, 0.9, 1e-3), "math-small": (0.85, 0.15, 1e-4), "poet-small": (0.15, 0.85, 1e-4)}
PROBES = ["math integral proof", "poem rose sonnet", "an unrelated question", "sum of a series"]
CONFIG = {"encoder": {"kind": "hashing", "use_cache": False}, "quality_model": "ridge+knn", "knn_k": 5,
          "feedback_weight": 0.5}


def data(seed: int = 0) -> RoutingDataset:
    r = np.random.default_rng(seed)
    recs = []
    for i in range(60):
        topic = "math" if i % 2 else "poem"
        for m, (pm, pp, price) in MODELS.items():
            p = pm if topic == "math" else pp
            recs.append({"query_id": f"q{i}", "query": f"{topic} item {i}", "model": m,
                         "quality": float(r.random() < p), "cost": price * (1 + r.random())})
    return RoutingDataset.from_records(recs)


def fitted(seed: int = 0) -> MixLLMRouter:
    return MixLLMRouter([Candidate(name=m) for m in MODELS], config=CONFIG, encoder=ENC).fit(
        data(seed), calibrate=False)


def probe_scores(router: MixLLMRouter) -> list[float]:
    return [s.score for d in router.route_batch(PROBES) for s in d.scores]


def send(fd: int, obj: dict) -> None:
    os.write(fd, (json.dumps(obj) + "\n").encode())  # one small write: whole lines or nothing


# ---------------------------------------------------------------------------------- 1. SIGKILL
def kill_during_save(work: Path, kills: int, seed: int) -> dict:
    rng = random.Random(seed)
    ckpt = work / "ckpt"
    base = fitted()
    base.save(ckpt)
    committed: tuple[int, list[float]] | None = None
    version = 0
    in_flight_kills = unloadable = wrong = 0
    faults: list[str] = []
    t0 = time.time()
    for trial in range(kills):
        router = MixLLMRouter.load(ckpt, encoder=ENC)
        r_fd, w_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker: feedback, then save, forever
            os.close(r_fd)
            try:
                for k in range(version, version + 100_000):
                    d = router.route(f"worker step {k} math")
                    router.feedback(d.decision_id, k % 3 != 0)
                    send(w_fd, {"begin": k, "scores": probe_scores(router)})
                    router.save(ckpt)
                    send(w_fd, {"done": k})
            finally:
                os._exit(1)
        os.close(w_fd)
        time.sleep(rng.uniform(0.005, 0.2))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        with os.fdopen(r_fd, "rb") as fh:
            lines = [json.loads(line) for line in fh.read().decode().splitlines()]
        pending = None
        for msg in lines:
            if "begin" in msg:
                pending = (msg["begin"], msg["scores"])
            else:
                committed, pending = pending, None
                version = committed[0] + 1
        in_flight_kills += pending is not None
        try:
            got = probe_scores(MixLLMRouter.load(ckpt, encoder=ENC))
        except Exception as exc:  # noqa: BLE001 - counted
            unloadable += 1
            faults.append(f"kill {trial}: {type(exc).__name__}: {exc}")
            continue
        options = [v for v in (committed, pending) if v is not None]
        if committed is None:
            options.append((-1, probe_scores(base)))
        match = [v for v, s in options if np.allclose(got, s, rtol=0, atol=1e-9)]
        if not match:
            wrong += 1
            faults.append(f"kill {trial}: the folder matches none of versions {[v for v, _ in options]}")
        elif pending is not None and match[-1] == pending[0]:
            committed, version = pending, pending[0] + 1  # the in-flight save had completed
    MixLLMRouter.load(ckpt, encoder=ENC).save(ckpt)  # a clean save clears what killed saves left
    left = sorted(p.name for p in ckpt.iterdir())
    return {"kills": kills, "kills_while_saving": in_flight_kills, "versions_committed": version,
            "unloadable": unloadable, "wrong_version": wrong, "files_after_clean_save": left,
            "faults": faults[:10], "seconds": round(time.time() - t0, 1)}


# ---------------------------------------------------------------------------------- 2. aliases
def _bind_mount(real: Path, where: Path) -> Path | None:
    where.mkdir()
    try:
        done = subprocess.run(["mount", "--bind", str(real), str(where)], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return where if done.returncode == 0 else None


def _aliases(work: Path) -> tuple[Path, dict[str, Path | None]]:
    real = work / "shared" / "ckpt"
    real.mkdir(parents=True)
    (work / "link").symlink_to(real, target_is_directory=True)
    (work / "sub").mkdir()
    return real, {
        "same path": real,
        "relative path": Path(os.path.relpath(real, work / "sub")),  # the workers run in work/sub
        "symlink": work / "link",
        "path with ..": work / "sub" / ".." / "shared" / "ckpt",
        "bind mount": _bind_mount(real, work / "bind"),
        "hard link": None,  # a folder cannot be hard-linked
    }


def two_writers(work: Path, rounds: int, saves: int) -> dict:
    real, aliases = _aliases(work)
    routers = [fitted(0), fitted(1)]
    finals = [probe_scores(r) for r in routers]
    results: dict[str, dict] = {}
    os.chdir(work / "sub")
    try:
        for label, alias in aliases.items():
            if alias is None:
                results[label] = {"skipped": "a folder cannot be hard-linked" if label == "hard link"
                                  else "cannot bind-mount here (needs root with CAP_SYS_ADMIN)"}
                continue
            rec = {"rounds": rounds, "saves": 0, "refused": 0, "other_errors": 0, "unloadable": 0,
                   "not_a_final_version": 0, "stray_files": 0, "errors": []}
            for _ in range(rounds):
                for old in real.iterdir():  # an empty folder at the start of each round
                    old.unlink()
                pipes, pids = [], []
                for who, path in enumerate((real, alias)):
                    r_fd, w_fd = os.pipe()
                    pid = os.fork()
                    if pid == 0:
                        os.close(r_fd)
                        code = 0
                        try:
                            for _k in range(saves):
                                try:
                                    routers[who].save(path)
                                    send(w_fd, {"saved": 1})
                                except CheckpointError as exc:
                                    send(w_fd, {"refused": str(exc)})
                                except Exception as exc:  # noqa: BLE001 - reported
                                    send(w_fd, {"error": f"{type(exc).__name__}: {exc}"})
                        finally:
                            os._exit(code)
                    os.close(w_fd)
                    pipes.append(r_fd)
                    pids.append(pid)
                for pid in pids:
                    os.waitpid(pid, 0)
                for r_fd in pipes:
                    with os.fdopen(r_fd, "rb") as fh:
                        for line in fh.read().decode().splitlines():
                            msg = json.loads(line)
                            rec["saves"] += "saved" in msg
                            rec["refused"] += "refused" in msg
                            if "error" in msg:
                                rec["other_errors"] += 1
                                rec["errors"].append(msg["error"])
                try:
                    got = probe_scores(MixLLMRouter.load(real, encoder=ENC))
                except Exception as exc:  # noqa: BLE001 - counted
                    rec["unloadable"] += 1
                    rec["errors"].append(f"load: {type(exc).__name__}: {exc}")
                    continue
                if not any(np.allclose(got, f, rtol=0, atol=1e-9) for f in finals):
                    rec["not_a_final_version"] += 1
                names = sorted(p.name for p in real.iterdir())
                named = json.loads((real / MANIFEST).read_text())["arrays_file"]
                rec["stray_files"] += names != sorted([MANIFEST, named])
            rec["errors"] = rec["errors"][:5]
            results[label] = rec
    finally:
        os.chdir(work)
        if aliases.get("bind mount") is not None:
            subprocess.run(["umount", str(work / "bind")], capture_output=True, timeout=10)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--saves", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "kill").mkdir()
        (work / "alias").mkdir()
        killed = kill_during_save(work / "kill", args.kills, args.seed) if args.kills else None
        if killed:
            print(f"SIGKILL during save: {killed['kills']} kills ({killed['kills_while_saving']} while a save was in "
                  f"flight, {killed['versions_committed']} versions committed) in {killed['seconds']} s: "
                  f"{killed['unloadable']} unloadable, {killed['wrong_version']} wrong version; "
                  f"after the next clean save the folder holds {killed['files_after_clean_save']}")
            for f in killed["faults"]:
                print("  fault:", f)
        aliased = two_writers(work / "alias", args.rounds, args.saves) if args.rounds else {}
        for label, rec in aliased.items():
            if "skipped" in rec:
                print(f"two writers, {label:>13}: skipped: {rec['skipped']}")
                continue
            print(f"two writers, {label:>13}: {rec['rounds']} rounds, {rec['saves']} saves returned, "
                  f"{rec['refused']} refused with CheckpointError, {rec['other_errors']} other errors, "
                  f"{rec['unloadable']} unloadable, {rec['not_a_final_version']} not a writer's last version, "
                  f"{rec['stray_files']} with stray files")
            for e in rec["errors"]:
                print("  error:", e)
    if args.json:
        args.json.write_text(json.dumps({"kill_during_save": killed, "two_writers": aliased}, indent=2))
    bad = (killed and (killed["unloadable"] or killed["wrong_version"])) or any(
        rec.get("other_errors") or rec.get("unloadable") or rec.get("not_a_final_version") or rec.get("stray_files")
        for rec in aliased.values())
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
