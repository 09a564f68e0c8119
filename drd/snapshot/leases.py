"""
Leases in the store that keep a snapshot and a prune from corrupting each other.

A snapshot reuses every manifest and blob the store already holds; a prune deletes
the objects no committed index references. Run at once (in one daemon, two daemons
on one bucket, or a hand-run ``drd snapshot prune``), the prune could delete an
object the snapshot is about to reference.

Mark-then-sweep with leases, not refresh-on-reuse: refreshing an object's age means
rewriting it (a CopyObject on S3) for every object every snapshot reuses, which is
every object of a registry every hour; a lease costs a few requests per run.

Both sides write their own lease first, then look for the other's:

- a snapshot writes ``leases/snapshot/<source>/<name>``, then waits while a live
  prune lease exists, and only then lists what the store holds;
- a prune writes ``leases/prune/<source>/<name>``, finds the unreferenced objects,
  and deletes them only if no live snapshot lease exists (else it defers the sweep).

Of a snapshot and a prune that overlap, whichever writes its lease second sees the
other's (a folder and S3 both read their own writes, lists included): either the
snapshot waits out the sweep before it looks, or the prune leaves every object be.
A lease is live while younger than `LEASE_TTL`; its holder rewrites it every
`RENEW_EVERY`, so a long run stays live and a crashed one's lease lapses.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Literal

import structlog

from drd.errors import StorageError
from drd.snapshot.model import validate_source
from drd.store.base import SnapshotStore

log = structlog.get_logger(__name__)

Kind = Literal["snapshot", "prune"]

LEASES = "leases/"
# Minutes, not seconds: it must outlast clock skew between hosts and the store.
LEASE_TTL = dt.timedelta(minutes=10)
RENEW_EVERY = LEASE_TTL / 4
# How long a snapshot waits for a running prune before it fails, and how often it looks.
PRUNE_WAIT = dt.timedelta(hours=1)
POLL_S = 1.0


def lease_prefix(kind: Kind) -> str:
    """``leases/<kind>/``: every lease of that kind, of any source."""
    return f"{LEASES}{kind}/"


class Lease:
    """A held lease: its key, and when it was last written."""

    def __init__(self, store: SnapshotStore, key: str, body: bytes) -> None:
        self.store, self.key, self._body = store, key, body
        self.written_at = time.monotonic()

    async def write(self) -> None:
        """Write (or rewrite) the lease; raises `StorageError`."""
        await self.store.put_bytes(self.key, self._body)
        self.written_at = time.monotonic()

    def check(self) -> None:
        """
        Raise `StorageError` when the lease may have lapsed (no write for most of
        `LEASE_TTL`): a prune may have swept meanwhile, so nothing may be committed.
        """
        idle = time.monotonic() - self.written_at
        if idle >= LEASE_TTL.total_seconds() * 0.8:
            raise StorageError(
                f"lease {self.key} in {self.store.url} was not renewed for {idle:.0f}s; "
                "a prune may have deleted objects this run relies on",
                key=self.key,
            )


@contextlib.asynccontextmanager
async def hold_lease(store: SnapshotStore, kind: Kind, source: str) -> AsyncIterator[Lease]:
    """
    Hold a lease of *kind* in *store* for the block.

    Side effects: writes the lease, rewrites it every `RENEW_EVERY` while the block
    runs, deletes it on exit (a failed delete is logged; the lease then lapses).
    Raises `StorageError` when the lease cannot be written.
    """
    name = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:12]}"
    key = f"{lease_prefix(kind)}{validate_source(source)}/{name}"
    body = json.dumps(
        {"kind": kind, "source": source, "host": socket.gethostname(), "pid": os.getpid()}
    ).encode()
    lease = Lease(store, key, body)
    await lease.write()
    renewer = asyncio.create_task(_renew(lease))
    try:
        yield lease
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        try:
            await asyncio.shield(store.delete(key))
        except StorageError as exc:
            log.warning("snapshot.lease_release_failed", key=key, error=str(exc))


async def _renew(lease: Lease) -> None:
    while True:
        await asyncio.sleep(RENEW_EVERY.total_seconds())
        try:
            await lease.write()
        except StorageError as exc:
            # Keep going: the next renewal may work; Lease.check refuses a lapsed one.
            log.warning("snapshot.lease_renew_failed", key=lease.key, error=str(exc))


async def live_leases(store: SnapshotStore, kind: Kind) -> list[str]:
    """The keys of *kind*'s leases written or renewed within `LEASE_TTL` (wall clock)."""
    now = dt.datetime.now(dt.UTC)
    return [
        obj.key async for obj in store.list(lease_prefix(kind)) if now - obj.modified < LEASE_TTL
    ]


async def wait_while_pruning(
    store: SnapshotStore, *, limit: dt.timedelta = PRUNE_WAIT, poll_s: float = POLL_S
) -> None:
    """
    Return once no live prune lease is in *store*; call it holding a snapshot lease.

    Raises `StorageError` naming the prune's lease after *limit*.
    """
    deadline = time.monotonic() + limit.total_seconds()
    logged = False
    while running := await live_leases(store, "prune"):
        if time.monotonic() >= deadline:
            raise StorageError(
                f"a prune of {store.url} has held it for over {limit} ({', '.join(running)}); "
                "the snapshot was not taken",
                key=running[0],
            )
        if not logged:
            log.info("snapshot.waiting_for_prune", leases=running)
            logged = True
        await asyncio.sleep(poll_s)
