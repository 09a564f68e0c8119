"""
The state in PostgreSQL, shared by every node of a cluster: the second implementation of
`drd.state.base.StateStore`, beside the embedded SQLite one (`drd.state.sqlite`).

It holds the same records as the SQLite database (run history, jobs, replication
bookkeeping, drift) in the same shape, so ``drd status`` reads the same document from
either. Connections come from a bounded `psycopg_pool.AsyncConnectionPool`; each call is
one transaction. Every failure of the server or the network is raised as
`drd.errors.StateError`, whose message names the server as ``host:port/db`` and never
the password.

The schema is versioned: `MIGRATIONS` lists forward steps, numbered from 1, and
`migrate` applies the missing ones in order under an advisory lock, so nodes starting at
once apply each step exactly once. A database whose version is newer than this drd knows
is refused (an older node must not write a schema it does not understand).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import psycopg
import structlog
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from drd.errors import StateError
from drd.state import base
from drd.state.base import Holder, JobRecord, QueuedPush, RunRecord, SyncRecord
from drd.state.changes import ReplicationChanges, replication_changes

if TYPE_CHECKING:
    from drd.replicate.report import PolicyReport

log = structlog.get_logger(__name__)
# The pool logs every failed reconnect as plain text; drd says it once, as state.unreachable.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

# pg_advisory_xact_lock key of the migration step: "drd" and the schema, as one bigint.
_MIGRATION_LOCK = 0x647264_5343484D

# Forward steps; step N brings the schema from version N-1 to N. Never edit a released step.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        id BIGSERIAL PRIMARY KEY,
        job TEXT NOT NULL,
        kind TEXT NOT NULL,
        trigger TEXT NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        finished_at DOUBLE PRECISION NOT NULL,
        outcome TEXT NOT NULL,
        summary TEXT NOT NULL DEFAULT '{}',
        error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX runs_by_job ON runs (job, id);
    CREATE TABLE jobs (
        job TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        first_seen DOUBLE PRECISION NOT NULL,
        last_started DOUBLE PRECISION,
        last_finished DOUBLE PRECISION,
        last_outcome TEXT,
        last_success DOUBLE PRECISION,
        last_error TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE sync (
        policy TEXT NOT NULL,
        target TEXT NOT NULL,
        first_seen DOUBLE PRECISION NOT NULL,
        last_clean DOUBLE PRECISION,
        last_success DOUBLE PRECISION,
        PRIMARY KEY (policy, target)
    );
    CREATE TABLE pending (
        policy TEXT NOT NULL,
        target TEXT NOT NULL,
        repository TEXT NOT NULL,
        tag TEXT NOT NULL,
        since DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (policy, target, repository, tag)
    );
    CREATE TABLE drift (
        policy TEXT NOT NULL,
        target TEXT NOT NULL,
        repository TEXT NOT NULL,
        tag TEXT NOT NULL,
        source_digest TEXT NOT NULL,
        target_digest TEXT NOT NULL,
        first_seen DOUBLE PRECISION NOT NULL,
        last_seen DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (policy, target, repository, tag)
    );
    """,
    # 2: units of work shared by the nodes of a cluster, claimed with a lease.
    """
    CREATE FUNCTION drd_now() RETURNS DOUBLE PRECISION
        AS $$ SELECT extract(epoch FROM clock_timestamp())::DOUBLE PRECISION $$
        LANGUAGE sql VOLATILE;
    CREATE SEQUENCE lease_tokens;
    CREATE TABLE leases (
        policy TEXT NOT NULL,
        target TEXT NOT NULL,
        repository TEXT NOT NULL,
        owner TEXT,
        token BIGINT NOT NULL DEFAULT 0,
        expires_at DOUBLE PRECISION NOT NULL DEFAULT 0,
        done_at DOUBLE PRECISION,
        PRIMARY KEY (policy, target, repository)
    );
    CREATE INDEX leases_by_owner ON leases (owner) WHERE owner IS NOT NULL;
    CREATE TABLE nodes (
        node TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        version TEXT NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        heartbeat DOUBLE PRECISION NOT NULL
    );
    """,
    # 3: cluster-wide singleton locks (failover, failback), with who holds them since when.
    """
    CREATE TABLE locks (
        name TEXT PRIMARY KEY,
        node TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        since DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        token TEXT NOT NULL
    );
    """,
    # 4: pushes announced by webhook to any node, waiting for any node (drd.state.base.QueuedPush).
    """
    CREATE TABLE queue (
        id BIGSERIAL PRIMARY KEY,
        policy TEXT NOT NULL,
        repository TEXT NOT NULL,
        tag TEXT NOT NULL,
        enqueued_at DOUBLE PRECISION NOT NULL,
        owner TEXT,
        token BIGINT NOT NULL DEFAULT 0,
        due_at DOUBLE PRECISION NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX queue_waiting ON queue (policy, repository, tag) WHERE owner IS NULL;
    CREATE INDEX queue_due ON queue (policy, due_at);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS drd_schema (
    version INTEGER PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""

_UPSERT_PENDING = (
    "INSERT INTO pending (policy, target, repository, tag, since) VALUES (%s, %s, %s, %s, %s)"
    " ON CONFLICT (policy, target, repository, tag)"
    " DO UPDATE SET since = LEAST(pending.since, excluded.since)"
)
_DROP_DUPLICATE = (
    "DELETE FROM queue q WHERE q.id = %s AND q.owner = %s AND q.token = %s AND EXISTS ("
    " SELECT 1 FROM queue w WHERE w.owner IS NULL AND w.policy = q.policy"
    " AND w.repository = q.repository AND w.tag = q.tag)"
)
_DELETE_KEYED = "DELETE FROM {} WHERE policy = %s AND target = %s AND repository = %s AND tag = %s"
# The row changes `drd.state.changes` decides, in PostgreSQL's words.
_STEPS = {
    "pend": _UPSERT_PENDING,
    "unpend": _DELETE_KEYED.format("pending"),
    "drift": "INSERT INTO drift (policy, target, repository, tag, source_digest,"
    " target_digest, first_seen, last_seen) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (policy, target, repository, tag)"
    " DO UPDATE SET source_digest = excluded.source_digest,"
    " target_digest = excluded.target_digest, last_seen = excluded.last_seen",
    "undrift": _DELETE_KEYED.format("drift"),
}


@dataclass(frozen=True)
class Connection:
    """
    Where the state lives and how to reach it: plain values, built by the app layer.

    *conninfo* is the ``postgresql://`` URL (no password in it); the password and the TLS
    settings are passed to libpq apart from it, so no message ever shows them.
    """

    conninfo: str
    password: str | None = None
    sslmode: str = "prefer"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    pool_size: int = 4
    connect_timeout: float = 10.0

    @property
    def where(self) -> str:
        """``host:port/db`` for messages."""
        info = psycopg.conninfo.conninfo_to_dict(self.conninfo)
        return f"{info.get('host', '')}:{info.get('port', 5432)}/{info.get('dbname', '')}"

    def kwargs(self) -> dict[str, Any]:
        """libpq keywords besides the URL."""
        extra: dict[str, Any] = {
            "sslmode": self.sslmode,
            "connect_timeout": max(1, round(self.connect_timeout)),
            "application_name": "drd",
        }
        if self.password is not None:
            extra["password"] = self.password
        for key, path in (
            ("sslrootcert", self.ca_file),
            ("sslcert", self.cert_file),
            ("sslkey", self.key_file),
        ):
            if path is not None:
                extra[key] = str(path)
        if self.sslmode == "verify-full" and self.ca_file is None:
            extra["sslrootcert"] = "system"
        return extra


def _error(where: str, exc: BaseException) -> StateError:
    """A `StateError` naming the server, with libpq's first line (never the conninfo)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StateError(f"state database {where}: {text}", path=where)


