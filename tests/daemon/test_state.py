"""
The state database: history, last success, pending changes, drift; it survives a restart.

The behaviour tests run against both backends (``backend``: SQLite in a temporary
directory, PostgreSQL on the session's throwaway server); damage and reset are SQLite's.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog

from drd.errors import RegistryUnavailable, StateCorrupt, StateError
from drd.state import RunRecord, State, StateStore, SyncRecord, read_status
from drd.state import base as state_base
from drd.state.base import status_document
from drd.state.postgres import Connection, PostgresState
from tests.daemon.reports import DIGEST_A, DIGEST_B, item, report


@dataclass
class Backend:
    """Opens the state under test: SQLite in *directory*, or PostgreSQL at *url*."""

    directory: Path
    url: str | None = None

    async def open(self) -> State | PostgresState:
        if self.url is None:
            return await State.open(self.directory)
        return await PostgresState.open(Connection(conninfo=self.url))

    async def document(self, now: float) -> dict[str, Any]:
        """What `drd status` prints, read beside the open writer."""
        if self.url is None:
            return read_status(self.directory, now)
        async with await PostgresState.open(Connection(self.url), migrate=False) as reader:
            return await status_document(reader, reader.where, now)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend(tmp_path)
    return Backend(tmp_path, request.getfixturevalue("postgres_url"))


async def sync_of(state: StateStore, policy: str = "prod", target: str = "dst") -> SyncRecord:
    [record] = [s for s in await state.syncs() if (s.policy, s.target) == (policy, target)]
    return record


async def test_before_any_run_the_watermark_is_when_the_policy_was_first_scheduled(
    backend: Backend,
) -> None:
    """A policy that never completed a pass is behind since drd first scheduled it."""
    async with await backend.open() as state:
        await state.register_policy("prod", ["dst"], 100.0)
        await state.register_policy("prod", ["dst"], 500.0)  # a restart keeps the first time
        record = await sync_of(state)
    assert (record.watermark, record.last_clean, record.last_success) == (100.0, None, None)
    assert record.success_mark == 100.0


async def test_a_clean_full_pass_sets_the_watermark_and_last_success(backend: Backend) -> None:
    """After a clean full pass the lag is measured from its end; last success is its end."""
    async with await backend.open() as state:
        await state.register_policy("prod", ["dst"], 100.0)
        passed = report([item("v1", "copied"), item("v2", "skipped")])
        await state.record_replication(passed, full=True, started_at=110.0, finished_at=120.0)
        record = await sync_of(state)
    assert (
        record.watermark,
        record.last_clean,
        record.last_success,
        record.pending,
    ) == (120.0, 120.0, 120.0, 0)


async def test_a_push_is_pending_until_a_run_copies_it(backend: Backend) -> None:
    """An announced push holds the watermark at its arrival; the run that copies it clears it."""
    async with await backend.open() as state:
        await state.register_policy("prod", ["dst", "dr2"], 100.0)
        await state.record_replication(
            report(targets=["dst", "dr2"]), full=True, started_at=110.0, finished_at=120.0
        )
        await state.note_push("prod", ["dst", "dr2"], "team/app", "v3", 130.0)
        await state.note_push("prod", ["dst", "dr2"], "team/app", "v3", 135.0)  # again, later
        pending = await sync_of(state)
        assert await state.pending("prod") == [("team/app", "v3")]
        # Copied at dst only: dr2 keeps it pending.
        await state.record_replication(
            report(
                [item("v3", "copied"), item("v3", "failed", target="dr2")],
                targets=["dst", "dr2"],
            ),
            full=False,
            started_at=131.0,
            finished_at=132.0,
        )
        dst, dr2 = await sync_of(state), await sync_of(state, target="dr2")
    assert (pending.pending, pending.oldest_pending, pending.watermark) == (1, 130.0, 120.0)
    assert (dst.pending, dst.watermark, dst.last_success) == (0, 132.0, 120.0)
    assert (dr2.pending, dr2.watermark, dr2.last_clean) == (1, 130.0, 132.0)


async def test_a_failed_tag_is_pending_since_the_pass_that_failed_it(backend: Backend) -> None:
    """A tag that failed to copy keeps the lag growing from that pass's start, and no success."""
    async with await backend.open() as state:
        await state.register_policy("prod", ["dst"], 100.0)
        await state.record_replication(
            report([item("v1", "copied"), item("v2", "failed", error="RegistryUnavailable")]),
            full=True,
            started_at=200.0,
            finished_at=210.0,
        )
        record = await sync_of(state)
    assert (
        record.pending,
        record.watermark,
        record.last_clean,
        record.last_success,
    ) == (1, 200.0, 210.0, None)


