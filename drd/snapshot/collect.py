"""
Take a snapshot: walk a registry with RegistryClient and commit an index to a store.

The walk visits every selected repository, every tag (release tags, cosign
``sha256-<hex>.sig|.att|.sbom`` tags and referrers fallback tags alike), and every
manifest below each tag. Manifests are stored content-addressed; a manifest the
store already holds is neither fetched nor uploaded again when the previous
snapshot recorded its graph. With ``blobs``, blobs are streamed into the store and
hashed on the way; without, the metadata blobs still are (configs, signature
payloads, attestations, SBOMs, Notation envelopes, sigstore bundles, up to
*metadata_blob_max* bytes each): a restore needs them whole even when the source is
gone. The index is written last: until it exists, nothing is listed.

Over 500 lines because the walk, its upload of objects and the commit of the index
share one report and one lease; the index schema is `drd.snapshot.model`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from drd.aio import run_all
from drd.errors import (
    DrdError,
    IntegrityError,
    InvalidManifest,
    InvalidReference,
    NotFound,
    StorageError,
    VerificationError,
)
from drd.oci import mediatype
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest
from drd.oci.ref import validate_tag
from drd.progress import Tally
from drd.registry.client import CHUNK, RegistryClient
from drd.registry.stream import verified_chunks
from drd.retry import RetryPolicy
from drd.selection.filters import RepoFilter
from drd.snapshot.catalog import list_snapshots, load_snapshot, write_index
from drd.snapshot.leases import Lease, hold_lease, wait_while_pruning
from drd.snapshot.model import (
    ManifestRecord,
    RepositoryRecord,
    Skipped,
    Snapshot,
    blob_key,
    manifest_key,
    object_digest,
    record_of,
    snapshot_id,
    valid_media_type,
    validate_source,
)
from drd.snapshot.settings import SettingsSource, store_settings
from drd.snapshot.sign import IndexKey
from drd.snapshot.watermark import record_watermark
from drd.store.base import SnapshotStore

log = structlog.get_logger(__name__)

# The default cap on one metadata blob stored with ``blobs = false``.
METADATA_BLOB_MAX = 4 * 1024 * 1024

# Real graphs nest an index in an index at most twice; deeper is hostile.
MAX_DEPTH = 8


@dataclass
class SnapshotReport:
    """One snapshot run: what was recorded, uploaded and skipped; the canonical summary."""

    source: str
    snapshot: Snapshot | None = None
    key: str = ""
    duration_s: float = 0.0
    manifests_uploaded: int = 0
    manifests_present: int = 0
    manifests_fetched: int = 0
    blobs_uploaded: int = 0
    blobs_present: int = 0
    bytes_uploaded: int = 0
    registry_requests: int = 0
    store_requests: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    error: str = ""
    exception: DrdError | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """Committed, and nothing was skipped."""
        return self.snapshot is not None and not self.error and not self.skipped

    def summary(self) -> dict[str, Any]:
        """Counts, bytes, requests and duration: the ``snapshot.run_finished`` fields."""
        snap = self.snapshot
        return {
            "id": snap.id if snap else "",
            "repositories": len(snap.repositories) if snap else 0,
            "tags": snap.tag_count if snap else 0,
            "manifests": len(snap.manifests) if snap else 0,
            "blobs": len(snap.blobs) if snap else 0,
            "manifests_fetched": self.manifests_fetched,
            "manifests_uploaded": self.manifests_uploaded,
            "manifests_present": self.manifests_present,
            "blobs_uploaded": self.blobs_uploaded,
            "blobs_present": self.blobs_present,
            "bytes_uploaded": self.bytes_uploaded,
            "registry_requests": self.registry_requests,
            "store_requests": self.store_requests,
            "skipped": len(self.skipped),
            "duration_s": round(self.duration_s, 3),
        }

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view of the run."""
        return {
            "source": self.source,
            "ok": self.ok,
            "key": self.key,
            "error": self.error,
            **self.summary(),
            "digest": str(self.snapshot.digest) if self.snapshot else "",
            "signed": bool(self.snapshot and self.snapshot.signature),
            "skipped_items": [
                {"repository": s.repository, "tag": s.tag, "reason": s.reason} for s in self.skipped
            ],
        }


class _Incomplete(Exception):
    """A tag's graph could not be recorded whole; the message says why."""


