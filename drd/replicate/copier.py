"""Copy one artefact graph between registries: blobs, child manifests, the root; byte-exact."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog

from drd.aio import InFlight, KeyedLocks, exception_leaves
from drd.errors import DigestMismatch, DrdError, IntegrityError, InvalidManifest, SizeMismatch
from drd.oci.descriptor import Descriptor
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest
from drd.registry.client import CHUNK, MonolithicUploadRefused, RegistryClient
from drd.registry.stream import verified_chunks
from drd.retry import RetryPolicy

log = structlog.get_logger(__name__)

# Deeper nesting than this is hostile: real indexes nest once, attestation indexes twice.
MAX_DEPTH = 8


@dataclass
class CopyStats:
    """What one copier did; read by the runner for the report and metrics."""

    blobs_copied: int = 0
    blobs_present: int = 0
    blobs_mounted: int = 0
    bytes_copied: int = 0
    manifests_written: int = 0
    manifests_present: int = 0


@dataclass
class TargetState:
    """What is known of one target during a pass: which repository holds which blob."""

    blob_home: dict[Digest, str] = field(default_factory=dict)
    # (repository, blob) placed or found at the target in this pass: asked about once, not
    # once per image (a base layer under a hundred tags costs one HEAD, not a hundred).
    placed: set[tuple[str, Digest]] = field(default_factory=set)
    inflight: InFlight = field(default_factory=InFlight)
    # distribution rejects one of two concurrent writes of the same content ("digest did
    # not match"): one writer per digest at a target, blob or manifest, whatever the repository.
    write_locks: KeyedLocks = field(default_factory=KeyedLocks)


class Copier:
    """
    Copies graphs from *source* to *target*, children before parents.

    Every manifest is pushed with the exact bytes fetched (digest-checked on
    both sides); every blob is hashed while it streams and the upload aborted on
    a digest or size mismatch. Blobs the target has are skipped, blobs it
    has in another repository are mounted. Raises `RegistryError`,
    `IntegrityError` or `InvalidManifest`; writes nothing under a tag.
    """

    def __init__(
        self,
        source: RegistryClient,
        target: RegistryClient,
        retry: RetryPolicy,
        *,
        blob_concurrency: int = 8,
        state: TargetState | None = None,
    ) -> None:
        self.source, self.target = source, target
        self._retry = retry
        self._blobs = asyncio.Semaphore(blob_concurrency)
        self.state = state or TargetState()
        self.stats = CopyStats()
        # Every (repository, manifest digest) made or found present at the target.
        self.seen: set[tuple[str, Digest]] = set()
        self._same_registry = source.base_url == target.base_url

    async def copy_graph(
        self, src_repo: str, dst_repo: str, digest: Digest, fetched: Manifest | None = None
    ) -> Manifest:
        """
        Make *digest* and everything under it present in *dst_repo*; return its manifest.

        *fetched* is the source manifest of *digest* when the caller already read it.
        """
        if fetched is not None and fetched.digest == digest:
            manifest = fetched
        else:
            manifest = await self.source.get_manifest(src_repo, digest)
        await self._ensure_once(src_repo, dst_repo, manifest, depth=0, path=frozenset())
        return manifest

    async def tag(self, dst_repo: str, tag: str, manifest: Manifest) -> None:
        """Point *tag* at *manifest* (already present): the last step, the commit point."""
        await self._put(dst_repo, tag, manifest)

    async def read_back(self, dst_repo: str, manifest: Manifest) -> None:
        """
        Read *manifest* back from the target by digest: the bytes must be the same.

        Under the digest's write lock: distribution rewrites a revision link in place
        when another tag is put on the same digest, and a read racing it sees garbage.
        Raises `IntegrityError` on different bytes.
        """
        async with self.state.write_locks.hold(manifest.digest):
            stored = await self.target.get_manifest(dst_repo, manifest.digest)
        if stored.raw != manifest.raw:
            raise IntegrityError(f"{self.target.host} returned other bytes for {manifest.digest}")

    async def _put(self, dst_repo: str, reference: str, manifest: Manifest) -> None:
        # An index PUT makes the registry read its children's revision links; a tag PUT of a
        # child rewrites that link in place. Hold the children's locks too, in sorted order.
        digests = sorted({manifest.digest, *(d.digest for d in manifest.manifests)})
        async with self.state.write_locks.hold_all(digests):
            await self.target.put_manifest(dst_repo, reference, manifest)

    async def _ensure_once(
        self, src_repo: str, dst_repo: str, manifest: Manifest, depth: int, path: frozenset[Digest]
    ) -> None:
        key = ("manifest", self.target.base_url, dst_repo, manifest.digest)
        await self.state.inflight.once(
            key, lambda: self._ensure(src_repo, dst_repo, manifest, depth, path)
        )

    async def _ensure(
        self, src_repo: str, dst_repo: str, manifest: Manifest, depth: int, path: frozenset[Digest]
    ) -> None:
        if depth > MAX_DEPTH:
            raise InvalidManifest(f"manifest {manifest.digest} nests deeper than {MAX_DEPTH}")
        if manifest.digest in path:
            raise InvalidManifest(f"manifest {manifest.digest} contains itself")
        if manifest.is_index:
            await self._children(src_repo, dst_repo, manifest, depth, path | {manifest.digest})
        else:
            await self._gather(self._copy_blob(src_repo, dst_repo, d) for d in manifest.blobs)
        await self._put(dst_repo, str(manifest.digest), manifest)
        self.stats.manifests_written += 1
        self.seen.add((dst_repo, manifest.digest))

    async def _children(
        self, src_repo: str, dst_repo: str, index: Manifest, depth: int, path: frozenset[Digest]
    ) -> None:
        async def child(desc: Descriptor) -> None:
            if desc.digest in path:
                raise InvalidManifest(f"index {index.digest} contains itself")
            # HEAD before GET: a child present at the target is complete (registries check).
            self.seen.add((dst_repo, desc.digest))
            if await self.target.head_manifest(dst_repo, str(desc.digest)) is not None:
                self.stats.manifests_present += 1
                return
            manifest = await self.source.get_manifest(src_repo, desc.digest)
            await self._ensure_once(src_repo, dst_repo, manifest, depth + 1, path)

        await self._gather(child(d) for d in dict((d.digest, d) for d in index.manifests).values())

    @staticmethod
    async def _gather(coros: Iterable[Coroutine[Any, Any, None]]) -> None:
        """Run *coros* together; the first drd error fails them all, raised as itself."""
        try:
            async with asyncio.TaskGroup() as group:
                for coro in coros:
                    group.create_task(coro)
        except ExceptionGroup as group_error:
            # Unwrapped, not re-raised as a group: a group slips past the runner's per-item
            # `except DrdError` and fails the whole pass with "unhandled errors in a TaskGroup".
            leaves = exception_leaves(group_error)
            if all(isinstance(leaf, DrdError) for leaf in leaves):
                raise leaves[0] from None
            raise

    # ------------------------------------------------------------------ blobs

    async def _copy_blob(self, src_repo: str, dst_repo: str, desc: Descriptor) -> None:
        if (dst_repo, desc.digest) in self.state.placed:
            self.stats.blobs_present += 1
            return
        key = (self.target.base_url, dst_repo, desc.digest)
        await self.state.inflight.once(key, lambda: self._place_blob(src_repo, dst_repo, desc))

    async def _place_blob(self, src_repo: str, dst_repo: str, desc: Descriptor) -> None:
        async with self.state.write_locks.hold(desc.digest):
            await self._place_blob_locked(src_repo, dst_repo, desc)
        self.state.placed.add((dst_repo, desc.digest))

    async def _place_blob_locked(self, src_repo: str, dst_repo: str, desc: Descriptor) -> None:
        digest = desc.digest
        # Mount before pull, not after: a mount is free and a pull costs egress. Where no
        # other home is known, "mount" from the repository itself: the registry answers
        # 201 when the blob is already there. Either way, one POST does the HEAD's job and
        # a miss opens the upload (a new blob costs POST+PUT, not HEAD+POST+PUT).
        home = self.state.blob_home.get(digest)
        if home is None and self._same_registry:
            home = src_repo
        mount_from = home or dst_repo
        upload: str | None = await self.target.claim_blob(dst_repo, digest, mount_from)
        if upload is None:
            if mount_from == dst_repo:
                self.stats.blobs_present += 1
            else:
                self.stats.blobs_mounted += 1
            self.state.blob_home.setdefault(digest, dst_repo)
            return

        async def transfer() -> None:
            # The whole transfer is the retried unit: a half-sent stream cannot be replayed.
            # A retry opens a new upload; a claimed one the failure left open is given back.
            nonlocal upload
            url, upload = upload, None
            try:
                await self._stream(src_repo, dst_repo, desc, url)
            except BaseException:
                if url is not None:
                    await self._give_back(dst_repo, url)
                raise

        async def transfer_or_chunked() -> None:
            try:
                await transfer()
            except MonolithicUploadRefused:
                # The target now wants PATCHes: start over at once, not after a backoff.
                await transfer()

        try:
            async with self._blobs:
                await self._retry.call("registry.copy_blob", transfer_or_chunked)
        finally:
            # Stopped before the transfer began (a shutdown while waiting for a slot).
            if upload is not None:
                await self._give_back(dst_repo, upload)
        self.stats.blobs_copied += 1
        self.stats.bytes_copied += desc.size
        self.state.blob_home.setdefault(digest, dst_repo)

    async def _give_back(self, dst_repo: str, upload_url: str) -> None:
        """Cancel a claimed upload nothing will be sent to; leftovers are the registry's."""
        with contextlib.suppress(Exception):
            await asyncio.shield(self.target.cancel_upload(dst_repo, upload_url))

    async def _stream(
        self, src_repo: str, dst_repo: str, desc: Descriptor, upload_url: str | None
    ) -> None:
        check = _StreamCheck(desc)
        async with self.source.open_blob(src_repo, desc.digest, desc.size) as reader:
            try:
                await self.target.upload_blob_stream(
                    dst_repo, desc.digest, desc.size, check.chunks(reader), upload_url=upload_url
                )
            except Exception as exc:
                # The payload generator's own verdict wins over how aiohttp reported the abort.
                if check.failure is not None:
                    raise check.failure from exc
                raise
        if check.failure is not None:
            raise check.failure


class _StreamCheck:
    """Hashes and counts a blob stream; holds back the last chunk until it checks out."""

    def __init__(self, desc: Descriptor) -> None:
        self.desc = desc
        self.failure: DigestMismatch | SizeMismatch | None = None

    async def chunks(self, reader: aiohttp.StreamReader) -> AsyncIterator[bytes]:
        digest, size = self.desc.digest, self.desc.size
        try:
            async for chunk in verified_chunks(reader.iter_chunked(CHUNK), digest, size):
                yield chunk
        except (DigestMismatch, SizeMismatch) as exc:
            self.failure = exc
            raise
