"""
Snapshots in a store: write an index (the commit point), list, load, verify and prune.

An index is written create-only and read back before the ``latest`` pointer moves,
so a listed snapshot is always complete. Loading parses the index as untrusted
input and, when a key is configured, checks its signature.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import structlog

from drd.aio import run_all
from drd.errors import (
    DrdError,
    InvalidManifest,
    InvalidReference,
    SnapshotCorrupt,
    SnapshotNotFound,
    StorageError,
)
from drd.oci.digest import Digest
from drd.oci.manifest import MAX_MANIFEST_BYTES, Manifest
from drd.snapshot.encode import index_chunks
from drd.snapshot.leases import hold_lease, live_leases
from drd.snapshot.model import (
    MAX_INDEX_OBJECT_BYTES,
    Snapshot,
    blob_key,
    index_key,
    index_prefix,
    latest_key,
    manifest_key,
    parse_index_key,
    parse_snapshot_id,
    record_of,
)
from drd.snapshot.reader import IndexReader
from drd.snapshot.retention import select_retention
from drd.snapshot.settings import SettingsRecord, load_settings_file
from drd.snapshot.sign import IndexKey
from drd.snapshot.sweep import plan_sweep
from drd.store.base import SnapshotStore, StoredObject
from drd.store.dir import DirStore
from drd.store.s3 import S3Store

log = structlog.get_logger(__name__)

T = TypeVar("T")

LATEST = "latest"
# Unreferenced objects younger than this survive a prune: a snapshot being taken
# right now may have uploaded them and not yet written its index.
PRUNE_GRACE = dt.timedelta(hours=6)


@dataclass(frozen=True, slots=True)
class SnapshotEntry:
    """One listed snapshot: what its key says, without reading it."""

    id: str
    source: str
    key: str
    taken_at: dt.datetime
    index_bytes: int  # the index file's own size
    # What the snapshot holds (`Snapshot.logical_bytes`) and what the one before it did
    # not (`Snapshot.new_bytes`); None until `with_sizes` read the index, or unreadable.
    logical_bytes: int | None = None
    new_bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "id": self.id,
            "source": self.source,
            "key": self.key,
            "taken_at": self.taken_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "logical_bytes": self.logical_bytes,
            "new_bytes": self.new_bytes,
            "index_bytes": self.index_bytes,
        }


async def write_index(store: SnapshotStore, snapshot: Snapshot) -> str:
    """
    Commit *snapshot*: stream its index to the store create-only (locked where the store
    can), hashing the bytes on the way; read it back streamed and compare the hash; then
    move the ``latest`` pointer. Returns the index key. The encoding runs off the event
    loop, one chunk at a time: neither the document nor its bytes are held whole.

    Raises `StorageError` when an index with this id exists, `SnapshotCorrupt` when
    the read-back differs.
    """
    key = snapshot.key
    digest = await asyncio.to_thread(lambda: snapshot.digest)
    written = hashlib.sha256()
    count = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal count
        pieces = index_chunks(snapshot, digest)
        while (chunk := await asyncio.to_thread(next, pieces, None)) is not None:
            written.update(chunk)
            count += len(chunk)
            yield chunk

    if not await store.put_stream(key, chunks(), create_only=True, lock=True):
        raise StorageError(f"snapshot index {key} already exists", key=key)
    back, size = await _hash_object(store, key)
    if (back, size) != (written.hexdigest(), count):
        raise SnapshotCorrupt(f"snapshot index {key} did not read back as written", key=key)
    pointer = {"id": snapshot.id, "key": key, "index_digest": str(digest)}
    await store.put_bytes(latest_key(snapshot.source), json.dumps(pointer).encode() + b"\n")
    return key


async def _hash_object(store: SnapshotStore, key: str) -> tuple[str, int]:
    """The sha256 hex and size of one stored object, streamed."""

    async def consume(chunks: AsyncIterator[bytes]) -> tuple[str, int]:
        hasher = hashlib.sha256()
        count = 0
        async for chunk in chunks:
            hasher.update(chunk)
            count += len(chunk)
        return hasher.hexdigest(), count

    return await _read_stream(store, key, consume)


async def read_index(store: SnapshotStore, key: str) -> Snapshot:
    """
    Stream one index from the store into `IndexReader` (parsing off the event loop) and
    return the validated snapshot. Raises `SnapshotNotFound`, `SnapshotCorrupt`, or
    `StorageError` past `MAX_INDEX_OBJECT_BYTES`.
    """

    async def consume(chunks: AsyncIterator[bytes]) -> Snapshot:
        reader = IndexReader(key=key)
        count = 0
        async for chunk in chunks:
            count += len(chunk)
            if count > MAX_INDEX_OBJECT_BYTES:
                raise StorageError(
                    f"object {key} is over the {MAX_INDEX_OBJECT_BYTES} byte limit", key=key
                )
            await asyncio.to_thread(reader.feed, chunk)
        return await asyncio.to_thread(reader.close)

    return await _read_stream(store, key, consume)


async def _read_stream(
    store: SnapshotStore, key: str, consume: Callable[[AsyncIterator[bytes]], Awaitable[T]]
) -> T:
    """
    *consume* one streamed object, from the start again when the stream is cut short
    (`StorageUnavailable`) as a whole GET would be, by the store's own retry policy.
    """

    async def once() -> T:
        async with store.open_stream(key) as chunks:
            return await consume(chunks)

    if store.retry is not None:
        return await store.retry.call("store.get_stream", once)
    return await once()


async def list_snapshots(store: SnapshotStore, source: str | None = None) -> list[SnapshotEntry]:
    """
    Committed snapshots, oldest first: of *source*, or of every source when None.

    Only well-formed index keys count; temporary files and partial uploads never
    appear, because an index exists only once it is complete.
    """
    prefix = index_prefix(source) if source is not None else "snapshots/"
    found: list[SnapshotEntry] = []
    async for obj in store.list(prefix):
        named = parse_index_key(obj.key)
        if named is None:
            continue
        src, snap_id = named
        found.append(SnapshotEntry(snap_id, src, obj.key, parse_snapshot_id(snap_id), obj.size))
    found.sort(key=lambda e: (e.taken_at, e.source, e.id))
    return found


async def with_sizes(
    store: SnapshotStore, entries: Sequence[SnapshotEntry], concurrency: int = 8
) -> list[SnapshotEntry]:
    """
    *entries* (oldest first) with their logical and new bytes, read from their indexes;
    new bytes count against the entry before it of the same source. An index that cannot
    be read keeps None for both (and the next one's new bytes count from nothing).
    Up to *concurrency* indexes are read at once, in order; only what each names (its
    objects and their sizes) is kept, and only until the next of its source is sized.
    """

    async def read(entry: SnapshotEntry) -> dict[Digest, int] | None:
        try:
            return (await read_index(store, entry.key)).objects()
        except DrdError:
            return None

    sized: list[SnapshotEntry] = []
    previous: dict[str, dict[Digest, int] | None] = {}
    window: deque[asyncio.Task[dict[Digest, int] | None]] = deque()
    pending = iter(entries)
    try:
        for entry in entries:
            while len(window) < max(concurrency, 1) and (ahead := next(pending, None)):
                window.append(asyncio.create_task(read(ahead)))
            objects = await window.popleft()
            if objects is None:
                sized.append(entry)
            else:
                before = previous.get(entry.source) or {}
                new = sum(n for d, n in objects.items() if d not in before)
                sized.append(replace(entry, logical_bytes=sum(objects.values()), new_bytes=new))
            previous[entry.source] = objects
    finally:
        for task in window:
            task.cancel()
    return sized


async def resolve(store: SnapshotStore, source: str, ref: str) -> str:
    """The id *ref* names: ``latest`` is the newest listed snapshot of *source*."""
    if ref == LATEST:
        entries = await list_snapshots(store, source)
        if not entries:
            raise SnapshotNotFound(f"no snapshot of {source} in {store.url}")
        return entries[-1].id
    try:
        parse_snapshot_id(ref)
    except InvalidReference as exc:
        raise SnapshotNotFound(f"{exc}; use an id from `drd snapshot list`") from exc
    return ref


async def load_snapshot(
    store: SnapshotStore, source: str, ref: str, *, verify_key: IndexKey | None = None
) -> Snapshot:
    """
    Read and validate one snapshot (``latest`` or an id) of *source*.

    Raises `SnapshotNotFound`, `SnapshotCorrupt` (a malformed or hostile index), or
    `VerificationError` when *verify_key* is given and the signature does not hold.
    """
    snap_id = await resolve(store, source, ref)
    key = index_key(source, snap_id)
    try:
        snapshot = await read_index(store, key)
    except SnapshotNotFound as exc:
        raise SnapshotNotFound(
            f"no snapshot {snap_id} of {source} in {store.url}", key=key
        ) from exc
    if verify_key is not None:
        verify_key.verify(snapshot)
    return snapshot


async def load_manifest(store: SnapshotStore, snapshot: Snapshot, digest: Digest) -> Manifest:
    """
    One stored manifest, re-hashed and checked against the snapshot's record of it.

    Raises `SnapshotCorrupt` naming the digest when the object is missing, hashes to
    something else, or disagrees with the index about its type, children or blobs.
    """
    record = snapshot.manifests.get(digest)
    if record is None:
        raise SnapshotCorrupt(f"snapshot {snapshot.id} does not hold manifest {digest}")
    key = manifest_key(digest)
    try:
        raw = await store.get_bytes(key, max_size=MAX_MANIFEST_BYTES)
    except SnapshotNotFound as exc:
        raise SnapshotCorrupt(
            f"manifest {digest} of snapshot {snapshot.id} is missing from the store", key=key
        ) from exc
    if not digest.matches(raw):
        actual = Digest.of(raw, digest.algorithm)
        raise SnapshotCorrupt(
            f"stored manifest {digest} is corrupt: its bytes hash to {actual}", key=key
        )
    try:
        manifest = Manifest.parse(raw, record.media_type, digest)
    except (InvalidManifest, DrdError) as exc:
        raise SnapshotCorrupt(f"stored manifest {digest} does not parse: {exc}", key=key) from exc
    if record_of(manifest) != record:
        raise SnapshotCorrupt(
            f"stored manifest {digest} disagrees with snapshot {snapshot.id}'s record of it",
            key=key,
        )
    return manifest


# --------------------------------------------------------------------------- verify


@dataclass(frozen=True, slots=True)
class ObjectProblem:
    """One referenced object that failed verification."""

    kind: str  # "manifest" or "blob"
    digest: str
    reason: str


@dataclass
class VerifyReport:
    """What `verify_snapshot` checked and what failed, by digest."""

    snapshot: str
    manifests_checked: int = 0
    blobs_checked: int = 0
    settings_checked: int = 0
    bytes_checked: int = 0
    problems: list[ObjectProblem] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        """No object failed."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "snapshot": self.snapshot,
            "ok": self.ok,
            "manifests_checked": self.manifests_checked,
            "blobs_checked": self.blobs_checked,
            "settings_checked": self.settings_checked,
            "bytes_checked": self.bytes_checked,
            "duration_s": round(self.duration_s, 3),
            "problems": [
                {"kind": p.kind, "digest": p.digest, "reason": p.reason} for p in self.problems
            ],
        }


