"""
What the application, the daemon and ``drd status`` need of run history: the
records (`RunRecord`, `JobRecord`, `SyncRecord`) and the `StateStore` interface.

`drd.state.sqlite.State` implements it over an embedded SQLite database,
`drd.state.postgres.PostgresState` over PostgreSQL for a cluster; `status_document`
builds what ``drd status`` prints from either.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from drd.replicate.report import PolicyReport

# The "policy" of the units of work that are singleton jobs (snapshot, drill) in a cluster.
SINGLETONS = "job"
# Runs kept per job: enough for weeks of history at a 5-minute interval, a few MB at most.
KEEP_RUNS = 2000


class Row(Protocol):
    """A result row read by column name: sqlite3.Row, or psycopg's dict rows."""

    def __getitem__(self, key: str) -> Any: ...


@dataclass(frozen=True)
class RunRecord:
    """One finished run of a job."""

    job: str
    kind: str
    trigger: str
    started_at: float
    finished_at: float
    outcome: str
    summary: dict[str, Any]
    error: str = ""

    @classmethod
    def from_row(cls, r: Row) -> RunRecord:
        """The record a ``runs`` row holds (its summary is JSON text)."""
        return cls(
            job=r["job"],
            kind=r["kind"],
            trigger=r["trigger"],
            started_at=r["started_at"],
            finished_at=r["finished_at"],
            outcome=r["outcome"],
            summary=json.loads(r["summary"]),
            error=r["error"],
        )

    def to_json(self) -> dict[str, Any]:
        """The run as ``drd status`` shows it."""
        return {
            "job": self.job,
            "kind": self.kind,
            "trigger": self.trigger,
            "started_at": iso(self.started_at),
            "duration_s": round(self.finished_at - self.started_at, 3),
            "outcome": self.outcome,
            "summary": self.summary,
            "error": self.error,
        }


