"""
The daemon's memory across restarts: a small SQLite database in ``state_dir``
(the embedded implementation of `drd.state.base.StateStore`).

It holds the run history, the last run and last success of every job, the
replication bookkeeping behind ``drd_replication_lag_seconds`` (last clean run
per policy and target, pending changes) and the drift records. The daemon
writes it through `State` (the stdlib ``sqlite3`` in a worker thread);
``drd status`` reads it with `read_status` while the daemon runs (WAL mode).
See `drd.metrics` for what the lag bookkeeping means.

The database is a cache of history, not the source of truth: the registries and
the snapshot store are. So a file that is not a database, or fails SQLite's
quick integrity check, is moved aside by the daemon (``state.db.corrupt-<UTC
time>``) and a fresh one started, rather than
the daemon exiting into a restart loop (`State.open` with ``reset_corrupt``).
Every other failure of SQLite is raised as `drd.errors.StateError`.

The module is long because it holds the whole database in one place: the schema, every
SQL statement and the async facade over them, so a schema change is read whole.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from drd.errors import StateCorrupt, StateError
from drd.state import base
from drd.state.base import Holder, JobRecord, QueuedPush, RunRecord, SyncRecord, drift_json, iso
from drd.state.changes import ReplicationChanges, replication_changes

if TYPE_CHECKING:
    from drd.replicate.report import PolicyReport

log = structlog.get_logger(__name__)

DB_NAME = "state.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    kind TEXT NOT NULL,
    trigger TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    outcome TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '{}',
    error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS runs_by_job ON runs (job, id);
CREATE TABLE IF NOT EXISTS jobs (
    job TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_started REAL,
    last_finished REAL,
    last_outcome TEXT,
    last_success REAL,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS sync (
    policy TEXT NOT NULL,
    target TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_clean REAL,
    last_success REAL,
    PRIMARY KEY (policy, target)
);
CREATE TABLE IF NOT EXISTS pending (
    policy TEXT NOT NULL,
    target TEXT NOT NULL,
    repository TEXT NOT NULL,
    tag TEXT NOT NULL,
    since REAL NOT NULL,
    PRIMARY KEY (policy, target, repository, tag)
);
CREATE TABLE IF NOT EXISTS drift (
    policy TEXT NOT NULL,
    target TEXT NOT NULL,
    repository TEXT NOT NULL,
    tag TEXT NOT NULL,
    source_digest TEXT NOT NULL,
    target_digest TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (policy, target, repository, tag)
);
-- Singleton locks (drd.state.locks): on one host, between the daemon and commands.
CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    since REAL NOT NULL,
    expires_at REAL NOT NULL,
    token TEXT NOT NULL
);
"""

# Forward steps after the first schema (``_SCHEMA``, version 1): step N brings the file
# from version N-1 to N (the meta row "schema"). Never edit a released step.
_MIGRATIONS: dict[int, str] = {
    # Pushes announced by webhook, waiting for a run (drd.state.base.QueuedPush).
    2: """
    CREATE TABLE queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        policy TEXT NOT NULL,
        repository TEXT NOT NULL,
        tag TEXT NOT NULL,
        enqueued_at REAL NOT NULL,
        owner TEXT,
        token INTEGER NOT NULL DEFAULT 0,
        due_at REAL NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX queue_waiting ON queue (policy, repository, tag) WHERE owner IS NULL;
    CREATE INDEX queue_due ON queue (policy, due_at);
    """,
}
SCHEMA_VERSION = max(_MIGRATIONS)

_T = TypeVar("_T")