async def verify_snapshot(
    store: SnapshotStore, snapshot: Snapshot, *, concurrency: int = 8
) -> VerifyReport:
    """
    Re-hash every object *snapshot* references: each manifest (against its digest and
    its record), each stored settings file and, when blobs were stored, each blob
    streamed. Failures are listed
    by digest in the report; storage outages raise.
    """
    report = VerifyReport(snapshot.id)
    started = time.monotonic()
    limit = asyncio.Semaphore(concurrency)

    async def manifest(digest: Digest) -> None:
        async with limit:
            try:
                await load_manifest(store, snapshot, digest)
            except SnapshotCorrupt as exc:
                report.problems.append(ObjectProblem("manifest", str(digest), str(exc)))
            report.manifests_checked += 1
            report.bytes_checked += snapshot.manifests[digest].size

    async def blob(digest: Digest, size: int) -> None:
        async with limit:
            reason = await _check_blob(store, digest, size)
            if reason:
                report.problems.append(ObjectProblem("blob", str(digest), reason))
            report.blobs_checked += 1
            report.bytes_checked += size

    async def setting(record: SettingsRecord) -> None:
        async with limit:
            try:
                await load_settings_file(store, record)
            except SnapshotCorrupt as exc:
                report.problems.append(ObjectProblem("settings", str(record.digest), str(exc)))
            report.settings_checked += 1
            report.bytes_checked += record.size

    blobs = snapshot.stored_blobs.items()
    await run_all(
        [manifest(d) for d in snapshot.manifests]
        + [blob(d, size) for d, size in blobs]
        + [setting(r) for r in snapshot.settings if r.stored]
    )
    report.problems.sort(key=lambda p: (p.kind, p.digest))
    report.duration_s = time.monotonic() - started
    return report