class PostgresState:
    """
    The state in PostgreSQL, used from asyncio.

    Open it with ``async with await PostgresState.open(connection) as state``. Every call
    raises `StateError` when the server cannot be reached or refuses the statement.
    """

    moved_aside: Path | None = None  # a server's database is never moved aside

    def __init__(self, pool: AsyncConnectionPool[Any], where: str) -> None:
        self._pool = pool
        self.where = where

    @property
    def path(self) -> str:
        """Where the database is, as messages name it."""
        return self.where

    @classmethod
    async def open(
        cls, connection: Connection, *, migrate: bool = True, check: bool = True
    ) -> PostgresState:
        """
        Connect, then bring the schema to `SCHEMA_VERSION` (with *migrate*) or check it is
        (with *check*; `drd state migrate` opens with neither, then calls `migrate`).

        Raises:
            StateError: the server cannot be reached, refuses the login, or its schema is
                newer than this drd knows (or older, without *migrate*).
        """
        where = connection.where
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            connection.conninfo,
            kwargs=connection.kwargs(),
            min_size=1,
            max_size=connection.pool_size,
            timeout=connection.connect_timeout,
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=connection.connect_timeout)
        except (PoolTimeout, psycopg.Error) as exc:
            await pool.close()
            raise _error(where, exc) from exc
        state = cls(pool, where)
        try:
            if migrate:
                await state.migrate()
            elif check:
                await state.check_version()
        except BaseException:
            await pool.close()
            raise
        return state

    async def close(self) -> None:
        """Close every pooled connection."""
        await self._pool.close()

    async def __aenter__(self) -> PostgresState:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncCursor[dict[str, Any]]]:
        """One transaction on a pooled connection; every driver failure as `StateError`."""
        try:
            async with (
                self._pool.connection() as conn,
                conn.transaction(),
                conn.cursor(row_factory=dict_row) as cur,
            ):
                yield cur
        except (PoolTimeout, psycopg.Error) as exc:
            raise _error(self.where, exc) from exc

    # ------------------------------------------------------------------ schema

    async def version(self) -> int:
        """The schema version the database is at (0: empty)."""
        async with self.transaction() as cur:
            return await _version(cur)

    async def check_version(self) -> int:
        """The schema version, when it is the one this drd writes; else `StateError`."""
        found = await self.version()
        if found != SCHEMA_VERSION:
            raise StateError(
                f"state database {self.where} is at schema version {found}, this drd uses "
                f"{SCHEMA_VERSION}: run `drd state migrate`",
                path=self.where,
            )
        return found

    async def migrate(self) -> list[int]:
        """
        Apply the missing forward steps; return the versions applied (empty: up to date).

        One transaction under an advisory lock: nodes starting together wait for the
        first, then find nothing left to do; a failing step leaves the schema as it was.
        """
        async with self.transaction() as cur:
            await cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await cur.execute(_VERSION_TABLE)
            found = await _version(cur)
            if found > SCHEMA_VERSION:
                raise StateError(
                    f"state database {self.where} is at schema version {found}, newer than "
                    f"this drd knows ({SCHEMA_VERSION}): upgrade drd on this node",
                    path=self.where,
                )
            applied = list(range(found + 1, SCHEMA_VERSION + 1))
            for version in applied:
                await cur.execute(MIGRATIONS[version - 1])
                await cur.execute("INSERT INTO drd_schema (version) VALUES (%s)", (version,))
        for version in applied:
            log.info("state.migrated", database=self.where, version=version)
        return applied

    # ------------------------------------------------------------------ writes

    async def register_job(self, job: str, kind: str, now: float) -> JobRecord:
        """Remember when *job* was first scheduled; return what is known of it."""
        async with self.transaction() as cur:
            await cur.execute(
                "INSERT INTO jobs (job, kind, first_seen) VALUES (%s, %s, %s)"
                " ON CONFLICT (job) DO NOTHING",
                (job, kind, now),
            )
            await cur.execute("SELECT * FROM jobs WHERE job = %s", (job,))
            row = await cur.fetchone()
        if row is None:  # inserted or already there in this transaction: cannot happen
            raise StateError(f"state database {self.where}: job {job} vanished", path=self.where)
        return _job(row)

    async def record_run(self, run: RunRecord) -> None:
        """Append *run* to the history and update its job's last run and last success."""
        error = run.error[:2000]
        async with self.transaction() as cur:
            await cur.execute(
                "INSERT INTO runs (job, kind, trigger, started_at, finished_at, outcome,"
                " summary, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    run.job,
                    run.kind,
                    run.trigger,
                    run.started_at,
                    run.finished_at,
                    run.outcome,
                    json.dumps(run.summary, default=str),
                    error,
                ),
            )
            await cur.execute(
                "INSERT INTO jobs (job, kind, first_seen) VALUES (%s, %s, %s)"
                " ON CONFLICT (job) DO NOTHING",
                (run.job, run.kind, run.started_at),
            )
            await cur.execute(
                "UPDATE jobs SET last_started = %s, last_finished = %s, last_outcome = %s,"
                " last_error = %s,"
                " last_success = CASE WHEN %s THEN %s ELSE last_success END WHERE job = %s",
                (
                    run.started_at,
                    run.finished_at,
                    run.outcome,
                    error,
                    run.outcome == "ok",
                    run.finished_at,
                    run.job,
                ),
            )
            await cur.execute(
                "DELETE FROM runs WHERE job = %s AND id <= ("
                " SELECT id FROM runs WHERE job = %s ORDER BY id DESC LIMIT 1 OFFSET %s)",
                (run.job, run.job, base.KEEP_RUNS),
            )

    async def register_policy(self, policy: str, targets: Iterable[str], now: float) -> None:
        """Remember when each (policy, target) was first scheduled: the lag's first watermark."""
        async with self.transaction() as cur:
            await cur.executemany(
                "INSERT INTO sync (policy, target, first_seen) VALUES (%s, %s, %s)"
                " ON CONFLICT (policy, target) DO NOTHING",
                [(policy, target, now) for target in targets],
            )

    async def note_push(
        self, policy: str, targets: Iterable[str], repository: str, tag: str, at: float
    ) -> None:
        """A push the source announced: pending at every target until a run brings it there."""
        async with self.transaction() as cur:
            await cur.executemany(
                _UPSERT_PENDING, [(policy, target, repository, tag, at) for target in targets]
            )

    async def record_replication(
        self, report: PolicyReport, *, full: bool, started_at: float, finished_at: float
    ) -> None:
        """Update pending changes, drift and the watermark (see `drd.state.changes`)."""
        changes = replication_changes(
            report, full=full, started_at=started_at, finished_at=finished_at
        )
        async with self.transaction() as cur:
            await cur.executemany(
                "INSERT INTO sync (policy, target, first_seen) VALUES (%s, %s, %s)"
                " ON CONFLICT (policy, target) DO NOTHING",
                changes.sync_rows(),
            )
            for step in changes.steps:
                await cur.execute(_STEPS[step.kind], step.params)
            for target, success in changes.watermarks():
                await cur.execute(
                    "UPDATE sync SET last_clean = %s,"
                    " last_success = CASE WHEN %s THEN %s ELSE last_success END"
                    " WHERE policy = %s AND target = %s",
                    (finished_at, success, finished_at, changes.policy, target),
                )
                if full:
                    await _forget_unseen(cur, changes, target)

    # ------------------------------------------------------------------ locks

    async def take_lock(
        self, name: str, *, node: str, host: str, pid: int, token: str, ttl: float
    ) -> Holder | None:
        """
        Take the lock *name* unless it is held unexpired: None when taken, else its holder.

        One upsert that replaces only an expired row: nodes racing for it are serialised
        on the row; times are the server's, so the nodes' clocks need not agree.
        """
        async with self.transaction() as cur:
            await cur.execute(
                "INSERT INTO locks (name, node, host, pid, since, expires_at, token)"
                " VALUES (%s, %s, %s, %s, drd_now(), drd_now() + %s, %s)"
                " ON CONFLICT (name) DO UPDATE SET node = excluded.node, host = excluded.host,"
                " pid = excluded.pid, since = excluded.since, expires_at = excluded.expires_at,"
                " token = excluded.token WHERE locks.expires_at < drd_now()",
                (name, node, host, pid, ttl, token),
            )
            await cur.execute("SELECT * FROM locks WHERE name = %s", (name,))
            row = await cur.fetchone()
        if row is None:  # inserted or kept in this transaction: cannot happen
            raise StateError(f"state database {self.where}: lock {name} vanished", path=self.where)
        return None if row["token"] == token else Holder.from_row(row)

    async def renew_lock(self, name: str, token: str, ttl: float) -> bool:
        """Extend the lock held under *token* by *ttl*; False when it is no longer held."""
        async with self.transaction() as cur:
            await cur.execute(
                "UPDATE locks SET expires_at = drd_now() + %s"
                " WHERE name = %s AND token = %s AND expires_at >= drd_now()",
                (ttl, name, token),
            )
            return cur.rowcount == 1

    async def drop_lock(self, name: str, token: str) -> None:
        """Release the lock held under *token* (nothing if it is no longer held)."""
        async with self.transaction() as cur:
            await cur.execute("DELETE FROM locks WHERE name = %s AND token = %s", (name, token))

    # ------------------------------------------------------------------ the push queue

    async def enqueue(self, policy: str, pushes: Iterable[tuple[str, str]], at: float) -> None:
        """Queue each (repository, tag) for *policy*; one already waiting is not added twice."""
        rows = [(policy, repository, tag, at) for repository, tag in pushes]
        if not rows:
            return
        async with self.transaction() as cur:
            await cur.executemany(
                "INSERT INTO queue (policy, repository, tag, enqueued_at)"
                " VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (policy, repository, tag) WHERE owner IS NULL DO NOTHING",
                rows,
            )

    async def claim_queued(
        self, policy: str, node: str, *, ttl: float, limit: int
    ) -> list[QueuedPush]:
        """
        Up to *limit* due entries of *policy*, oldest first, leased to *node* for *ttl*
        seconds (``FOR UPDATE SKIP LOCKED``: nodes claiming at once take different rows).
        """
        async with self.transaction() as cur:
            await cur.execute(
                "WITH due AS ("
                " SELECT id FROM queue WHERE policy = %s AND due_at <= drd_now()"
                " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
                " UPDATE queue q SET owner = %s, token = nextval('lease_tokens'),"
                " due_at = drd_now() + %s FROM due WHERE q.id = due.id"
                " RETURNING q.id, q.policy, q.repository, q.tag, q.token",
                (policy, limit, node, ttl),
            )
            rows = await cur.fetchall()
        return sorted((QueuedPush.from_row(r) for r in rows), key=lambda e: e.id)

    async def renew_queued(self, node: str, entries: Iterable[QueuedPush], ttl: float) -> int:
        """Extend the lease of each entry *node* still holds; return how many it holds."""
        tokens = [e.token for e in entries]
        if not tokens:
            return 0
        async with self.transaction() as cur:
            await cur.execute(
                "UPDATE queue SET due_at = drd_now() + %s"
                " WHERE owner = %s AND token = ANY(%s) AND due_at > drd_now()",
                (ttl, node, tokens),
            )
            return cur.rowcount

    async def finish_queued(
        self, node: str, entries: Iterable[QueuedPush], *, done: bool, retry_in: float = 0.0
    ) -> None:
        """Drop the entries (*done*), or put them back, due again in *retry_in* seconds."""
        keys = [(e.id, node, e.token) for e in entries]
        if not keys:
            return
        async with self.transaction() as cur:
            if done:
                await cur.executemany(
                    "DELETE FROM queue WHERE id = %s AND owner = %s AND token = %s", keys
                )
                return
            # A push of the same tag waiting already stands for this one.
            await cur.executemany(_DROP_DUPLICATE, keys)
            await cur.executemany(
                "UPDATE queue SET owner = NULL, due_at = drd_now() + %s"
                " WHERE id = %s AND owner = %s AND token = %s",
                [(retry_in, *key) for key in keys],
            )

    async def free_queued(self, node: str) -> None:
        """Put back every entry *node* holds (it stops, or starts again after a crash)."""
        async with self.transaction() as cur:
            await cur.execute("SELECT id, token FROM queue WHERE owner = %s", (node,))
            keys = [(r["id"], node, r["token"]) for r in await cur.fetchall()]
            if keys:
                await cur.executemany(_DROP_DUPLICATE, keys)
            await cur.execute("UPDATE queue SET owner = NULL, due_at = 0 WHERE owner = %s", (node,))

    async def queue_depth(self, *, due: bool = False) -> dict[str, int]:
        """Per policy, the entries no live node holds; with *due*, those takeable now."""
        where = "due_at <= drd_now()" if due else "owner IS NULL OR due_at <= drd_now()"
        async with self.transaction() as cur:
            await cur.execute(
                f"SELECT policy, count(*) AS n FROM queue WHERE {where}"  # noqa: S608 - constant
                " GROUP BY policy ORDER BY policy"
            )
            return {r["policy"]: int(r["n"]) for r in await cur.fetchall()}

    # ------------------------------------------------------------------ reads

    async def jobs(self) -> list[JobRecord]:
        """Every job ever scheduled."""
        async with self.transaction() as cur:
            await cur.execute("SELECT * FROM jobs ORDER BY job")
            return [_job(row) for row in await cur.fetchall()]

    async def syncs(self) -> list[SyncRecord]:
        """The replication bookkeeping of every (policy, target)."""
        async with self.transaction() as cur:
            await cur.execute(
                "SELECT s.policy, s.target, s.first_seen, s.last_clean, s.last_success,"
                " (SELECT count(*) FROM pending p"
                "   WHERE p.policy = s.policy AND p.target = s.target) AS pending,"
                " (SELECT min(since) FROM pending p"
                "   WHERE p.policy = s.policy AND p.target = s.target) AS oldest,"
                " (SELECT count(*) FROM drift d"
                "   WHERE d.policy = s.policy AND d.target = s.target) AS drift"
                " FROM sync s ORDER BY s.policy, s.target"
            )
            rows = await cur.fetchall()
        return [SyncRecord.from_row(r) for r in rows]

    async def pending(self, policy: str) -> list[tuple[str, str]]:
        """The (repository, tag) pairs still pending at any target of *policy*."""
        async with self.transaction() as cur:
            await cur.execute(
                "SELECT DISTINCT repository, tag FROM pending WHERE policy = %s"
                " ORDER BY repository, tag",
                (policy,),
            )
            return [(r["repository"], r["tag"]) for r in await cur.fetchall()]

    async def runs(self, limit: int = 50) -> list[RunRecord]:
        """The most recent runs, newest first."""
        async with self.transaction() as cur:
            await cur.execute("SELECT * FROM runs ORDER BY id DESC LIMIT %s", (limit,))
            rows = await cur.fetchall()
        return [RunRecord.from_row(r) for r in rows]

    async def drift(self) -> list[dict[str, Any]]:
        """Every drifted tag, as `drd.state.base.drift_json` renders it."""
        async with self.transaction() as cur:
            await cur.execute("SELECT * FROM drift ORDER BY policy, target, repository, tag")
            return [dict(row) for row in await cur.fetchall()]


