"""
Units of work shared by the nodes of a cluster: a unit is (policy, target, repository),
claimed by one node at a time with a lease in PostgreSQL.

- `LeaseGate.claim` takes a unit with ``SELECT … FOR UPDATE SKIP LOCKED``: a unit
  another node holds (lease not yet expired), or one any node finished within the last
  *fresh* seconds, is not taken. Each claim draws a new fencing token from a sequence.
- `LeaseGate.running` renews the node's leases every third of the TTL (the heartbeat).
  A node that dies (SIGKILL, host loss) stops renewing: after the TTL its units are free.
- `LeaseGate.check` is the fence: immediately before each tag write, and each manifest
  DELETE of propagated deletions, the runner asks whether this node still holds the unit
  with the same token; if not, `LeaseLost`, and nothing is written. The window left is
  the time between that check's answer and the registry applying the PUT or DELETE (one
  round trip to PostgreSQL plus one to the target): a lease that expires inside it is not
  noticed. The README's cluster notes size it.
- `LeaseGate.release` frees the unit, marking it done when the repository completed. A
  pass with deletions planned in a repository releases it only after they are over.
- `orphaned` lists the units whose holder stopped renewing before releasing them (it died,
  or lost PostgreSQL for longer than the TTL): every live node looks for them every third
  of the TTL and takes them over (`drd.daemon.orphans`), instead of leaving them to its
  next scheduled pass.

Times are the server's (``drd_now()``, its clock_timestamp()), so nodes' clocks need not agree.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog

from drd.aio import alongside
from drd.errors import LeaseLost, StateError
from drd.state.base import SINGLETONS, iso
from drd.state.postgres import PostgresState

log = structlog.get_logger(__name__)

ALL_TARGETS = "*"  # the target of a unit that covers every target of its policy


class LeaseGate:
    """The leases of one node on the units of one policy (see the module docstring)."""

    def __init__(
        self,
        state: PostgresState,
        *,
        node: str,
        policy: str,
        target: str = ALL_TARGETS,
        ttl: float = 30.0,
        fresh: float = 0.0,
    ) -> None:
        self._state = state
        self.node = node
        self.policy = policy
        self.target = target
        self.ttl = ttl
        self.fresh = fresh
        self.held: dict[str, int] = {}  # repository → fencing token

    def _key(self, repository: str) -> tuple[str, str, str]:
        return (self.policy, self.target, repository)

    async def claim(self, repository: str) -> int | None:
        """The unit's new fencing token, or None when another node holds it or just did it."""
        key = self._key(repository)
        async with self._state.transaction() as cur:
            await cur.execute(
                "INSERT INTO leases (policy, target, repository) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                key,
            )
            await cur.execute(
                "WITH free AS ("
                " SELECT policy, target, repository FROM leases"
                " WHERE policy = %s AND target = %s AND repository = %s"
                "  AND (owner IS NULL OR expires_at < drd_now())"
                "  AND (done_at IS NULL OR done_at < drd_now() - %s)"
                " FOR UPDATE SKIP LOCKED)"
                " UPDATE leases l SET owner = %s, token = nextval('lease_tokens'),"
                " expires_at = drd_now() + %s"
                " FROM free WHERE l.policy = free.policy AND l.target = free.target"
                " AND l.repository = free.repository RETURNING l.token",
                (*key, self.fresh, self.node, self.ttl),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        token = int(row["token"])
        self.held[repository] = token
        log.debug("lease.claimed", policy=self.policy, repository=repository, token=token)
        return token

    async def claim_when_free(self, repository: str) -> int | None:
        """
        `claim`, waiting while another node holds the unit: a token once it is free (its
        holder released it unfinished, or died and its lease ran out, within one TTL), or
        None as soon as it is done (its holder finished it) — so a job runs once.
        """
        while True:
            token = await self.claim(repository)
            if token is not None:
                return token
            async with self._state.transaction() as cur:
                await cur.execute(
                    "SELECT owner IS NOT NULL AND expires_at >= drd_now() AS held"
                    " FROM leases WHERE policy = %s AND target = %s AND repository = %s",
                    self._key(repository),
                )
                row = await cur.fetchone()
            if row is None or not row["held"]:
                return None  # done recently: not ours to run again
            await asyncio.sleep(self.ttl / 3)

    async def check(self, repository: str, token: int) -> None:
        """
        The fence: return only while this node holds the unit with *token*.

        Raises:
            LeaseLost: the lease expired, was released, or another node took the unit.
            StateError: PostgreSQL cannot be asked (then no tag is written either).
        """
        async with self._state.transaction() as cur:
            await cur.execute(
                "SELECT 1 AS held FROM leases WHERE policy = %s AND target = %s"
                " AND repository = %s AND owner = %s AND token = %s AND expires_at > drd_now()",
                (*self._key(repository), self.node, token),
            )
            held = await cur.fetchone()
        if held is None:
            raise LeaseLost(
                f"node {self.node} no longer holds {self.policy}/{repository}: nothing written",
                path=self._state.where,
            )

    async def release(self, repository: str, token: int, *, done: bool) -> None:
        """Free the unit (if still ours); *done*: no node takes it for *fresh* seconds."""
        self.held.pop(repository, None)
        async with self._state.transaction() as cur:
            await cur.execute(
                "UPDATE leases SET owner = NULL, expires_at = 0,"
                " done_at = CASE WHEN %s THEN drd_now() ELSE done_at END"
                " WHERE policy = %s AND target = %s AND repository = %s"
                " AND owner = %s AND token = %s",
                (done, *self._key(repository), self.node, token),
            )

    async def renew(self) -> int:
        """Extend every lease this gate holds by the TTL; return how many are still held."""
        if not self.held:
            return 0
        async with self._state.transaction() as cur:
            await cur.execute(
                "UPDATE leases SET expires_at = drd_now() + %s"
                " WHERE owner = %s AND token = ANY(%s)"
                " AND expires_at > drd_now() RETURNING repository",
                (self.ttl, self.node, list(self.held.values())),
            )
            kept = {row["repository"] for row in await cur.fetchall()}
        for repository in [r for r in self.held if r not in kept]:
            log.warning("lease.lost", policy=self.policy, repository=repository, node=self.node)
            self.held.pop(repository, None)
        return len(kept)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LeaseGate]:
        """The heartbeat: renew every ``ttl / 3`` seconds while the block runs."""

        async def beat() -> None:
            while True:
                await asyncio.sleep(self.ttl / 3)
                try:
                    await self.renew()
                except StateError as exc:
                    # Unreachable: leases run out; the fence stops any tag write after that.
                    log.warning("lease.renew_failed", node=self.node, error=str(exc))

        async with alongside(beat()):
            yield self