async def _check_blob(store: SnapshotStore, digest: Digest, size: int) -> str:
    """Stream one stored blob through a hasher; the reason it fails, or ''."""
    hasher = digest.hasher()
    count = 0
    try:
        async with store.open_stream(blob_key(digest)) as chunks:
            async for chunk in chunks:
                hasher.update(chunk)
                count += len(chunk)
    except SnapshotNotFound:
        return f"blob {digest} is missing from the store"
    if count != size:
        return f"blob {digest} is {count} bytes in the store, not {size}"
    if hasher.hexdigest() != digest.hex:
        return (
            f"stored blob {digest} is corrupt: it hashes to {digest.algorithm}:{hasher.hexdigest()}"
        )
    return ""


# --------------------------------------------------------------------------- prune


@dataclass
class PruneReport:
    """What a prune kept, deleted (or, in a dry run, would delete), and why."""

    source: str
    dry_run: bool
    kept: dict[str, tuple[str, ...]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    objects_deleted: int = 0
    bytes_freed: int = 0
    objects_kept_young: int = 0
    sweep_deferred: list[str] = field(default_factory=list)  # live snapshot leases
    # S3 Object Lock: snapshots retention would delete but whose index is still locked
    # (id -> retain-until), and unreferenced objects still locked (key -> retain-until).
    retained: dict[str, dt.datetime] = field(default_factory=dict)
    objects_retained: dict[str, dt.datetime] = field(default_factory=dict)

    @property
    def objects_retained_until(self) -> dt.datetime | None:
        """When the last of the still-locked objects may go."""
        return max(self.objects_retained.values(), default=None)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "source": self.source,
            "dry_run": self.dry_run,
            "kept": {k: list(v) for k, v in sorted(self.kept.items())},
            "deleted": self.deleted,
            "objects_deleted": self.objects_deleted,
            "bytes_freed": self.bytes_freed,
            "objects_kept_young": self.objects_kept_young,
            "sweep_deferred": self.sweep_deferred,
            "retained": {k: _iso(v) for k, v in sorted(self.retained.items())},
            "objects_retained": len(self.objects_retained),
            "objects_retained_until": _iso(self.objects_retained_until),
        }


