"""
Cluster-wide singleton locks: a job that must never run twice at once (failover,
failback) holds a named lock in the state database while it runs.

The lock is a row (``locks``: name, holder's node id, host and pid, since when, expiry,
token) in whichever state backend is configured: with SQLite it keeps two processes on
one host apart (the daemon's host: commands and the daemon share ``state_dir``), with
PostgreSQL every node of the cluster. `exclusive` takes it, renews it every third of
its TTL while the block runs (so a holder that dies frees it within one TTL, and a
live one keeps it however long it runs), and drops it at the end. A second taker gets
`Busy` naming who holds it and since when. The block gets a fence: awaited right before
an irreversible step, it renews the lock once more and raises `LeaseLost` if it was
lost meanwhile (a holder paused past its TTL), so the window left is one round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog

from drd.aio import alongside
from drd.errors import Busy, LeaseLost, StateError
from drd.state.base import Holder, StateStore, iso

log = structlog.get_logger(__name__)

# Awaited right before an irreversible step: raises `LeaseLost` when the lock was lost.
Fence = Callable[[], Awaitable[None]]


def busy_message(name: str, holder: Holder) -> str:
    """Why *name* cannot run now: who holds it, where, since when (UTC)."""
    return (
        f"{name} is already running: held by node {holder.node} on host {holder.host}"
        f" (pid {holder.pid}) since {iso(holder.since)}; run it again once that has finished"
    )


@contextlib.asynccontextmanager
async def exclusive(state: StateStore, name: str, *, node: str, ttl: float) -> AsyncIterator[Fence]:
    """
    Hold the lock *name* while the block runs, as *node* on this host and process; the
    block gets the lock's `Fence`.

    Raises:
        Busy: another process holds it (its `Holder` is ``.holder``).
        StateError: the state database cannot be used.
    """
    token = uuid.uuid4().hex
    holder = await state.take_lock(
        name, node=node, host=socket.gethostname(), pid=os.getpid(), token=token, ttl=ttl
    )
    if holder is not None:
        raise Busy(busy_message(name, holder), holder=holder)
    log.info("lock.taken", lock=name, node=node)

    async def renew() -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                if not await state.renew_lock(name, token, ttl):
                    log.error("lock.lost", lock=name, node=node)
                    return
            except StateError as exc:
                log.warning("lock.renew_failed", lock=name, node=node, error=str(exc))

    async def fence() -> None:
        if not await state.renew_lock(name, token, ttl):
            log.error("lock.lost", lock=name, node=node)
            raise LeaseLost(f"the {name} lock expired or was taken over: nothing switched")

    try:
        async with alongside(renew()):
            yield fence
    finally:
        try:
            await state.drop_lock(name, token)
        except StateError as exc:  # it expires by itself within one TTL
            log.warning("lock.release_failed", lock=name, node=node, error=str(exc))