async def take_snapshot(
    client: RegistryClient,
    store: SnapshotStore,
    *,
    source_name: str,
    repositories: RepoFilter | None,
    blobs: bool,
    signing_key: IndexKey | None = None,
    now: dt.datetime | None = None,
    retry: RetryPolicy | None = None,
    metadata_blob_max: int = METADATA_BLOB_MAX,
) -> Snapshot:
    """
    Snapshot *client*'s registry into *store* and return the committed snapshot.

    Raises what `run_snapshot` recorded as the run's error (`RegistryError`,
    `StorageError`, …). Tags that could not be recorded are in ``Snapshot.skipped``.
    """
    report = await run_snapshot(
        client,
        store,
        source_name=source_name,
        repositories=repositories,
        blobs=blobs,
        signing_key=signing_key,
        now=now,
        retry=retry,
        metadata_blob_max=metadata_blob_max,
    )
    if report.exception is not None:
        raise report.exception
    if report.snapshot is None:  # pragma: no cover - every failure sets exception
        raise StorageError(f"snapshot of {source_name} was not committed: {report.error}")
    return report.snapshot


async def run_snapshot(
    client: RegistryClient,
    store: SnapshotStore,
    *,
    source_name: str,
    repositories: RepoFilter | None,
    blobs: bool,
    signing_key: IndexKey | None = None,
    now: dt.datetime | None = None,
    retry: RetryPolicy | None = None,
    concurrency: int = 4,
    blob_concurrency: int = 4,
    state_dir: Path | None = None,
    progress: Tally | None = None,
    metadata_blob_max: int = METADATA_BLOB_MAX,
    settings: Sequence[SettingsSource] = (),
) -> SnapshotReport:
    """
    Take one snapshot and report on it; the daemon's scheduled job.

    Side effects: reads the registry; holds a snapshot lease in *store* for the run
    (after waiting out a running prune); writes manifests (and blobs)
    content-addressed to *store*, then the index, then the ``latest`` pointer. A
    failure (registry or store unavailable after retries, an existing index) leaves
    no index: the report carries ``error`` and ``exception`` and ``snapshot`` is
    None. Logs one ``snapshot.run_finished`` (or ``snapshot.run_failed``) line.
    With *state_dir*, a committed snapshot moves this host's watermark of the newest
    snapshot (`drd.snapshot.watermark`), which a restore of ``latest`` checks.
    Tags walked and blobs stored are counted into *progress* as they go.
    *settings* sources are collected and stored (`drd.snapshot.settings`) under the
    same lease, before the index that lists them.
    """
    validate_source(source_name)
    taken_at = now or dt.datetime.now(dt.UTC)
    report = SnapshotReport(source=source_name)
    walk = _Walk(
        client,
        store,
        report,
        source=source_name,
        blobs=blobs,
        retry=retry or RetryPolicy(),
        concurrency=concurrency,
        blob_concurrency=blob_concurrency,
        signing_key=signing_key,
        progress=progress,
        metadata_blob_max=metadata_blob_max,
        settings=settings,
    )
    started = time.monotonic()
    requests0, store0 = client.requests, store.stats.requests
    with structlog.contextvars.bound_contextvars(job="snapshot", source=source_name):
        try:
            report.snapshot = await walk.run(repositories, taken_at, started)
            report.key = report.snapshot.key
            if state_dir is not None:
                await asyncio.to_thread(record_watermark, state_dir, store.url, report.snapshot)
        except DrdError as exc:
            report.exception = exc
            report.error = f"{type(exc).__name__}: {exc}"
        report.duration_s = time.monotonic() - started
        report.registry_requests = client.requests - requests0
        report.store_requests = store.stats.requests - store0
        if report.snapshot is None:
            # An unreachable registry or store is an operating condition: no traceback.
            log.error("snapshot.run_failed", error=report.error, **report.summary())
        else:
            log.info("snapshot.run_finished", ok=report.ok, **report.summary())
    return report