_DELETE_KEYED = "DELETE FROM {} WHERE policy = ? AND target = ? AND repository = ? AND tag = ?"
# The row changes `drd.state.changes` decides, in SQLite's words.
_STEPS = {
    "pend": "INSERT INTO pending (policy, target, repository, tag, since) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (policy, target, repository, tag)"
    " DO UPDATE SET since = min(since, excluded.since)",
    "unpend": _DELETE_KEYED.format("pending"),
    "drift": "INSERT INTO drift (policy, target, repository, tag, source_digest, target_digest,"
    " first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (policy, target, repository, tag) DO UPDATE SET"
    " source_digest = excluded.source_digest, target_digest = excluded.target_digest,"
    " last_seen = excluded.last_seen",
    "undrift": _DELETE_KEYED.format("drift"),
}
# A held entry put back while a push of the same tag is waiting: the waiting one stands for it.
_DROP_DUPLICATE = (
    "DELETE FROM queue WHERE id = ? AND owner = ? AND token = ? AND EXISTS ("
    " SELECT 1 FROM queue w WHERE w.owner IS NULL AND w.policy = queue.policy"
    " AND w.repository = queue.repository AND w.tag = queue.tag)"
)


# SQLite's primary result codes for a damaged file; extended codes keep them in the low byte.
_CORRUPT_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def _corrupt(exc: sqlite3.Error) -> bool:
    """Whether SQLite failed because the file is damaged, not busy, read-only or missing."""
    return ((getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF) in _CORRUPT_CODES


@contextmanager
def _translated(path: Path) -> Iterator[None]:
    """Raise every `sqlite3.Error` as `StateError` (`StateCorrupt` for a damaged file)."""
    try:
        yield
    except sqlite3.Error as exc:
        kind = StateCorrupt if _corrupt(exc) else StateError
        raise kind(f"state database {path}: {exc}", path=str(path)) from exc


def _connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    if read_only:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    else:
        conn = sqlite3.connect(path, timeout=5.0, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def _check_integrity(db: sqlite3.Connection, path: Path) -> None:
    """
    Raise `StateCorrupt` unless SQLite's quick check passes.

    ``quick_check``, not ``integrity_check``: it reads every page but skips the
    index cross-checks, milliseconds for a state database of a few MB.
    """
    problems = [str(row[0]) for row in db.execute("PRAGMA quick_check(3)")]
    if problems != ["ok"]:
        found = " ".join(" ".join(problems).split())[:300]
        raise StateCorrupt(
            f"state database {path} fails its integrity check: {found}", path=str(path)
        )


class _Db:
    """The synchronous core: one connection, one lock, one transaction per call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.migrated: list[int] = []  # the forward steps applied when it was opened
        self._lock = threading.Lock()
        with _translated(path):
            self._conn = _connect(path)
        try:
            with self._tx() as db:
                # WAL, not the rollback journal: `drd status` reads while the daemon writes.
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
                _check_integrity(db, path)
                db.executescript(_SCHEMA)
                db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', '1')")
                self.migrated = _migrate(db, path)
        except BaseException:
            self._conn.close()
            raise

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, _translated(self.path), self._conn:
            yield self._conn

    def close(self) -> None:
        with self._lock, _translated(self.path):
            self._conn.close()

    def read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._tx() as db:
            return fn(db)

    def register_job(self, job: str, kind: str, now: float) -> JobRecord:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO jobs (job, kind, first_seen) VALUES (?, ?, ?)",
                (job, kind, now),
            )
            row = db.execute("SELECT * FROM jobs WHERE job = ?", (job,)).fetchone()
        return _job(row)

    def record_run(self, run: RunRecord) -> None:
        ok = run.outcome == "ok"
        with self._tx() as db:
            db.execute(
                "INSERT INTO runs (job, kind, trigger, started_at, finished_at, outcome, summary,"
                " error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.job,
                    run.kind,
                    run.trigger,
                    run.started_at,
                    run.finished_at,
                    run.outcome,
                    json.dumps(run.summary, default=str),
                    run.error[:2000],
                ),
            )
            db.execute(
                "INSERT OR IGNORE INTO jobs (job, kind, first_seen) VALUES (?, ?, ?)",
                (run.job, run.kind, run.started_at),
            )
            db.execute(
                "UPDATE jobs SET last_started = ?, last_finished = ?, last_outcome = ?,"
                " last_error = ?, last_success = CASE WHEN ? THEN ? ELSE last_success END"
                " WHERE job = ?",
                (
                    run.started_at,
                    run.finished_at,
                    run.outcome,
                    run.error[:2000],
                    ok,
                    run.finished_at,
                    run.job,
                ),
            )
            db.execute(
                "DELETE FROM runs WHERE job = ? AND id <= ("
                " SELECT id FROM runs WHERE job = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (run.job, run.job, base.KEEP_RUNS),
            )

    def register_policy(self, policy: str, targets: Iterable[str], now: float) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO sync (policy, target, first_seen) VALUES (?, ?, ?)",
                [(policy, target, now) for target in targets],
            )

    def note_push(
        self, policy: str, targets: Iterable[str], repository: str, tag: str, at: float
    ) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT INTO pending (policy, target, repository, tag, since)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (policy, target, repository, tag)"
                " DO UPDATE SET since = min(since, excluded.since)",
                [(policy, target, repository, tag, at) for target in targets],
            )

    def record_replication(
        self, report: PolicyReport, full: bool, started_at: float, finished_at: float
    ) -> None:
        changes = replication_changes(
            report, full=full, started_at=started_at, finished_at=finished_at
        )
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO sync (policy, target, first_seen) VALUES (?, ?, ?)",
                changes.sync_rows(),
            )
            for step in changes.steps:
                db.execute(_STEPS[step.kind], step.params)
            for target, success in changes.watermarks():
                db.execute(
                    "UPDATE sync SET last_clean = ?,"
                    " last_success = CASE WHEN ? THEN ? ELSE last_success END"
                    " WHERE policy = ? AND target = ?",
                    (finished_at, success, finished_at, changes.policy, target),
                )
                if full:
                    _forget_unseen(db, changes, target)


def _migrate(db: sqlite3.Connection, path: Path) -> list[int]:
    """Apply the missing forward steps (`_MIGRATIONS`); return the versions applied."""
    row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    found = int(row["value"])
    if found > SCHEMA_VERSION:
        raise StateError(
            f"state database {path} is at schema version {found}, newer than this drd knows"
            f" ({SCHEMA_VERSION}): upgrade drd",
            path=str(path),
        )
    applied = list(range(found + 1, SCHEMA_VERSION + 1))
    for version in applied:
        # Statement by statement: executescript would commit the surrounding transaction.
        for statement in _MIGRATIONS[version].split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(version),))
        log.info("state.migrated", database=str(path), version=version)
    return applied


def _forget_unseen(db: sqlite3.Connection, changes: ReplicationChanges, target: str) -> None:
    """After a complete full pass: what it did not see failing or drifting is gone."""
    where = (changes.policy, target)
    older = db.execute(
        "SELECT repository, tag FROM pending WHERE policy = ? AND target = ? AND since < ?",
        (*where, changes.started_at),
    ).fetchall()
    db.executemany(_DELETE_KEYED.format("pending"), changes.forgotten_pending(target, older))
    drifting = db.execute(
        "SELECT repository, tag FROM drift WHERE policy = ? AND target = ?", where
    ).fetchall()
    db.executemany(_DELETE_KEYED.format("drift"), changes.resolved_drift(target, drifting))


def _job(row: sqlite3.Row) -> JobRecord:
    return JobRecord.from_row(row)


def _jobs(db: sqlite3.Connection) -> list[JobRecord]:
    return [_job(row) for row in db.execute("SELECT * FROM jobs ORDER BY job")]


def _syncs(db: sqlite3.Connection) -> list[SyncRecord]:
    rows = db.execute(
        "SELECT s.policy, s.target, s.first_seen, s.last_clean, s.last_success,"
        " (SELECT count(*) FROM pending p WHERE p.policy = s.policy AND p.target = s.target)"
        "   AS pending,"
        " (SELECT min(since) FROM pending p WHERE p.policy = s.policy AND p.target = s.target)"
        "   AS oldest,"
        " (SELECT count(*) FROM drift d WHERE d.policy = s.policy AND d.target = s.target)"
        "   AS drift"
        " FROM sync s ORDER BY s.policy, s.target"
    ).fetchall()
    return [SyncRecord.from_row(r) for r in rows]


def _runs(db: sqlite3.Connection, limit: int) -> list[RunRecord]:
    rows = db.execute("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    return [RunRecord.from_row(r) for r in rows]


def _drift_rows(db: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = db.execute("SELECT * FROM drift ORDER BY policy, target, repository, tag").fetchall()
    return [dict(row) for row in rows]


def _aside_name(path: Path, now: datetime) -> Path:
    """``state.db.corrupt-<UTC time>``, with a counter when that name is taken."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate = path.with_name(f"{path.name}.corrupt-{stamp}")
    count = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.corrupt-{stamp}.{count}")
        count += 1
    return candidate


def _move_aside(path: Path, now: datetime) -> Path:
    """Rename the database and its WAL files beside it; return the new database path."""
    aside = _aside_name(path, now)
    # Any -wal and -shm left belong to the old file: beside it they keep it whole for a
    # post-mortem, beside the fresh database they would be read as its own.
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            os.replace(companion, aside.with_name(aside.name + suffix))
    os.replace(path, aside)
    return aside


class State:
    """
    The state database, used from asyncio: every call runs in a worker thread.

    Open it with ``async with await State.open(state_dir) as state``. Every call
    raises `StateError` when the database is unusable (a broken disk, a full one).
    """

    def __init__(self, db: _Db, moved_aside: Path | None = None) -> None:
        self._db = db
        self.moved_aside = moved_aside

    @property
    def path(self) -> Path:
        """Where the database file is."""
        return self._db.path

    @classmethod
    async def open(cls, state_dir: Path, *, reset_corrupt: bool = False) -> State:
        """
        Open (creating when missing) ``state_dir/state.db``.

        With *reset_corrupt*, a file that is not a database or fails the quick
        integrity check is renamed ``state.db.corrupt-<UTC time>`` and a fresh
        database started: logged as ``state.reset``, and `moved_aside` says where
        the old file went. Only the daemon asks for it, when it starts: a command
        running beside it must not pull the file from under it.

        Raises:
            StateCorrupt: the file is damaged and *reset_corrupt* is false.
            StateError: SQLite cannot use the file otherwise (busy, read-only, full).
            OSError: the directory cannot be created or the file not moved.
        """

        def go() -> State:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = state_dir / DB_NAME
            try:
                return cls(_Db(path))
            except StateCorrupt as exc:
                if not reset_corrupt:
                    raise
                aside = _move_aside(path, datetime.now(UTC))
                log.error(  # noqa: TRY400 - the reason is in the line, a traceback adds nothing
                    "state.reset",
                    reason=str(exc),
                    moved_to=str(aside),
                    consequence="run history, last successes and pending pushes start afresh",
                )
                return cls(_Db(path), aside)

        return await asyncio.to_thread(go)

    async def close(self) -> None:
        """Close the database."""
        await asyncio.to_thread(self._db.close)

    async def __aenter__(self) -> State:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def register_job(self, job: str, kind: str, now: float) -> JobRecord:
        """Remember when *job* was first scheduled; return what is known of it."""
        return await asyncio.to_thread(self._db.register_job, job, kind, now)

    async def record_run(self, run: RunRecord) -> None:
        """Append *run* to the history and update its job's last run and last success."""
        await asyncio.to_thread(self._db.record_run, run)

    async def register_policy(self, policy: str, targets: Iterable[str], now: float) -> None:
        """Remember when each (policy, target) was first scheduled: the lag's first watermark."""
        await asyncio.to_thread(self._db.register_policy, policy, list(targets), now)

    async def note_push(
        self, policy: str, targets: Iterable[str], repository: str, tag: str, at: float
    ) -> None:
        """A push the source announced: pending at every target until a run brings it there."""
        await asyncio.to_thread(self._db.note_push, policy, list(targets), repository, tag, at)

    async def record_replication(
        self, report: PolicyReport, *, full: bool, started_at: float, finished_at: float
    ) -> None:
        """
        Update pending changes, drift and the watermark from one replication run.

        Failed items become (or stay) pending; copied, skipped, drifted and rejected
        ones stop being pending. A run that completed its pass moves ``last_clean``;
        a complete *full* pass also sets ``last_success`` (when nothing failed at that
        target: rejections do not stop it) and forgets pending and drift entries it no longer saw.
        """
        await asyncio.to_thread(self._db.record_replication, report, full, started_at, finished_at)

    @property
    def migrated(self) -> list[int]:
        """The forward schema steps applied when the database was opened."""
        return self._db.migrated

    async def enqueue(self, policy: str, pushes: Iterable[tuple[str, str]], at: float) -> None:
        """Queue each (repository, tag) for *policy*; one already waiting is not added twice."""
        rows = [(policy, repository, tag, at) for repository, tag in pushes]
        await self._read(
            lambda db: db.executemany(
                "INSERT OR IGNORE INTO queue (policy, repository, tag, enqueued_at)"
                " VALUES (?, ?, ?, ?)",
                rows,
            )
        )

    async def claim_queued(
        self, policy: str, node: str, *, ttl: float, limit: int
    ) -> list[QueuedPush]:
        """Up to *limit* due entries of *policy*, oldest first, leased to *node* for *ttl* s."""

        def go(db: sqlite3.Connection) -> list[QueuedPush]:
            now = time.time()
            (token,) = db.execute("SELECT coalesce(max(token), 0) + 1 FROM queue").fetchone()
            rows = db.execute(
                "UPDATE queue SET owner = ?, token = ?, due_at = ? WHERE id IN ("
                " SELECT id FROM queue WHERE policy = ? AND due_at <= ? ORDER BY id LIMIT ?)"
                " RETURNING id, policy, repository, tag, token",
                (node, token, now + ttl, policy, now, limit),
            ).fetchall()
            return sorted((QueuedPush.from_row(r) for r in rows), key=lambda e: e.id)

        return await self._read(go)

    async def renew_queued(self, node: str, entries: Iterable[QueuedPush], ttl: float) -> int:
        """Extend the lease of each entry *node* still holds; return how many it holds."""
        keys = [(e.id, e.token) for e in entries]

        def go(db: sqlite3.Connection) -> int:
            now = time.time()
            held = 0
            for entry_id, token in keys:
                held += db.execute(
                    "UPDATE queue SET due_at = ? WHERE id = ? AND owner = ? AND token = ?"
                    " AND due_at > ?",
                    (now + ttl, entry_id, node, token, now),
                ).rowcount
            return held

        return await self._read(go)

    async def finish_queued(
        self, node: str, entries: Iterable[QueuedPush], *, done: bool, retry_in: float = 0.0
    ) -> None:
        """Drop the entries (*done*), or put them back, due again in *retry_in* seconds."""
        keys = [(e.id, node, e.token) for e in entries]

        def go(db: sqlite3.Connection) -> None:
            if done:
                db.executemany("DELETE FROM queue WHERE id = ? AND owner = ? AND token = ?", keys)
                return
            db.executemany(_DROP_DUPLICATE, keys)
            db.executemany(
                "UPDATE queue SET owner = NULL, due_at = ? WHERE id = ? AND owner = ?"
                " AND token = ?",
                [(time.time() + retry_in, *key) for key in keys],
            )

        await self._read(go)

    async def free_queued(self, node: str) -> None:
        """Put back every entry *node* holds (it stops, or starts again after a crash)."""

        def go(db: sqlite3.Connection) -> None:
            rows = db.execute("SELECT id, token FROM queue WHERE owner = ?", (node,)).fetchall()
            db.executemany(_DROP_DUPLICATE, [(r["id"], node, r["token"]) for r in rows])
            db.execute("UPDATE queue SET owner = NULL, due_at = 0 WHERE owner = ?", (node,))

        await self._read(go)

    async def queue_depth(self, *, due: bool = False) -> dict[str, int]:
        """Per policy, the entries no live node holds; with *due*, those takeable now."""
        where = "due_at <= ?" if due else "owner IS NULL OR due_at <= ?"

        def go(db: sqlite3.Connection) -> dict[str, int]:
            rows = db.execute(
                f"SELECT policy, count(*) AS n FROM queue WHERE {where}"  # noqa: S608 - constant
                " GROUP BY policy ORDER BY policy",
                (time.time(),),
            ).fetchall()
            return {r["policy"]: int(r["n"]) for r in rows}

        return await self._read(go)

    async def jobs(self) -> list[JobRecord]:
        """Every job ever scheduled."""
        return await self._read(_jobs)

    async def syncs(self) -> list[SyncRecord]:
        """The replication bookkeeping of every (policy, target)."""
        return await self._read(_syncs)

    async def pending(self, policy: str) -> list[tuple[str, str]]:
        """The (repository, tag) pairs still pending at any target of *policy*."""

        def go(db: sqlite3.Connection) -> list[tuple[str, str]]:
            rows = db.execute(
                "SELECT DISTINCT repository, tag FROM pending WHERE policy = ?"
                " ORDER BY repository, tag",
                (policy,),
            ).fetchall()
            return [(r["repository"], r["tag"]) for r in rows]

        return await self._read(go)

    async def runs(self, limit: int = 50) -> list[RunRecord]:
        """The most recent runs, newest first."""
        return await self._read(lambda db: _runs(db, limit))

    async def drift(self) -> list[dict[str, Any]]:
        """Every drifted tag."""
        return await self._read(_drift_rows)

    async def take_lock(
        self, name: str, *, node: str, host: str, pid: int, token: str, ttl: float
    ) -> Holder | None:
        """
        Take the lock *name* unless it is held unexpired: None when taken, else its holder.

        One statement (an upsert that replaces only an expired row), so two processes on
        this host cannot both take it: SQLite serialises the writers.
        """
        now = time.time()

        def go(db: sqlite3.Connection) -> Holder | None:
            db.execute(
                "INSERT INTO locks (name, node, host, pid, since, expires_at, token)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                " node = excluded.node, host = excluded.host, pid = excluded.pid,"
                " since = excluded.since, expires_at = excluded.expires_at,"
                " token = excluded.token WHERE locks.expires_at < excluded.since",
                (name, node, host, pid, now, now + ttl, token),
            )
            row = db.execute("SELECT * FROM locks WHERE name = ?", (name,)).fetchone()
            return None if row["token"] == token else Holder.from_row(row)

        return await asyncio.to_thread(self._db.read, go)  # one transaction

    async def renew_lock(self, name: str, token: str, ttl: float) -> bool:
        """Extend the lock held under *token* by *ttl*; False when it is no longer held."""
        now = time.time()

        def go(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "UPDATE locks SET expires_at = ? WHERE name = ? AND token = ? AND expires_at >= ?",
                (now + ttl, name, token, now),
            )
            return cur.rowcount == 1

        return await asyncio.to_thread(self._db.read, go)

    async def drop_lock(self, name: str, token: str) -> None:
        """Release the lock held under *token* (nothing if it is no longer held)."""

        def go(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM locks WHERE name = ? AND token = ?", (name, token))

        await asyncio.to_thread(self._db.read, go)

    async def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        return await asyncio.to_thread(self._db.read, fn)


def read_status(state_dir: Path, now: float, *, runs: int = 20) -> dict[str, Any]:
    """
    The status document of ``drd status``, read-only from ``state_dir/state.db``.

    Raises:
        FileNotFoundError: there is no state database (the daemon never ran there).
        StateCorrupt: the file is damaged (it is left as it is: `drd run` moves it aside).
        StateError: the file cannot be read otherwise.
    """
    path = state_dir / DB_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no state database at {path}")
    with _translated(path):
        conn = _connect(path, read_only=True)
        try:
            jobs, syncs = _jobs(conn), _syncs(conn)
            history, drift = _runs(conn, runs), _drift_rows(conn)
        finally:
            conn.close()
    return {
        "state_db": str(path),
        "now": iso(now),
        "jobs": [j.to_json() for j in jobs],
        "replication": [s.to_json(now) for s in syncs],
        "drift": [drift_json(d) for d in drift],
        "runs": [r.to_json() for r in history],
    }