async def test_a_full_pass_forgets_pending_tags_it_no_longer_sees(backend: Backend) -> None:
    """A failed tag deleted at the source stops counting; a push newer than the pass stays."""
    async with await backend.open() as state:
        await state.register_policy("prod", ["dst"], 100.0)
        await state.record_replication(
            report([item("gone", "failed")]), full=True, started_at=200.0, finished_at=210.0
        )
        await state.note_push("prod", ["dst"], "team/app", "new", 305.0)
        await state.record_replication(report(), full=True, started_at=300.0, finished_at=310.0)
        record = await sync_of(state)
        assert await state.pending("prod") == [("team/app", "new")]
    assert (record.pending, record.watermark, record.last_success) == (1, 305.0, 310.0)


async def test_a_pass_that_could_not_list_does_not_move_the_watermark(backend: Backend) -> None:
    """When the pass itself failed (source unreachable), last clean and last success stay."""
    async with await backend.open() as state:
        await state.register_policy("prod", ["dst"], 100.0)
        await state.record_replication(report(), full=True, started_at=110.0, finished_at=120.0)
        await state.record_replication(
            report(error=RegistryUnavailable("cannot talk to src")),
            full=True,
            started_at=200.0,
            finished_at=260.0,
        )
        record = await sync_of(state)
    assert (record.watermark, record.last_success) == (120.0, 120.0)


async def test_rejected_items_are_not_pending_and_the_pass_a_success(backend: Backend) -> None:
    """
    An unverified artifact is never replicated, so it is no lag; refusing it is the trust
    policy working, so the pass is a success (`drd status` shows no "last success never").
    """
    async with await backend.open() as state:
        await state.register_policy("prod", ["dst"], 100.0)
        await state.note_push("prod", ["dst"], "team/app", "v9", 105.0)
        await state.record_replication(
            report([item("v9", "rejected", reason="no-signature")]),
            full=True,
            started_at=110.0,
            finished_at=120.0,
        )
        record = await sync_of(state)
    assert (record.pending, record.watermark, record.last_success) == (0, 120.0, 120.0)


async def test_drift_is_recorded_and_resolved_by_a_complete_full_pass(backend: Backend) -> None:
    """Drifted tags are kept with both digests; a full pass that no longer sees them clears them."""
    async with await backend.open() as state:
        drifted = item("v1", "drift", moved_from=DIGEST_B)
        await state.record_replication(
            report([drifted]), full=True, started_at=1.0, finished_at=2.0
        )
        await state.record_replication(report(), full=False, started_at=3.0, finished_at=4.0)
        kept = await sync_of(state)
        document = await backend.document(5.0)
        await state.record_replication(report(), full=True, started_at=5.0, finished_at=6.0)
        cleared = await sync_of(state)
    assert (kept.drift, cleared.drift) == (1, 0)
    [row] = document["drift"]
    assert (
        row["repository"],
        row["tag"],
        row["source_digest"],
        row["target_digest"],
    ) == ("team/app", "v1", DIGEST_A, DIGEST_B)


async def test_history_and_bookkeeping_survive_a_restart(backend: Backend) -> None:
    """Closing and reopening the database keeps runs, last success and pending changes."""
    async with await backend.open() as state:
        await state.register_job("replicate:prod", "replicate", 50.0)
        await state.record_run(
            RunRecord("replicate:prod", "replicate", "schedule", 60.0, 70.0, "ok", {"copied": 2})
        )
        await state.record_run(
            RunRecord("replicate:prod", "replicate", "schedule", 80.0, 90.0, "error", {}, "boom")
        )
        await state.note_push("prod", ["dst"], "team/app", "v1", 95.0)
    async with await backend.open() as state:
        [job] = await state.jobs()
        runs = await state.runs()
        pending = await state.pending("prod")
    assert (
        job.first_seen,
        job.last_started,
        job.last_finished,
        job.last_outcome,
        job.last_success,
        job.last_error,
    ) == (50.0, 80.0, 90.0, "error", 70.0, "boom")
    assert [(r.outcome, r.summary) for r in runs] == [("error", {}), ("ok", {"copied": 2})]
    assert pending == [("team/app", "v1")]


