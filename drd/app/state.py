"""
The configured state backend: SQLite in ``daemon.state_dir`` when ``[state] url`` is
absent, else the PostgreSQL database the URL names (imported only then). The one place
`Settings` become a `drd.state.base.StateStore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from drd import __version__
from drd.aio import alongside
from drd.config import Settings
from drd.errors import StateError
from drd.state import State, StateStore, read_status
from drd.state.base import status_document

if TYPE_CHECKING:
    from drd.state.leases import LeaseGate
    from drd.state.postgres import Connection


def describe(settings: Settings) -> str:
    """Where the state is, for messages: the SQLite directory or ``host:port/db``."""
    if settings.state.url is None:
        return str(settings.daemon.state_dir)
    return connection(settings).where


def connection(settings: Settings) -> Connection:
    """The PostgreSQL connection values of ``[state]`` (which must have a url)."""
    from drd.state.postgres import Connection

    db = settings.state
    if db.url is None:
        raise ValueError("[state] has no url: the state is the SQLite file in state_dir")
    password = db.password()
    return Connection(
        conninfo=db.url,
        password=None if password is None else password.get_secret_value(),
        sslmode=db.sslmode,
        ca_file=db.ca_file,
        cert_file=db.cert_file,
        key_file=db.key_file,
        pool_size=db.pool_size,
        connect_timeout=db.connect_timeout,
    )


async def open_state(
    settings: Settings, *, reset_corrupt: bool = False, migrate: bool = True
) -> StateStore:
    """
    Open the configured state: SQLite (with *reset_corrupt*, a damaged file is moved
    aside) or PostgreSQL (with *migrate*, missing schema steps are applied first).

    Raises:
        StateError: the state cannot be used (see each backend's ``open``).
        OSError: the SQLite directory cannot be created.
    """
    if settings.state.url is None:
        return await State.open(settings.daemon.state_dir, reset_corrupt=reset_corrupt)
    from drd.state.postgres import PostgresState

    return await PostgresState.open(connection(settings), migrate=migrate)


async def read_state_document(settings: Settings, now: float, *, runs: int) -> dict[str, Any]:
    """
    The ``drd status`` document: read-only from the SQLite file, or from PostgreSQL
    (which must already be at this drd's schema: `drd status` migrates nothing).

    Raises:
        FileNotFoundError: there is no SQLite database (the daemon never ran there).
        StateError: the state cannot be read.
    """
    if settings.state.url is None:
        document = await asyncio.to_thread(read_status, settings.daemon.state_dir, now, runs=runs)
        return {**document, "nodes": []}  # one node, which keeps no heartbeat
    from drd.state.leases import cluster
    from drd.state.postgres import PostgresState

    async with await PostgresState.open(connection(settings), migrate=False) as state:
        document = await status_document(state, state.where, now, runs=runs)
        ttl = settings.state.lease_ttl.total_seconds()
        return {**document, **await cluster(state, ttl=ttl)}


async def migrate(settings: Settings) -> tuple[str, list[int], int]:
    """Bring the configured state's schema up to date: (where, steps applied, version)."""
    if settings.state.url is None:
        from drd.state.sqlite import SCHEMA_VERSION

        async with await State.open(settings.daemon.state_dir) as sqlite:
            return str(sqlite.path), sqlite.migrated, SCHEMA_VERSION
    from drd.state.postgres import PostgresState

    opened = await PostgresState.open(connection(settings), migrate=False, check=False)
    async with opened as state:
        applied = await state.migrate()
        return state.where, applied, await state.version()


def lease_gate(
    settings: Settings, state: StateStore, policy: str, *, fresh: float
) -> LeaseGate | None:
    """
    This node's claims on *policy*'s repositories when the state is shared (PostgreSQL);
    None with SQLite, where one node does everything. A unit another node finished less
    than *fresh* seconds ago is not taken again.
    """
    if settings.state.url is None:
        return None
    from drd.state.leases import LeaseGate
    from drd.state.postgres import PostgresState

    if not isinstance(state, PostgresState):
        return None
    return LeaseGate(
        state,
        node=settings.daemon.node_name,
        policy=policy,
        ttl=settings.state.lease_ttl.total_seconds(),
        fresh=fresh,
    )


def orphan_finder(
    settings: Settings, state: StateStore
) -> Callable[[], Awaitable[dict[str, list[str]]]] | None:
    """
    In a cluster, the query for units whose holder's lease ran out unfinished, per policy
    (`drd.state.leases.orphaned`); None with SQLite, where no other node holds any.
    """
    if settings.state.url is None:
        return None
    from drd.state.leases import orphaned
    from drd.state.postgres import PostgresState

    if not isinstance(state, PostgresState):
        return None
    return functools.partial(orphaned, state)


async def cluster_counts(settings: Settings, state: StateStore) -> tuple[int, int] | None:
    """(leases this node holds, unclaimed units) in a cluster; None with SQLite."""
    if settings.state.url is None:
        return None
    from drd.state.leases import cluster
    from drd.state.postgres import PostgresState

    if not isinstance(state, PostgresState):
        return None
    node = settings.daemon.node_name
    found = await cluster(state, ttl=settings.state.lease_ttl.total_seconds())
    held = next((n["leases"] for n in found["nodes"] if n["id"] == node), 0)
    return int(held), int(found["unclaimed"])


@contextlib.asynccontextmanager
async def node_presence(
    settings: Settings, state: StateStore, on_health: Callable[[str], None]
) -> AsyncIterator[None]:
    """
    In a cluster, this node's heartbeat (its row in ``nodes``) every third of the lease
    TTL while the block runs, and its leave at the end (row gone, leases freed).
    *on_health* hears "" after each beat that reached PostgreSQL, else why not.
    Nothing with SQLite.
    """
    if settings.state.url is None:
        yield
        return
    from drd.state.leases import heartbeat, leave
    from drd.state.postgres import PostgresState

    if not isinstance(state, PostgresState):
        yield
        return

    node, ttl = settings.daemon.node_name, settings.state.lease_ttl.total_seconds()

    async def beat() -> None:
        while True:
            try:
                await heartbeat(state, node=node, host=socket.gethostname(), version=__version__)
            except StateError as exc:
                on_health(str(exc))
            else:
                on_health("")
            await asyncio.sleep(ttl / 3)

    try:
        async with alongside(beat()):
            yield
    finally:
        with contextlib.suppress(StateError):
            await leave(state, node)