def _iso(when: dt.datetime | None) -> str | None:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else None


async def prune(
    store: SnapshotStore,
    source: str,
    *,
    keep_last: int,
    keep_daily: int = 0,
    keep_weekly: int = 0,
    dry_run: bool = False,
    grace: dt.timedelta = PRUNE_GRACE,
    now: dt.datetime | None = None,
) -> PruneReport:
    """
    Apply retention to *source*'s snapshots, then delete objects no remaining snapshot
    (of any source in the store) references.

    Every remaining index is read first; if one cannot be read, nothing is deleted,
    since its references are unknown. Indexes go before objects, so a crash midway
    leaves only unreferenced objects. Objects younger than *grace* stay. While a
    snapshot holds a lease on the store (one is being taken right now, here or on
    another host), no object is deleted: the sweep is deferred to the next prune and
    ``sweep_deferred`` names the leases. A folder store's abandoned temporary files
    are removed too.

    On S3, Object Lock is respected, so a prune never fails half-way on it: a snapshot
    whose index is still locked is kept (``retained``, with its retain-until date) and
    so are the objects it references; an unreferenced object still locked is skipped
    (``objects_retained``) and the next prune after its date deletes it. A plain
    DeleteObject would not fail on a locked object, it would hide it behind a delete
    marker: the check comes first so what a prune reports as deleted is really gone.
    """
    if dry_run:
        return await _prune(store, source, keep_last, keep_daily, keep_weekly, True, grace, now)
    # The lease is written before anything is read: see drd.snapshot.leases for why.
    async with hold_lease(store, "prune", source):
        if isinstance(store, DirStore):
            await store.clean_temporaries(everywhere=True)
        return await _prune(store, source, keep_last, keep_daily, keep_weekly, False, grace, now)


