"""The feedback journal under SIGKILL and under two writers reaching one file through aliases.

Part 1 — kills. One parent fits a small router once and saves it. For each trial it forks a child
(the imports are already done, so a trial costs milliseconds) that routes and gives journaled
feedback in a tight loop, and writes each acknowledged sequence number to a pipe *after*
``router.feedback`` returned. Once the first one arrives, the parent kills the child with SIGKILL
after a random 0–30 ms, so every kill lands inside the feedback loop, possibly mid-write. After
each kill the parent checks, on the files alone, that every acknowledged number is in the journal
and that the journal reads (a torn last line at most); the next child appends after it. Every
``--rotate`` trials it reloads the checkpoint (journal replay), checks that every acknowledged
event is applied exactly once, then saves a new checkpoint and starts a new journal.

Part 2 — aliases. For each way of naming one journal (the same path, a relative path, a path
through ``..``, a symlink to the file, a symlink to its folder, a hard link) two forked processes
each give ``--events`` feedback events at the same time, one through the real path and one
through the alias. The contract: every event is either acknowledged and in the journal with a
sequence number of its own, or refused with ``FeedbackError`` ("in use"); then the writer that was
refused takes over when the first closes, and a reload applies every acknowledged event.

    python benchmarks/crash_safety_journal.py --kills 1000
    python benchmarks/crash_safety_journal.py --kills 0 --rounds 20      # aliases only

Prints one summary line per part (and JSON with ``--json``); exits 1 on any lost event.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mixllm_router import Candidate, FeedbackError, MixLLMRouter, RoutingDataset  # noqa: E402
from mixllm_router.encoders import HashingEncoder  # noqa: E402
from mixllm_router.learning.learner import FeedbackJournal  # noqa: E402

ENC = HashingEncoder(dim=64)
MODELS = {"big": (0.9, 0.9, 1e-3), "math-small": (0.85, 0.15, 1e-4), "poet-small": (0.15, 0.85, 1e-4)}


def data() -> RoutingDataset:
    rng = np.random.default_rng(0)
    records = []
    for i in range(60):
        topic = "math" if i % 2 else "poem"
        for m, (pm, pp, price) in MODELS.items():
            records.append({"query_id": f"q{i}", "query": f"{topic} item {i}", "model": m,
                            "quality": float(rng.random() < (pm if topic == "math" else pp)),
                            "cost": price * (1 + rng.random())})
    return RoutingDataset.from_records(records)


def fitted(journal: Path | None) -> MixLLMRouter:
    config = {"encoder": {"kind": "hashing", "use_cache": False}, "quality_model": "ridge+knn", "knn_k": 5,
              "feedback_weight": 0.5, "learning": {"journal_path": str(journal) if journal else None}}
    return MixLLMRouter([Candidate(name=m) for m in MODELS], config=config, encoder=ENC).fit(data(), calibrate=False)


def send(fd: int, obj: object) -> None:
    os.write(fd, (json.dumps(obj) + "\n").encode())  # one small write: whole lines or nothing


def first_line(fd: int, timeout_s: float) -> bytes:
    """Bytes read from ``fd`` up to and including its first newline (or what came until the timeout)."""
    import select

    got = b""
    deadline = time.monotonic() + timeout_s
    while b"\n" not in got and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        got += chunk
    return got


def receive(fd: int, head: bytes = b"") -> list[dict]:
    with os.fdopen(fd, "rb") as fh:
        text = (head + fh.read()).decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------- part 1: kills
def kills(workdir: Path, trials: int, rotate: int, seed: int) -> dict:
    rng = random.Random(seed)
    journal = workdir / "feedback.jsonl"
    ckpt = workdir / "ckpt"
    fitted(journal).save(ckpt)
    router = MixLLMRouter.load(ckpt, encoder=ENC, journal_path=journal)
    router.learning.close()
    acked_since_save: list[int] = []
    faults: list[str] = []
    total_acked = reloads = 0
    t0 = time.perf_counter()
    for trial in range(trials):
        r_fd, w_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: feedback until killed
            os.close(r_fd)
            try:
                for k in range(100_000):
                    d = router.route(f"question {trial}-{k} about {'poems' if k % 2 else 'sums'}")
                    send(w_fd, {"ack": router.feedback(d.decision_id, k % 3 != 0)})
            finally:
                os._exit(1)
        os.close(w_fd)
        head = first_line(r_fd, timeout_s=30)  # the child is in its feedback loop: kill it from now on
        time.sleep(rng.uniform(0.0, 0.03))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        acked = [m["ack"] for m in receive(r_fd, head)]
        total_acked += len(acked)
        acked_since_save += acked
        try:
            seqs = [e.seq for e in FeedbackJournal(journal).read()]
            missing = sorted(set(acked) - set(seqs))
            if missing:
                faults.append(f"trial {trial}: acknowledged events missing from the journal: {missing[:5]}")
            if len(seqs) != len(set(seqs)) or seqs != sorted(seqs):
                faults.append(f"trial {trial}: journal sequence numbers repeat or go back")
        except Exception as exc:  # noqa: BLE001 - counted as a fault
            faults.append(f"trial {trial}: journal unreadable: {type(exc).__name__}: {exc}")
        if (trial + 1) % rotate == 0 or trial == trials - 1:
            reloads += 1
            try:
                loaded = MixLLMRouter.load(ckpt, encoder=ENC, journal_path=journal)  # checkpoint + replay
                events = FeedbackJournal(journal).read()
                if acked_since_save and loaded.learning.applied_seq < max(acked_since_save):
                    faults.append(f"trial {trial}: applied_seq {loaded.learning.applied_seq} < last acknowledged")
                replayed = loaded.learning.n_events - router.learning.n_events
                if replayed != len(events):
                    faults.append(f"trial {trial}: {replayed} events replayed, the journal holds {len(events)}")
                d = loaded.route("after the kills")
                loaded.feedback(d.decision_id, True)  # the journal takes appends after the crash
                loaded.save(ckpt)  # now the checkpoint holds every event: start a new journal
                loaded.learning.close()
                journal.rename(workdir / f"feedback.{reloads}.jsonl")
                router = loaded
                acked_since_save = []
            except Exception as exc:  # noqa: BLE001
                faults.append(f"trial {trial}: reload failed: {type(exc).__name__}: {exc}")
    return {"part": "kills", "kills": trials, "acknowledged": total_acked, "reloads": reloads,
            "lost": sum("missing" in f for f in faults), "faults": faults[:10],
            "seconds": round(time.perf_counter() - t0, 1)}


# ---------------------------------------------------------------------------------- part 2: aliases
def make_alias(workdir: Path, real: Path, kind: str) -> Path:
    if kind == "same":
        return real
    if kind == "relative":
        return Path(os.path.relpath(real, Path.cwd()))
    if kind == "dotted":
        (workdir / "sub").mkdir(exist_ok=True)
        return workdir / "sub" / ".." / real.name
    if kind == "symlink":
        (workdir / "link.jsonl").symlink_to(real)
        return workdir / "link.jsonl"
    if kind == "symlink-dir":
        (workdir / "linkdir").symlink_to(workdir, target_is_directory=True)
        return workdir / "linkdir" / real.name
    os.link(real, workdir / "hard.jsonl")
    return workdir / "hard.jsonl"


def writer(router: MixLLMRouter, path: Path, n: int, start_r: int, fd: int, tag: str) -> None:
    """A child: wait for the start signal, give ``n`` events, hold the journal a little, then
    close it and retry the refused ones (the other writer may be done by then)."""
    from mixllm_router.learning.learner import FeedbackJournal as Journal

    router.learning.journal = Journal(path)
    os.read(start_r, 1)
    refused = []
    for k in range(n):
        d = router.route(f"{tag} question {k}")
        try:
            send(fd, {"ack": router.feedback(d.decision_id, k % 2 == 0)})
        except FeedbackError as exc:
            refused.append(d.decision_id)
            send(fd, {"refused": str(exc)[:200]})
    time.sleep(0.05)
    router.learning.close()
    deadline = time.monotonic() + 20
    while refused and time.monotonic() < deadline:
        try:
            send(fd, {"ack": router.feedback(refused[0], True), "late": True})
            refused.pop(0)
        except FeedbackError:
            time.sleep(0.02)
    router.learning.close()
    os._exit(0)


def aliases(workdir: Path, rounds: int, n: int) -> dict:
    kinds = ["same", "relative", "dotted", "symlink", "symlink-dir", "hardlink"]
    base = fitted(None)
    results = {}
    faults: list[str] = []
    t0 = time.perf_counter()
    for kind in kinds:
        acked_total = refused_total = serialised = 0
        for r in range(rounds):
            folder = workdir / f"{kind}-{r}"
            folder.mkdir()
            real = folder / "feedback.jsonl"
            real.touch()
            alias = make_alias(folder, real, kind)
            start_r, start_w = os.pipe()
            children = []
            for path, tag in ((real, "real"), (alias, "alias")):
                r_fd, w_fd = os.pipe()
                pid = os.fork()
                if pid == 0:
                    os.close(r_fd)
                    try:
                        writer(base, path, n, start_r, w_fd, tag)
                    finally:
                        os._exit(1)
                os.close(w_fd)
                children.append((pid, r_fd))
            os.write(start_w, b"go")  # both start at once
            messages = []
            for pid, r_fd in children:
                messages += receive(r_fd)
                os.waitpid(pid, 0)
            os.close(start_r), os.close(start_w)
            acked = [m["ack"] for m in messages if "ack" in m]
            refused = [m["refused"] for m in messages if "refused" in m]
            late = sum(1 for m in messages if m.get("late"))
            acked_total += len(acked)
            refused_total += len(refused)
            serialised += late
            seqs = [e.seq for e in FeedbackJournal(real).read()]
            if sorted(acked) != seqs or len(set(seqs)) != len(seqs):
                faults.append(f"{kind} round {r}: journal {len(seqs)} entries, acknowledged {len(acked)}")
            if any("in use" not in m for m in refused):
                faults.append(f"{kind} round {r}: an unclear refusal: {refused[0]}")
            if len(acked) != 2 * n:
                faults.append(f"{kind} round {r}: {2 * n - len(acked)} events never acknowledged")
            shutil.rmtree(folder)
        results[kind] = {"acknowledged": acked_total, "refused_then_retried": refused_total,
                         "acknowledged_after_handover": serialised}
    return {"part": "aliases", "rounds": rounds, "events_per_writer": n, "by_alias": results,
            "lost": sum("journal" in f for f in faults), "faults": faults[:10],
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=1000)
    p.add_argument("--rotate", type=int, default=100, help="reload, check and start a new journal every N kills")
    p.add_argument("--rounds", type=int, default=10, help="rounds per alias kind")
    p.add_argument("--events", type=int, default=40, help="events per writer per round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    out = []
    with tempfile.TemporaryDirectory(prefix="mixllm-journal-bench-") as tmp:
        os.chdir(tmp)
        if args.kills:
            (Path(tmp) / "kills").mkdir()
            res = kills(Path(tmp) / "kills", args.kills, args.rotate, args.seed)
            out.append(res)
            print(f"[journal kills] {res['kills']} SIGKILLs, {res['acknowledged']} acknowledged events, "
                  f"{res['lost']} lost, {len(res['faults'])} faults, {res['reloads']} reloads, {res['seconds']} s")
        if args.rounds:
            (Path(tmp) / "aliases").mkdir()
            res = aliases(Path(tmp) / "aliases", args.rounds, args.events)
            out.append(res)
            for kind, r in res["by_alias"].items():
                print(f"[journal aliases] {kind:11s}: {r['acknowledged']} acknowledged, {r['refused_then_retried']} "
                      f"refused ('in use') then acknowledged after the handover")
            print(f"[journal aliases] {res['rounds']} rounds x 2 writers x {res['events_per_writer']} events per alias: "
                  f"{res['lost']} lost, {len(res['faults'])} faults, {res['seconds']} s")
        os.chdir(ROOT)
    for res in out:
        for fault in res["faults"]:
            print("  fault:", fault)
    if args.json:
        print(json.dumps(out))
    return 1 if any(r["faults"] for r in out) else 0


if __name__ == "__main__":
    raise SystemExit(main())