async def test_history_is_bounded_per_job(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the newest runs of each job are kept."""
    monkeypatch.setattr(state_base, "KEEP_RUNS", 3)
    async with await backend.open() as state:
        for i in range(6):
            await state.record_run(RunRecord("a", "ping", "schedule", i, i + 0.5, "ok", {}))
        await state.record_run(RunRecord("b", "ping", "schedule", 9, 9.5, "ok", {}))
        runs = await state.runs()
    assert [(r.job, r.started_at) for r in runs] == [("b", 9), ("a", 5), ("a", 4), ("a", 3)]


async def test_status_reads_while_the_daemon_holds_the_database(backend: Backend) -> None:
    """`read_status` opens read-only beside the writer and computes the lag from the watermark."""
    async with await backend.open() as state:
        await state.register_policy("prod", ["dst"], 100.0)
        await state.record_replication(
            report([item("v1", "copied")]), full=True, started_at=110.0, finished_at=120.0
        )
        await state.record_run(
            RunRecord("replicate:prod", "replicate", "schedule", 110.0, 120.0, "ok", {"copied": 1})
        )
        document = await backend.document(150.0)
    [rep] = document["replication"]
    assert (rep["policy"], rep["target"], rep["lag_s"], rep["pending"]) == ("prod", "dst", 30.0, 0)
    assert [j["job"] for j in document["jobs"]] == ["replicate:prod"]
    assert [r["summary"] for r in document["runs"]] == [{"copied": 1}]


def test_status_without_a_database_says_where_it_looked(tmp_path: Path) -> None:
    """No state.db is a FileNotFoundError naming the path; a non-database is StateCorrupt."""
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "state.db")):
        read_status(tmp_path, 0.0)
    garbage = b"not a database" * 100
    (tmp_path / "state.db").write_bytes(garbage)
    with pytest.raises(StateCorrupt, match="file is not a database"):
        read_status(tmp_path, 0.0)
    assert (tmp_path / "state.db").read_bytes() == garbage  # a reader leaves it be


GARBAGE = b"\x00garbage, not SQLite\xff" * 512


async def test_a_file_that_is_not_a_database_is_moved_aside_and_started_afresh(
    tmp_path: Path,
) -> None:
    """Garbage in state.db: StateCorrupt for a command; the daemon's open sets it aside."""
    db = tmp_path / "state.db"
    db.write_bytes(GARBAGE)
    with pytest.raises(StateCorrupt, match="file is not a database") as raised:
        await State.open(tmp_path)
    assert raised.value.path == str(db)
    assert db.read_bytes() == GARBAGE

    with structlog.testing.capture_logs() as logs:
        async with await State.open(tmp_path, reset_corrupt=True) as state:
            await state.record_run(RunRecord("a", "ping", "schedule", 1.0, 2.0, "ok", {}))
            assert [r.job for r in await state.runs()] == ["a"]
            aside = state.moved_aside
    assert aside is not None
    assert aside.parent == tmp_path
    assert aside.name.startswith("state.db.corrupt-")
    assert aside.name.endswith("Z")
    assert aside.read_bytes() == GARBAGE
    [line] = [e for e in logs if e["event"] == "state.reset"]
    assert (line["log_level"], line["moved_to"]) == ("error", str(aside))
    assert "file is not a database" in line["reason"]


def corrupt_copies(state_dir: Path) -> list[Path]:
    return sorted(state_dir.glob("state.db.corrupt-*"))


def _damage_pages(db: Path) -> None:
    """Overwrite the middle of a few b-tree pages, as a torn write or a bad disk would."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(db.read_bytes())
    assert len(data) >= 8 * 4096, "the database should span several pages"
    for page in (3, 5):
        data[page * 4096 + 10 : page * 4096 + 210] = b"\xa5" * 200
    db.write_bytes(bytes(data))


async def test_a_malformed_database_fails_the_integrity_check_and_is_reset(
    tmp_path: Path,
) -> None:
    """A real database with damaged pages is caught on open, not at some later write."""
    async with await State.open(tmp_path) as state:
        for i in range(300):
            await state.record_run(
                RunRecord(f"job{i % 7}", "ping", "schedule", i, i + 1.0, "ok", {"x": "y" * 50})
            )
    _damage_pages(tmp_path / "state.db")
    damaged = (tmp_path / "state.db").read_bytes()
    with pytest.raises(StateCorrupt, match=r"integrity check|malformed"):
        await State.open(tmp_path)

    async with await State.open(tmp_path, reset_corrupt=True) as state:
        assert await state.runs() == []
        assert state.moved_aside is not None
        assert state.moved_aside.read_bytes() == damaged
    # Started afresh, the new file opens cleanly next time and is not moved again.
    async with await State.open(tmp_path, reset_corrupt=True) as state:
        assert state.moved_aside is None
    assert len(corrupt_copies(tmp_path)) == 1


async def test_an_unusable_path_is_a_state_error_and_is_not_moved(tmp_path: Path) -> None:
    """Only damage resets: a state.db that SQLite cannot open at all is reported, kept."""
    (tmp_path / "state.db").mkdir()
    with pytest.raises(StateError) as raised:
        await State.open(tmp_path, reset_corrupt=True)
    assert not isinstance(raised.value, StateCorrupt)
    assert "unable to open database file" in str(raised.value)
    assert (tmp_path / "state.db").is_dir()
    assert corrupt_copies(tmp_path) == []