@dataclass(frozen=True)
class JobRecord:
    """What is known of one job: when it was first scheduled, last ran, last succeeded."""

    job: str
    kind: str
    first_seen: float
    last_started: float | None
    last_finished: float | None
    last_outcome: str | None
    last_success: float | None
    last_error: str

    @classmethod
    def from_row(cls, r: Row) -> JobRecord:
        """The record a ``jobs`` row holds."""
        return cls(
            job=r["job"],
            kind=r["kind"],
            first_seen=r["first_seen"],
            last_started=r["last_started"],
            last_finished=r["last_finished"],
            last_outcome=r["last_outcome"],
            last_success=r["last_success"],
            last_error=r["last_error"],
        )

    def to_json(self) -> dict[str, Any]:
        """The job as ``drd status`` shows it."""
        return {
            "job": self.job,
            "kind": self.kind,
            "first_seen": iso(self.first_seen),
            "last_started": iso(self.last_started),
            "last_finished": iso(self.last_finished),
            "last_outcome": self.last_outcome,
            "last_success": iso(self.last_success),
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class SyncRecord:
    """Replication bookkeeping of one policy at one target."""

    policy: str
    target: str
    first_seen: float
    last_clean: float | None
    last_success: float | None
    pending: int
    oldest_pending: float | None
    drift: int

    @classmethod
    def from_row(cls, r: Row) -> SyncRecord:
        """The record a row of the sync query holds (with its pending, oldest, drift)."""
        return cls(
            policy=r["policy"],
            target=r["target"],
            first_seen=r["first_seen"],
            last_clean=r["last_clean"],
            last_success=r["last_success"],
            pending=r["pending"],
            oldest_pending=r["oldest"],
            drift=r["drift"],
        )

    @property
    def watermark(self) -> float:
        """Every source change before this instant is known to be at the target."""
        base = self.last_clean if self.last_clean is not None else self.first_seen
        return base if self.oldest_pending is None else min(base, self.oldest_pending)

    def to_json(self, now: float) -> dict[str, Any]:
        """The (policy, target) as ``drd status`` shows it at *now*."""
        return {
            "policy": self.policy,
            "target": self.target,
            "lag_s": round(max(0.0, now - self.watermark), 3),
            "last_clean": iso(self.last_clean),
            "last_success": iso(self.last_success),
            "pending": self.pending,
            "oldest_pending": iso(self.oldest_pending),
            "drift": self.drift,
        }

    @property
    def success_mark(self) -> float:
        """The last success, or when the policy was first scheduled (see drd.metrics)."""
        return self.last_success if self.last_success is not None else self.first_seen


@dataclass(frozen=True)
class Holder:
    """Who holds a singleton lock (`drd.state.locks`): node id, host, process, since when."""

    node: str
    host: str
    pid: int
    since: float

    @classmethod
    def from_row(cls, r: Row) -> Holder:
        """The holder a ``locks`` row names."""
        return cls(node=r["node"], host=r["host"], pid=int(r["pid"]), since=float(r["since"]))


@dataclass(frozen=True)
class QueuedPush:
    """
    A push waiting in the shared queue (``queue`` table), as one node claimed it: the
    claim lasts until its lease runs out unless renewed, and *token* fences it.
    """

    id: int
    policy: str
    repository: str
    tag: str
    token: int

    @classmethod
    def from_row(cls, r: Row) -> QueuedPush:
        """The entry a claimed ``queue`` row holds."""
        return cls(
            id=int(r["id"]),
            policy=r["policy"],
            repository=r["repository"],
            tag=r["tag"],
            token=int(r["token"]),
        )


class StateStore(Protocol):
    """Run history and replication bookkeeping, as the app layer and the daemon use it."""

    # Where a damaged database was moved when it was opened (SQLite only), else None.
    moved_aside: Path | None

    async def close(self) -> None:
        """Release the backend."""

    async def register_job(self, job: str, kind: str, now: float) -> JobRecord:
        """Remember when *job* was first scheduled; return what is known of it."""

    async def record_run(self, run: RunRecord) -> None:
        """Append *run* to the history and update its job's last run and last success."""

    async def register_policy(self, policy: str, targets: Iterable[str], now: float) -> None:
        """Remember when each (policy, target) was first scheduled."""

    async def note_push(
        self, policy: str, targets: Iterable[str], repository: str, tag: str, at: float
    ) -> None:
        """A push the source announced: pending at every target until a run brings it there."""

    async def record_replication(
        self, report: PolicyReport, *, full: bool, started_at: float, finished_at: float
    ) -> None:
        """Update pending changes, drift and the watermark from one replication run."""

    async def enqueue(self, policy: str, pushes: Iterable[tuple[str, str]], at: float) -> None:
        """Queue each (repository, tag) for *policy*; one already waiting is not added twice."""

    async def claim_queued(
        self, policy: str, node: str, *, ttl: float, limit: int
    ) -> list[QueuedPush]:
        """Up to *limit* due entries of *policy* for *node*, each leased for *ttl* seconds."""

    async def renew_queued(self, node: str, entries: Iterable[QueuedPush], ttl: float) -> int:
        """Extend the lease of each entry *node* still holds; return how many it holds."""

    async def finish_queued(
        self, node: str, entries: Iterable[QueuedPush], *, done: bool, retry_in: float = 0.0
    ) -> None:
        """Drop the entries (*done*), or put them back, due again in *retry_in* seconds."""

    async def free_queued(self, node: str) -> None:
        """Put back every entry *node* holds (it stops, or starts again after a crash)."""

    async def queue_depth(self, *, due: bool = False) -> dict[str, int]:
        """
        Per policy, the entries no live node holds (waiting, or their holder's lease ran
        out); with *due*, only those a node may take now (not put back for later).
        """

    async def jobs(self) -> list[JobRecord]:
        """Every job ever scheduled."""

    async def syncs(self) -> list[SyncRecord]:
        """The replication bookkeeping of every (policy, target)."""

    async def pending(self, policy: str) -> list[tuple[str, str]]:
        """The (repository, tag) pairs still pending at any target of *policy*."""

    async def runs(self, limit: int = 50) -> list[RunRecord]:
        """The most recent runs, newest first."""

    async def drift(self) -> list[dict[str, Any]]:
        """Every drifted tag: the drift table's rows (see `status_document`)."""

    async def take_lock(
        self, name: str, *, node: str, host: str, pid: int, token: str, ttl: float
    ) -> Holder | None:
        """
        Take the lock *name* for *ttl* seconds under *token*, unless someone holds it
        unexpired: None when taken, else who holds it (`drd.state.locks`).
        """

    async def renew_lock(self, name: str, token: str, ttl: float) -> bool:
        """Extend the lock held under *token* by *ttl*; False when it is no longer held."""

    async def drop_lock(self, name: str, token: str) -> None:
        """Release the lock held under *token* (nothing if it is no longer held)."""


async def status_document(
    state: StateStore, where: str, now: float, *, runs: int = 20
) -> dict[str, Any]:
    """The status document of ``drd status`` from *state*, found at *where*."""
    jobs, syncs = await state.jobs(), await state.syncs()
    history, drift = await state.runs(runs), await state.drift()
    return {
        "state_db": where,
        "now": iso(now),
        "jobs": [j.to_json() for j in jobs],
        "replication": [s.to_json(now) for s in syncs],
        "drift": [drift_json(d) for d in drift],
        "runs": [r.to_json() for r in history],
    }


def drift_json(row: dict[str, Any]) -> dict[str, Any]:
    """One drift row as ``drd status`` shows it."""
    return {
        "policy": row["policy"],
        "target": row["target"],
        "repository": row["repository"],
        "tag": row["tag"],
        "source_digest": row["source_digest"],
        "target_digest": row["target_digest"],
        "first_seen": iso(row["first_seen"]),
        "last_seen": iso(row["last_seen"]),
    }


def iso(ts: float | None) -> str | None:
    """A timestamp as ISO 8601 UTC to the second, as ``drd status`` prints them."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