class _Walk:
    """One snapshot run's shared state: what the store holds, what was seen, what to upload."""

    def __init__(
        self,
        client: RegistryClient,
        store: SnapshotStore,
        report: SnapshotReport,
        *,
        source: str,
        blobs: bool,
        retry: RetryPolicy,
        concurrency: int,
        blob_concurrency: int,
        signing_key: IndexKey | None,
        progress: Tally | None = None,
        metadata_blob_max: int = METADATA_BLOB_MAX,
        settings: Sequence[SettingsSource] = (),
    ) -> None:
        self.client, self.store, self.report = client, store, report
        self.progress = progress
        self.tags_line, self.blobs_line = f"snapshot {source}: tags", f"snapshot {source}: blobs"
        self.settings_sources = settings
        self.source = source
        self.with_blobs = blobs
        self.retry = retry
        self.concurrency = max(concurrency, 1)
        self.blob_limit = asyncio.Semaphore(max(blob_concurrency, 1))
        self.signing_key = signing_key
        self.metadata_blob_max = metadata_blob_max
        self.metadata: set[Digest] = set()
        self.cache_metadata: frozenset[Digest] = frozenset()
        self.graph: dict[Digest, ManifestRecord] = {}
        self.cache: dict[Digest, ManifestRecord] = {}
        self.cache_sizes: dict[Digest, int] = {}
        self.stored_manifests: set[Digest] = set()
        self.stored_blobs: set[Digest] = set()
        self.blob_sizes: dict[Digest, int] = {}
        self.blob_home: dict[Digest, str] = {}
        self.fetching: dict[Digest, asyncio.Task[ManifestRecord]] = {}
        self.shared: dict[Digest, Digest] = {}

    async def run(
        self, repositories: RepoFilter | None, taken_at: dt.datetime, started: float
    ) -> Snapshot:
        # Held from before the store is looked at until after the index is written: a
        # prune sweeps no object while it is live (see drd.snapshot.leases).
        async with hold_lease(self.store, "snapshot", self.source) as lease:
            await wait_while_pruning(self.store)
            return await self._run(repositories, taken_at, started, lease)

    async def _run(
        self,
        repositories: RepoFilter | None,
        taken_at: dt.datetime,
        started: float,
        lease: Lease,
    ) -> Snapshot:
        await self._load_store_state()
        names = await self._repositories(repositories)
        records: dict[str, RepositoryRecord] = {}
        limit = asyncio.Semaphore(self.concurrency)

        async def one(repo: str) -> None:
            async with limit:
                record = await self._repository(repo)
            if record is not None:
                records[repo] = record

        try:
            await run_all(one(repo) for repo in names)
        finally:
            for task in self.fetching.values():
                task.cancel()
        members = set().union(*(r.manifests for r in records.values())) if records else set()
        manifests = {d: self.graph[d] for d in members}
        needed = {b for d in members for b in manifests[d].blobs}
        metadata = needed & self.metadata
        await self._upload_blobs(needed if self.with_blobs else metadata)
        settings = await store_settings(self.store, self.settings_sources)
        snapshot = Snapshot(
            id=snapshot_id(taken_at),
            source=self.source,
            taken_at=taken_at,
            repositories=records,
            manifests=manifests,
            blobs={b: self.blob_sizes[b] for b in needed},
            blobs_stored=self.with_blobs,
            source_url=self.client.base_url,
            duration_s=time.monotonic() - started,
            skipped=tuple(sorted(self.report.skipped, key=lambda s: (s.repository, s.tag))),
            metadata_blobs=frozenset(metadata),
            settings=settings,
        )
        if self.signing_key is not None:
            # Hashing the body is the run's largest piece of CPU work: off the event loop.
            digest = await asyncio.to_thread(lambda: snapshot.digest)
            snapshot = snapshot.signed(self.signing_key.sign(digest))
        lease.check()
        await write_index(self.store, snapshot)
        return snapshot

    # ------------------------------------------------------------------ store state

    async def _load_store_state(self) -> None:
        """What the store holds already, and the previous snapshot's graph to reuse."""
        async for obj in self.store.list("manifests/"):
            if (parsed := object_digest(obj.key)) is not None:
                self.stored_manifests.add(parsed[1])
        async for obj in self.store.list("blobs/"):
            if (parsed := object_digest(obj.key)) is not None:
                self.stored_blobs.add(parsed[1])
        entries = await list_snapshots(self.store, self.source)
        if not entries:
            return
        try:
            previous = await load_snapshot(
                self.store, self.source, entries[-1].id, verify_key=self.signing_key
            )
        except (StorageError, VerificationError) as exc:
            # Without the previous graph every manifest is fetched again; nothing is lost.
            log.warning("snapshot.previous_unusable", id=entries[-1].id, error=str(exc))
            return
        if previous.metadata_blobs is None:
            # An index from before metadata blobs were recorded: its graph does not say
            # which blobs are metadata, so every manifest is fetched once more.
            return
        self.cache = dict(previous.manifests)
        self.cache_sizes = dict(previous.blobs)
        self.cache_metadata = previous.metadata_blobs

    async def _repositories(self, wanted: RepoFilter | None) -> list[str]:
        if wanted is not None and (literal := wanted.literal_names()) is not None:
            return literal
        names = await self.client.catalog()
        return sorted(n for n in names if wanted is None or wanted(n))

    # ------------------------------------------------------------------ one repository

    async def _repository(self, repo: str) -> RepositoryRecord | None:
        tags = []
        for tag in await self.client.list_tags(repo):
            try:
                tags.append(validate_tag(tag))
            except InvalidReference as exc:
                # An index holds only names a restore can push back; say what was left out.
                self._skip(repo, tag[:128], str(exc))
        if not tags:
            return None
        heads = await self._heads(repo, tags)
        if self.progress is not None:
            self.progress.expect(self.tags_line, len(heads))
        members: set[Digest] = set()
        tag_map: dict[str, Digest] = {}
        limit = asyncio.Semaphore(16)

        async def walk(tag: str, digest: Digest) -> None:
            async with limit:
                try:
                    await self._node(repo, digest, members, frozenset())
                except _Incomplete as exc:
                    self._skip(repo, tag, str(exc))
                    return
                finally:
                    if self.progress is not None:
                        self.progress.done(self.tags_line)
            tag_map[tag] = digest

        await run_all(walk(tag, digest) for tag, digest in sorted(heads.items()))
        referrers = await self._referrers(repo, members)
        return RepositoryRecord(tags=tag_map, manifests=frozenset(members), referrers=referrers)

    def _skip(self, repo: str, tag: str, reason: str) -> None:
        self.report.skipped.append(Skipped(repo, tag, reason))
        log.warning("snapshot.tag_skipped", repository=repo, tag=tag, reason=reason)

    async def _heads(self, repo: str, tags: list[str]) -> dict[str, Digest]:
        """Every tag's digest (HEAD); a tag gone since the listing is left out."""
        limit = asyncio.Semaphore(16)
        found: dict[str, Digest] = {}

        async def head(tag: str) -> None:
            async with limit:
                desc = await self.client.head_manifest(repo, tag)
                if desc is not None:
                    found[tag] = desc.digest
                    return
                # No digest in the HEAD answer (or the tag is gone): ask with a GET.
                try:
                    manifest = await self.client.get_manifest(repo, tag)
                except (NotFound, InvalidManifest, IntegrityError) as exc:
                    if not isinstance(exc, NotFound):
                        self._skip(repo, tag, f"manifest is unusable: {exc}")
                    return
                found[tag] = manifest.digest

        await run_all(head(tag) for tag in tags)
        return found

    async def _node(
        self, repo: str, digest: Digest, members: set[Digest], path: frozenset[Digest]
    ) -> None:
        """Record *digest* and everything below it as members of *repo*."""
        if digest in members:
            return
        if digest in path or len(path) > MAX_DEPTH:
            raise _Incomplete(f"manifest {digest} nests deeper than {MAX_DEPTH} or in itself")
        record = await self._record(repo, digest)
        below = path | {digest}
        await run_all(self._node(repo, child, members, below) for child in record.children)
        for blob in record.blobs:
            self.blob_home.setdefault(blob, repo)
        members.add(digest)

    async def _record(self, repo: str, digest: Digest) -> ManifestRecord:
        if (known := self.graph.get(digest)) is not None:
            return known
        cached = self.cache.get(digest)
        if (
            cached is not None
            and digest in self.stored_manifests
            and all(b in self.cache_sizes for b in cached.blobs)
        ):
            # Recorded by the previous snapshot and still stored: no GET, no PUT.
            self.graph[digest] = cached
            for blob in cached.blobs:
                self.blob_sizes.setdefault(blob, self.cache_sizes[blob])
                if blob in self.cache_metadata and self.cache_sizes[blob] <= self.metadata_blob_max:
                    self.metadata.add(blob)
            self.report.manifests_present += 1
            return cached
        task = self.fetching.get(digest)
        if task is None:
            task = asyncio.create_task(self._fetch(repo, digest))
            self.fetching[digest] = task
        return await asyncio.shield(task)

    async def _fetch(self, repo: str, digest: Digest) -> ManifestRecord:
        try:
            manifest = await self.client.get_manifest(repo, digest)
        except NotFound as exc:
            raise _Incomplete(f"manifest {digest} is gone from {repo}") from exc
        except (InvalidManifest, IntegrityError) as exc:
            raise _Incomplete(f"manifest {digest} in {repo} is unusable: {exc}") from exc
        self.report.manifests_fetched += 1
        if not valid_media_type(manifest.media_type):
            raise _Incomplete(f"manifest {digest} has an unusable media type")
        await self._store_manifest(manifest)
        record = self._shared(record_of(manifest))
        for desc in manifest.blobs:
            blob = self._share(desc.digest)
            self.blob_sizes.setdefault(blob, desc.size)
            is_config = desc is manifest.config
            if desc.size <= self.metadata_blob_max and mediatype.is_metadata_blob(
                desc.media_type, config=is_config, referrer=manifest.subject is not None
            ):
                self.metadata.add(blob)
        self.graph[digest] = record
        # Recorded: later walks find it in the graph, so the finished task (and what it
        # holds) need not live until the run ends. A failed one stays, to fail them too.
        self.fetching.pop(digest, None)
        return record

    def _share(self, digest: Digest) -> Digest:
        """One object per digest for the run: thousands of manifests name the same blobs."""
        return self.shared.setdefault(digest, digest)

    def _shared(self, record: ManifestRecord) -> ManifestRecord:
        share = self._share
        return ManifestRecord(
            media_type=sys.intern(record.media_type),
            size=record.size,
            children=tuple(map(share, record.children)),
            blobs=tuple(map(share, record.blobs)),
            subject=share(record.subject) if record.subject is not None else None,
        )

    async def _store_manifest(self, manifest: Manifest) -> None:
        digest = manifest.digest
        if digest in self.stored_manifests:
            self.report.manifests_present += 1
            return
        written = await self.store.put_bytes(manifest_key(digest), manifest.raw, create_only=True)
        self.stored_manifests.add(digest)
        if written:
            self.report.manifests_uploaded += 1
            self.report.bytes_uploaded += len(manifest.raw)
        else:
            self.report.manifests_present += 1

    async def _referrers(self, repo: str, members: set[Digest]) -> dict[Digest, tuple[Digest, ...]]:
        """
        Referrers through the OCI 1.1 API, when the registry has one.

        Without the API there is nothing to ask: the fallback ``sha256-<hex>`` tags are
        ordinary tags and were walked with the rest.
        """
        found: dict[Digest, tuple[Digest, ...]] = {}
        asked: set[Digest] = set()
        while pending := sorted(members - asked):
            for subject in pending:
                if _referrers_api_absent(self.client):
                    return {}
                asked.add(subject)
                descs = await self.client.referrers(repo, subject)
                if _referrers_api_absent(self.client):
                    return {}  # that answer came from the fallback tag, walked already
                listed: list[Digest] = []
                for desc in descs:
                    try:
                        await self._node(repo, desc.digest, members, frozenset())
                    except _Incomplete as exc:
                        self._skip(repo, subject.tag_form, f"referrer: {exc}")
                        continue
                    listed.append(desc.digest)
                if listed:
                    found[subject] = tuple(dict.fromkeys(listed))
        return found

    # ------------------------------------------------------------------ blobs

    async def _upload_blobs(self, needed: set[Digest]) -> None:
        missing = sorted(b for b in needed if b not in self.stored_blobs)
        self.report.blobs_present += len(needed) - len(missing)
        if self.progress is not None:
            self.progress.expect(self.blobs_line, len(missing))
        await run_all(self._upload_blob(b) for b in missing)

    async def _upload_blob(self, digest: Digest) -> None:
        repo, size = self.blob_home[digest], self.blob_sizes[digest]
        async with self.blob_limit:
            # The whole stream transfer is the retried unit, not one read.
            written = await self.retry.call(
                "snapshot.copy_blob", lambda: self._stream_blob(repo, digest, size)
            )
        if written:
            self.report.blobs_uploaded += 1
            self.report.bytes_uploaded += size
        else:
            self.report.blobs_present += 1
        if self.progress is not None:
            self.progress.done(self.blobs_line, nbytes=size if written else 0)

    async def _stream_blob(self, repo: str, digest: Digest, size: int) -> bool:
        async with self.client.open_blob(repo, digest, size) as reader:
            return await self.store.put_stream(
                blob_key(digest),
                verified_chunks(reader.iter_chunked(CHUNK), digest, size),
                size=size,
                create_only=True,
            )


def _referrers_api_absent(client: RegistryClient) -> bool:
    # TODO(registry): use a public RegistryClient.referrers_api once it exposes one.
    return getattr(client, "_referrers_api", None) is False