async def _prune(
    store: SnapshotStore,
    source: str,
    keep_last: int,
    keep_daily: int,
    keep_weekly: int,
    dry_run: bool,
    grace: dt.timedelta,
    now: dt.datetime | None,
) -> PruneReport:
    now = now or dt.datetime.now(dt.UTC)
    report = PruneReport(source, dry_run)
    every = await list_snapshots(store, None)
    mine = [e for e in every if e.source == source]
    retention = select_retention(
        [(e.id, e.taken_at) for e in mine],
        keep_last=keep_last,
        keep_daily=keep_daily,
        keep_weekly=keep_weekly,
    )
    report.kept = dict(retention.keep)
    doomed = set(retention.delete)
    for entry in mine:
        if entry.id in doomed and (until := await _locked_until(store, entry.key, now)):
            doomed.discard(entry.id)
            report.retained[entry.id] = until
    remaining = [e for e in every if not (e.source == source and e.id in doomed)]
    referenced: set[str] = set()
    for entry in remaining:
        snap = await load_snapshot(store, entry.source, entry.id)
        referenced |= snap.object_keys()
    listed: list[StoredObject] = []
    for prefix in ("manifests/", "blobs/", "settings/"):
        listed += [obj async for obj in store.list(prefix) if obj.key not in referenced]
    report.deleted = [e.id for e in mine if e.id in doomed]
    # Leases are looked at after the listing, not before: a snapshot that started
    # meanwhile counts.
    sweep = plan_sweep(
        listed, referenced, now=now, grace=grace, leases=await live_leases(store, "snapshot")
    )
    unreferenced = []
    for obj in sweep.delete:
        if until := await _locked_until(store, obj.key, now):
            report.objects_retained[obj.key] = until
        else:
            unreferenced.append(obj)
    report.objects_kept_young = sweep.kept_young
    report.sweep_deferred = sweep.deferred
    report.objects_deleted = len(unreferenced)
    report.bytes_freed = sum(o.size for o in unreferenced)
    if dry_run:
        return report
    for entry in mine:
        if entry.id in doomed:
            await store.delete(entry.key)
            log.info("snapshot.pruned", source=source, id=entry.id)
    if report.sweep_deferred:
        log.warning("snapshot.prune_sweep_deferred", source=source, leases=report.sweep_deferred)
    await _delete_all(store, [o.key for o in unreferenced])
    log.info(
        "snapshot.prune_finished",
        source=source,
        snapshots_deleted=len(report.deleted),
        objects_deleted=report.objects_deleted,
        bytes_freed=report.bytes_freed,
        sweep_deferred=bool(report.sweep_deferred),
        snapshots_retained=len(report.retained),
        objects_retained=len(report.objects_retained),
    )
    return report


async def _locked_until(store: SnapshotStore, key: str, now: dt.datetime) -> dt.datetime | None:
    """The Object Lock date that still holds *key* at *now*; None where nothing does."""
    # Only S3 has per-object retention; a listing does not carry it, so one HEAD each.
    if not isinstance(store, S3Store):
        return None
    obj = await store.stat(key)
    return obj.retain_until if obj is not None and obj.locked_at(now) else None


async def _delete_all(store: SnapshotStore, keys: Sequence[str], concurrency: int = 16) -> None:
    limit = asyncio.Semaphore(concurrency)

    async def one(key: str) -> None:
        async with limit:
            await store.delete(key)

    await run_all(one(key) for key in keys)