async def _version(cur: psycopg.AsyncCursor[dict[str, Any]]) -> int:
    await cur.execute("SELECT to_regclass('drd_schema') IS NOT NULL AS present")
    row = await cur.fetchone()
    if row is None or not row["present"]:
        return 0
    await cur.execute("SELECT coalesce(max(version), 0) AS version FROM drd_schema")
    row = await cur.fetchone()
    return 0 if row is None else int(row["version"])


async def _forget_unseen(
    cur: psycopg.AsyncCursor[dict[str, Any]], changes: ReplicationChanges, target: str
) -> None:
    """After a complete full pass: what it did not see failing or drifting is gone."""
    where = (changes.policy, target)
    await cur.execute(
        "SELECT repository, tag FROM pending WHERE policy = %s AND target = %s AND since < %s",
        (*where, changes.started_at),
    )
    older = [(r["repository"], r["tag"]) for r in await cur.fetchall()]
    if stale := changes.forgotten_pending(target, older):
        await cur.executemany(_DELETE_KEYED.format("pending"), stale)
    await cur.execute("SELECT repository, tag FROM drift WHERE policy = %s AND target = %s", where)
    drifting = [(r["repository"], r["tag"]) for r in await cur.fetchall()]
    if resolved := changes.resolved_drift(target, drifting):
        await cur.executemany(_DELETE_KEYED.format("drift"), resolved)


def _job(row: Mapping[str, Any]) -> JobRecord:
    return JobRecord.from_row(row)
