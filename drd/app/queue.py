"""
Pushes announced by webhook, on the shared queue in the state database: the node that
receives a webhook enqueues the push (`StateStore.enqueue`); any node takes it.

A node takes a batch of due entries of one policy (`PushQueue.take`: with PostgreSQL
``FOR UPDATE SKIP LOCKED``, so nodes taking at once get different entries), each leased
for the lease TTL and renewed every third of it while its pass runs (`PushQueue.held`).
A node that dies stops renewing: after the TTL its entries are due again and another
node takes them. After the pass `settle` decides, from its report, which entries are
done (dropped) and which go back to the queue; `PushQueue.finish` applies that.

The queue only says *what* to replicate; the repository units of `drd.state.leases`
still say *who* writes a repository's tags, and their fence guards each tag write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import structlog

from drd.aio import alongside
from drd.errors import StateError
from drd.replicate.report import PolicyReport
from drd.state.base import QueuedPush, StateStore

log = structlog.get_logger(__name__)

# Entries one pass takes at most: a burst of pushes becomes a few passes, not one huge one.
BATCH = 100


@dataclass(frozen=True)
class Settled:
    """What becomes of a batch after its pass: dropped, or back in the queue (and when)."""

    done: list[QueuedPush]
    again: list[QueuedPush]
    retry_in: float


def settle(
    entries: Sequence[QueuedPush],
    report: PolicyReport | None,
    *,
    ttl: float,
    cancelled: bool = False,
) -> Settled:
    """
    The fate of *entries* after the pass that took them ended with *report*.

    - no report, *cancelled* (a reload or a drain cut the pass): every entry goes back,
      due at once, for any node;
    - no report otherwise (the pass raised: a bug): every entry goes back, due again in
      one *ttl*, so a push that trips a bug is not retried in a loop;
    - the pass did not complete (the source unreachable): every entry goes back, due
      again in one *ttl*, so an unreachable source is not asked in a loop;
    - an entry whose repository another node held during the pass (a full pass there)
      goes back, due in a third of *ttl*;
    - every other entry is done. Items that failed stay pending in the replication
      bookkeeping, where the next full pass picks them up, as for any failed item.
    """
    if report is None:
        return Settled([], list(entries), 0.0 if cancelled else ttl)
    if report.error:
        return Settled([], list(entries), ttl)
    busy = set(report.elsewhere_repositories)
    done = [e for e in entries if e.repository not in busy]
    again = [e for e in entries if e.repository in busy]
    return Settled(done, again, ttl / 3)


@dataclass
class PushQueue:
    """One node's hand on the queue: its name and the lease TTL of what it takes."""

    state: StateStore
    node: str
    ttl: float

    async def take(self, policy: str, limit: int = BATCH) -> list[QueuedPush]:
        """Up to *limit* due entries of *policy*, leased to this node."""
        return await self.state.claim_queued(policy, self.node, ttl=self.ttl, limit=limit)

    @contextlib.asynccontextmanager
    async def held(self, entries: Sequence[QueuedPush]) -> AsyncIterator[None]:
        """Renew the leases of *entries* every third of the TTL while the block runs."""

        async def beat() -> None:
            while True:
                await asyncio.sleep(self.ttl / 3)
                try:
                    await self.state.renew_queued(self.node, entries, self.ttl)
                except StateError as exc:
                    # Unreachable: the leases run out; the repository fence guards the tags.
                    log.warning("queue.renew_failed", node=self.node, error=str(exc))

        async with alongside(beat()):
            yield

    async def finish(self, settled: Settled) -> None:
        """Drop what is done and put the rest back; a failure here leaves leases to expire."""
        try:
            if settled.done:
                await self.state.finish_queued(self.node, settled.done, done=True)
            if settled.again:
                await self.state.finish_queued(
                    self.node, settled.again, done=False, retry_in=settled.retry_in
                )
        except StateError as exc:
            log.warning("queue.finish_failed", node=self.node, error=str(exc))