async def orphaned(state: PostgresState, *, target: str = ALL_TARGETS) -> dict[str, list[str]]:
    """
    Per policy, the repositories of units claimed and not finished whose lease ran out:
    an owner is set (a release clears it, done or not, and so does a node's `leave`) and
    its lease expired at the server's clock. Singleton jobs are not among them (a node
    waiting on one takes it over itself, `LeaseGate.claim_when_free`).
    """
    async with state.transaction() as cur:
        await cur.execute(
            "SELECT policy, repository FROM leases WHERE owner IS NOT NULL"
            " AND expires_at < drd_now() AND policy <> %s AND target = %s"
            " ORDER BY policy, repository",
            (SINGLETONS, target),
        )
        rows = await cur.fetchall()
    found: dict[str, list[str]] = {}
    for row in rows:
        found.setdefault(row["policy"], []).append(row["repository"])
    return found


async def unclaimed(state: PostgresState) -> int:
    """
    The queue depth (for status and metrics): replication units no node holds now, plus
    the queued pushes no node holds (`PostgresState.queue_depth`).
    """
    async with state.transaction() as cur:
        await cur.execute(
            "SELECT count(*) AS n FROM leases WHERE policy <> %s"
            " AND (owner IS NULL OR expires_at < drd_now())",
            (SINGLETONS,),
        )
        row = await cur.fetchone()
    units = 0 if row is None else int(row["n"])
    return units + sum((await state.queue_depth()).values())


async def heartbeat(state: PostgresState, *, node: str, host: str, version: str) -> None:
    """Say this node is alive (its row in ``nodes``, created on the first beat)."""
    async with state.transaction() as cur:
        await cur.execute(
            "INSERT INTO nodes (node, host, version, started_at, heartbeat)"
            " VALUES (%s, %s, %s, drd_now(), drd_now())"
            " ON CONFLICT (node) DO UPDATE SET host = excluded.host,"
            " version = excluded.version, heartbeat = excluded.heartbeat",
            (node, host, version),
        )


async def leave(state: PostgresState, node: str) -> None:
    """
    This node stops: its row goes, and every lease it holds is freed unfinished, its
    queued pushes with them.
    """
    async with state.transaction() as cur:
        await cur.execute("DELETE FROM nodes WHERE node = %s", (node,))
        await cur.execute(
            "UPDATE leases SET owner = NULL, expires_at = 0 WHERE owner = %s", (node,)
        )
    await state.free_queued(node)


async def cluster(state: PostgresState, *, ttl: float) -> dict[str, Any]:
    """
    What ``drd status`` shows of the cluster: the live nodes (heartbeat within *ttl*) with
    the leases each holds (units and queued pushes), the holder of each singleton job and
    of each singleton lock (failover, failback),
    the unclaimed units and queued pushes (``unclaimed``) and of those the pushes (``queued``).
    """
    async with state.transaction() as cur:
        await cur.execute(
            "SELECT n.node, n.host, n.version, n.started_at, n.heartbeat,"
            " (SELECT count(*) FROM leases l WHERE l.owner = n.node"
            "   AND l.expires_at >= drd_now())"
            " + (SELECT count(*) FROM queue q WHERE q.owner = n.node"
            "   AND q.due_at > drd_now()) AS leases"
            " FROM nodes n WHERE n.heartbeat >= drd_now() - %s ORDER BY n.node",
            (ttl,),
        )
        nodes = await cur.fetchall()
        await cur.execute(
            "SELECT repository AS job, owner, expires_at FROM leases"
            " WHERE policy = %s AND owner IS NOT NULL AND expires_at >= drd_now()"
            " ORDER BY repository",
            (SINGLETONS,),
        )
        leaders = await cur.fetchall()
        await cur.execute(
            "SELECT name AS job, node AS owner FROM locks WHERE expires_at >= drd_now()"
            " ORDER BY name"
        )
        leaders += await cur.fetchall()  # failover, failback (drd.state.locks)
    return {
        "nodes": [
            {
                "id": n["node"],
                "host": n["host"],
                "version": n["version"],
                "started_at": iso(n["started_at"]),
                "last_heartbeat": iso(n["heartbeat"]),
                "leases": n["leases"],
            }
            for n in nodes
        ],
        "leaders": {row["job"]: row["owner"] for row in leaders},
        "unclaimed": await unclaimed(state),
        "queued": sum((await state.queue_depth()).values()),
    }
