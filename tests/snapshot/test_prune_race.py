"""
A prune and a snapshot on one store at once (folder and moto S3): the snapshot either
commits with every object it references present, or fails; it never commits a hole.

The snapshot reuses an image the store holds but no remaining index references after
the prune's retention (tag v1: A, then B, then A again), the exact object a sweep
deletes. Gates in a store wrapper fix the interleaving, so no test depends on timing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drd.errors import StorageError
from drd.selection.filters import RepoFilter
from drd.snapshot.catalog import list_snapshots, load_snapshot, prune, verify_snapshot
from drd.snapshot.collect import SnapshotReport, run_snapshot, take_snapshot
from drd.snapshot.leases import LEASE_TTL, LEASES, hold_lease, live_leases, wait_while_pruning
from drd.snapshot.model import manifest_key
from drd.store.base import SnapshotStore, StoredObject
from tests.clients import open_client
from tests.images import Image, make_image, push_image
from tests.servers import LocalRegistry
from tests.snapshot.helpers import opened, store_config

SOON = dt.timedelta(minutes=1)


@pytest.fixture(params=["dir", "s3"])
def kind(request: pytest.FixtureRequest) -> str:
    """Each race runs against a folder and against S3."""
    return str(request.param)


class Gated:
    """
    A store that passes every call through to *inner*, and can stop one call until
    the test opens a gate: the index put (``at_index``) or the first object delete
    (``at_sweep``). ``first_call`` is set once any call has finished.
    """

    def __init__(self, inner: SnapshotStore, *, at_index: bool = False, at_sweep: bool = False):
        self.inner = inner
        self.at_index, self.at_sweep = at_index, at_sweep
        self.reached = asyncio.Event()
        self.gate = asyncio.Event()
        self.first_call = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def _stop(self) -> None:
        self.reached.set()
        await self.gate.wait()

    async def put_bytes(self, key: str, data: bytes, **kwargs: Any) -> bool:
        try:
            return await self.inner.put_bytes(key, data, **kwargs)
        finally:
            self.first_call.set()

    async def put_stream(self, key: str, chunks: Any, **kwargs: Any) -> bool:
        # The index is streamed: the commit point a snapshot is stopped at.
        if self.at_index and key.startswith("snapshots/") and key.endswith(".json.gz"):
            await self._stop()
        try:
            return await self.inner.put_stream(key, chunks, **kwargs)
        finally:
            self.first_call.set()

    async def delete(self, key: str) -> None:
        if self.at_sweep and key.startswith(("manifests/", "blobs/")):
            await self._stop()
        await self.inner.delete(key)

    async def list(self, prefix: str) -> AsyncIterator[StoredObject]:
        async for obj in self.inner.list(prefix):
            yield obj
        self.first_call.set()


async def history(
    registry: LocalRegistry, repo: str, client: Any, store: SnapshotStore
) -> tuple[Image, Image]:
    """v1 → A (snapshot), v1 → B (snapshot), v1 → A again; the store holds A and B."""
    a, b = make_image(f"{repo}/a", layers=2), make_image(f"{repo}/b", layers=2)
    wanted = RepoFilter((repo,))
    for image in (a, b):
        await push_image(registry, repo, image, "v1")
        await take_snapshot(client, store, source_name="primary", repositories=wanted, blobs=True)
    await push_image(registry, repo, a, "v1")
    return a, b


async def snapshot_of(repo: str, client: Any, store: Any) -> SnapshotReport:
    return await run_snapshot(
        client, store, source_name="primary", repositories=RepoFilter((repo,)), blobs=True
    )


async def assert_whole_or_failed(report: SnapshotReport, store: SnapshotStore, a: Image) -> None:
    """Committed with every object present (A's included), or not committed and said so."""
    if report.snapshot is None:
        assert report.error, "a failed snapshot says why"
        for entry in await list_snapshots(store, "primary"):
            assert (
                await verify_snapshot(store, await load_snapshot(store, "primary", entry.id))
            ).ok
        return
    assert report.snapshot.repositories
    assert a.digest in report.snapshot.manifests
    verified = await verify_snapshot(store, report.snapshot)
    assert verified.problems == []
    assert verified.ok
    assert await store.stat(manifest_key(a.digest)) is not None


async def test_a_prune_while_a_snapshot_runs_sweeps_nothing_it_uses(
    kind: str,
    source_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    s3_endpoint: str,
    bucket: str,
) -> None:
    """
    The snapshot has walked (reusing A) and stands before its index; a prune with
    keep_last=1 and no grace runs to the end: it deletes the old index but defers the
    sweep, and the snapshot commits whole.
    """
    async with (
        opened(store_config(kind, tmp_path, s3_endpoint, bucket)) as store,
        open_client(source_registry) as client,
    ):
        a, _ = await history(source_registry, repo, client, store)
        gated = Gated(store, at_index=True)
        running = asyncio.create_task(snapshot_of(repo, client, gated))
        await asyncio.wait(
            [running, asyncio.create_task(gated.reached.wait())], return_when="FIRST_COMPLETED"
        )
        assert gated.reached.is_set(), running.result().error
        pruned = await prune(
            store, "primary", keep_last=1, grace=dt.timedelta(0), now=dt.datetime.now(dt.UTC) + SOON
        )
        gated.gate.set()
        report = await running

        await assert_whole_or_failed(report, store, a)
        assert report.ok
        assert len(pruned.deleted) == 1
        assert pruned.sweep_deferred
        assert pruned.sweep_deferred[0].startswith(f"{LEASES}snapshot/")
        assert pruned.objects_deleted == 0
        assert [o.key async for o in store.list(LEASES)] == []


async def test_a_snapshot_started_during_a_sweep_does_not_reuse_what_it_deletes(
    kind: str,
    source_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    s3_endpoint: str,
    bucket: str,
) -> None:
    """
    The prune is about to delete A's objects when a snapshot starts and looks at the
    store; the sweep then runs. The snapshot waits out the prune (or uploads A again):
    it commits with A present, and a later verify holds.
    """
    async with (
        opened(store_config(kind, tmp_path, s3_endpoint, bucket)) as store,
        open_client(source_registry) as client,
    ):
        a, _ = await history(source_registry, repo, client, store)
        pruning = Gated(store, at_sweep=True)
        sweep = asyncio.create_task(
            prune(
                pruning,
                "primary",
                keep_last=1,
                grace=dt.timedelta(0),
                now=dt.datetime.now(dt.UTC) + SOON,
            )
        )
        await asyncio.wait(
            [sweep, asyncio.create_task(pruning.reached.wait())], return_when="FIRST_COMPLETED"
        )
        assert pruning.reached.is_set(), sweep.result()
        snapping = Gated(store)
        running = asyncio.create_task(snapshot_of(repo, client, snapping))
        await snapping.first_call.wait()
        pruning.gate.set()
        pruned, report = await sweep, await running

        await assert_whole_or_failed(report, store, a)
        assert report.ok
        assert pruned.objects_deleted > 0
        assert pruned.sweep_deferred == []
        assert [o.key async for o in store.list(LEASES)] == []


async def test_a_crashed_prune_blocks_snapshots_only_until_its_lease_lapses(tmp_path: Path) -> None:
    """
    A live prune lease holds a snapshot back (past the wait limit: a StorageError naming
    it); the same lease left by a crash, older than LEASE_TTL, holds nothing back.
    """
    async with opened(store_config("dir", tmp_path)) as store:
        async with hold_lease(store, "prune", "primary") as lease:
            with pytest.raises(StorageError, match=f"a prune of .* \\({lease.key}\\)"):
                await wait_while_pruning(store, limit=dt.timedelta(0), poll_s=0)
        crashed = "leases/prune/primary/20240501T000000Z-crashed"
        await store.put_bytes(crashed, b"{}")
        old = (dt.datetime.now(dt.UTC) - LEASE_TTL - SOON).timestamp()
        os.utime(tmp_path / "store" / crashed, (old, old))
        await wait_while_pruning(store, limit=dt.timedelta(0), poll_s=0)
        assert await live_leases(store, "prune") == []


async def test_a_lease_not_renewed_for_most_of_its_ttl_refuses_the_commit(tmp_path: Path) -> None:
    """A snapshot whose lease may have lapsed (renewals failing) must not commit an index."""
    async with (
        opened(store_config("dir", tmp_path)) as store,
        hold_lease(store, "snapshot", "primary") as lease,
    ):
        lease.check()
        lease.written_at -= LEASE_TTL.total_seconds()
        with pytest.raises(StorageError, match="was not renewed for"):
            lease.check()
