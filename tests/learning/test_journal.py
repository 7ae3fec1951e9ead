"""The feedback journal: one writer per *file* (whatever path reaches it), and a replay that never
drops an acknowledged event silently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_learning import ENC, make_router

from mixllm_router import FeedbackError, MixLLMRouter
from mixllm_router._exceptions import CheckpointError
from mixllm_router.learning.learner import FeedbackJournal

ROOT = Path(__file__).resolve().parents[2]


def _alias(tmp_path: Path, kind: str) -> Path:
    """Another name for ``tmp_path / "feedback.jsonl"`` (which must exist for a hard link)."""
    real = tmp_path / "feedback.jsonl"
    if kind == "same":
        return real
    if kind == "relative":
        return Path(os.path.relpath(real, Path.cwd()))
    if kind == "dotted":
        (tmp_path / "sub").mkdir(exist_ok=True)
        return tmp_path / "sub" / ".." / "feedback.jsonl"
    alias = tmp_path / f"alias-{kind}.jsonl"
    if kind == "symlink":
        alias.symlink_to(real)
    elif kind == "symlink-dir":
        (tmp_path / "linkdir").symlink_to(tmp_path, target_is_directory=True)
        alias = tmp_path / "linkdir" / "feedback.jsonl"
    else:
        os.link(real, alias)
    return alias


@pytest.mark.parametrize("kind", ["same", "relative", "dotted", "symlink", "symlink-dir", "hardlink"])
def test_a_second_writer_through_any_alias_is_refused(tmp_path: Path, kind: str) -> None:
    first = make_router(tmp_path)
    first.feedback(first.route("poem").decision_id, True)  # holds the journal from now on
    alias = _alias(tmp_path, kind)
    second = make_router(learning={"journal_path": str(alias)})
    d = second.route("poem rose")
    with pytest.raises(FeedbackError, match="in use"):
        second.feedback(d.decision_id, True)
    first.feedback(first.route("math").decision_id, False)
    first.learning.close()
    second.feedback(d.decision_id, True)  # free now: it continues the numbering
    assert [e.seq for e in FeedbackJournal(tmp_path / "feedback.jsonl").read()] == [1, 2, 3]


WRITER = textwrap.dedent(
    """
    import sys, time
    from mixllm_router import FeedbackError
    from test_learning import make_router
    router = make_router(learning={"journal_path": sys.argv[1]})
    acked = refused = 0
    for i in range(int(sys.argv[2])):
        d = router.route(f"poem rose {i}" if i % 2 else f"math sum {i}")
        try:
            router.feedback(d.decision_id, i % 3 != 0)
            acked += 1
        except FeedbackError:
            refused += 1
    time.sleep(0.5)  # hold the journal while the other process tries
    print(acked, refused, flush=True)
    """
)


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_two_processes_through_a_link_lose_nothing(tmp_path: Path, kind: str) -> None:
    """The issue's scenario: two processes, one journal, one of them through a link."""
    (tmp_path / "feedback.jsonl").touch()
    paths = [tmp_path / "feedback.jsonl", _alias(tmp_path, kind)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), str(Path(__file__).parent)])}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(p), "30"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for p in paths]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        results.append([int(x) for x in out.split()])
    acked = sum(a for a, _ in results)
    assert acked >= 30  # the one that got the journal first wrote all of its events
    events = FeedbackJournal(tmp_path / "feedback.jsonl").read()
    assert len(events) == acked and len({e.seq for e in events}) == acked


def _journal_with_lines(tmp_path: Path, n: int = 3) -> tuple[Path, list[str]]:
    router = make_router(tmp_path)
    router.save(tmp_path / "ckpt")
    for i in range(n):
        router.feedback(router.route(f"poem {i}").decision_id, i % 2 == 0)
    router.learning.close()
    path = tmp_path / "feedback.jsonl"
    return path, path.read_text().splitlines(keepends=True)


def _renumber(line: str, seq: int, **changes: object) -> str:
    from mixllm_router.learning.learner import _canonical, _checksum

    entry = json.loads(line)["e"]
    entry.update(seq=seq, **changes)
    text = _canonical(entry)
    return '{"e":' + text + ',"sha":"' + _checksum(text) + '"}\n'


def test_a_reused_sequence_number_is_an_error_not_a_silent_drop(tmp_path: Path) -> None:
    """Two writers that shared a journal (before the lock was per file) left seq 2 twice with
    different events: a replay must not apply one and silently drop the other."""
    path, lines = _journal_with_lines(tmp_path)
    lines.insert(2, _renumber(lines[2], 2, decision_id="another-decision"))
    path.write_text("".join(lines))
    with pytest.raises(FeedbackError, match="sequence number 2"):
        FeedbackJournal(path).read()
    with pytest.raises(CheckpointError, match="sequence number 2"):
        MixLLMRouter.load(tmp_path / "ckpt", encoder=ENC, journal_path=path)
    before = path.read_bytes()
    router = make_router(tmp_path)
    with pytest.raises(FeedbackError, match="sequence number 2"):  # nor is it appended to
        router.feedback(router.route("poem").decision_id, True)
    assert path.read_bytes() == before


def test_a_line_written_twice_is_applied_once(tmp_path: Path) -> None:
    path, lines = _journal_with_lines(tmp_path)
    path.write_text("".join(lines[:2] + [lines[1]] + lines[2:]))  # the same event twice (a copied line)
    assert [e.seq for e in FeedbackJournal(path).read()] == [1, 2, 3]
    assert MixLLMRouter.load(tmp_path / "ckpt", encoder=ENC, journal_path=path).learning.n_events == 3


def test_sequence_numbers_going_back_are_an_error(tmp_path: Path) -> None:
    path, lines = _journal_with_lines(tmp_path)
    path.write_text("".join(lines + [_renumber(lines[0], 1, decision_id="late")]))
    with pytest.raises(FeedbackError, match="sequence number 1"):
        FeedbackJournal(path).read()


def test_a_journal_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "feedback.jsonl"
    os.mkfifo(fifo)
    router = make_router(learning={"journal_path": str(fifo)})
    with pytest.raises(FeedbackError, match="regular file"):
        router.feedback(router.route("poem").decision_id, True)


def test_a_failed_write_is_cut_before_the_next_append(tmp_path: Path, monkeypatch) -> None:
    """A write that fails half-way (disk full) leaves a torn line; the next append must start on a
    clean line, or the journal would hold a damaged line in its middle."""
    router = make_router(tmp_path)
    router.feedback(router.route("poem 0").decision_id, True)
    journal = router.learning.journal
    real_write = os.write
    calls = {"n": 0}

    def half_then_fail(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            real_write(fd, bytes(data)[: len(data) // 2])
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_then_fail)
    d = router.route("poem 1")
    with pytest.raises(FeedbackError, match="could not write"):
        router.feedback(d.decision_id, True)
    monkeypatch.setattr(os, "write", real_write)
    router.feedback(d.decision_id, True)  # refused before: it may be given again
    assert [e.seq for e in FeedbackJournal(journal.path).read()] == [1, 2]
