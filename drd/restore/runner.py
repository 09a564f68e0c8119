"""
Restore a snapshot into a registry: blobs, then manifests children first, then tags.

Before anything is written, every manifest the restore needs is read from the
store and re-hashed, and (when the snapshot stored blobs) every blob is checked to
be there; a corrupt or incomplete snapshot is rejected whole. Every manifest the
restore keeps has its blobs checked too (children are kept or pushed level by
level before it): a layer lost under a present manifest is put back. Blobs come
from the target itself (HEAD), a mount inside the target, the store, or any
configured endpoint that has them, always hashed while they stream. ``dry_run``
reads only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from drd.aio import run_all
from drd.errors import (
    DrdError,
    IntegrityError,
    NotFound,
    RegistryError,
    SnapshotCorrupt,
    SnapshotNotFound,
)
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest
from drd.oci.referrers import subject_of_tag
from drd.progress import Tally
from drd.registry.client import CHUNK, RegistryClient
from drd.registry.stream import verified_chunks
from drd.restore.plan import RepositoryPlan, RestorePlan, Selection, TagStep, plan_restore
from drd.retry import RetryPolicy
from drd.snapshot.catalog import load_manifest
from drd.snapshot.model import Snapshot, blob_key, object_digest
from drd.store.base import SnapshotStore

log = structlog.get_logger(__name__)

Outcome = Literal["restored", "moved", "unchanged", "planned", "failed"]


@dataclass
class RestoreStats:
    """What the restore wrote, and where each blob came from."""

    manifests_pushed: int = 0
    manifests_present: int = 0
    blobs_present: int = 0
    blobs_mounted: int = 0
    blobs_from_store: int = 0
    blobs_from_endpoints: int = 0
    bytes_uploaded: int = 0

    def to_json(self) -> dict[str, int]:
        """A JSON-ready view."""
        return dict(self.__dict__)


@dataclass(frozen=True, slots=True)
class TagResult:
    """One tag at the target after the restore (or, in a dry run, what would happen)."""

    repository: str  # the target repository
    tag: str
    digest: str
    action: str  # create / move / keep
    outcome: Outcome
    moved_from: str = ""
    reason: str = ""


@dataclass
class RestoreReport:
    """The result of one restore: per-tag outcomes, counts, failures by digest."""

    snapshot: str
    target: str
    dry_run: bool
    plan: RestorePlan | None = None
    items: list[TagResult] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # digest -> reason
    stats: RestoreStats = field(default_factory=RestoreStats)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        """Every tag restored, moved back or already right."""
        return not self.failures and all(i.outcome != "failed" for i in self.items)

    def summary(self) -> dict[str, Any]:
        """Counts by outcome, stats and duration: the ``restore.run_finished`` fields."""
        counts = {o: 0 for o in ("restored", "moved", "unchanged", "planned", "failed")}
        for item in self.items:
            counts[item.outcome] += 1
        return {
            **counts,
            **self.stats.to_json(),
            "manifest_failures": len(self.failures),
            "duration_s": round(self.duration_s, 3),
        }

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view, the plan included."""
        return {
            "snapshot": self.snapshot,
            "target": self.target,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "summary": self.summary(),
            "items": [
                {
                    "repository": i.repository,
                    "tag": i.tag,
                    "digest": i.digest,
                    "action": i.action,
                    "outcome": i.outcome,
                    "moved_from": i.moved_from,
                    "reason": i.reason,
                    # An attached tag names the image it belongs to (text folds it there).
                    **({"subject": str(d)} if (d := subject_of_tag(i.tag)) else {}),
                }
                for i in self.items
            ],
            "failures": dict(sorted(self.failures.items())),
            "plan": self.plan.to_json() if self.plan else None,
        }


async def restore_snapshot(
    store: SnapshotStore,
    snapshot: Snapshot,
    target: RegistryClient,
    *,
    sources: Mapping[str, RegistryClient] | None = None,
    selection: Selection | None = None,
    repository_prefix: str = "",
    dry_run: bool = False,
    retry: RetryPolicy | None = None,
    concurrency: int = 8,
    blob_concurrency: int = 8,
    progress: Tally | None = None,
) -> RestoreReport:
    """
    Recreate *selection* of *snapshot* in *target*, under *repository_prefix*.

    Deleted tags come back; tags moved since are moved back to the snapshot's digest;
    other target tags are left alone. *sources* are registries to take blobs from
    when the store has none (the snapshot's own source is tried first).

    Raises `SnapshotCorrupt` (naming the digest) when a needed object is missing or
    does not hash right, before anything is written; per-manifest write failures
    are in the report. Side effects: writes blobs, manifests and tags to *target*
    (nothing with *dry_run*). Tags written and bytes uploaded are counted into *progress*.
    """
    selection = selection or Selection()
    report = RestoreReport(snapshot=snapshot.id, target=target.name, dry_run=dry_run)
    started = time.monotonic()
    with structlog.contextvars.bound_contextvars(
        job="restore", snapshot=snapshot.id, target=target.name
    ):
        draft = plan_restore(snapshot, selection, {}, repository_prefix=repository_prefix)
        manifests = await _preflight(store, snapshot, draft, concurrency)
        current, fresh = await _target_tags(target, draft)
        plan = plan_restore(snapshot, selection, current, repository_prefix=repository_prefix)
        report.plan = plan
        if dry_run:
            # A tag already right is unchanged, not planned: the plan counts what it lists.
            report.items = [
                TagResult(
                    r.target,
                    t.tag,
                    str(t.digest),
                    t.action,
                    "unchanged" if t.action == "keep" else "planned",
                    _moved(t),
                )
                for r in plan.repositories
                for t in r.tags
            ]
        else:
            run = _Run(store, snapshot, target, sources or {}, manifests, report, retry)
            run.fresh = fresh
            if progress is not None:
                run.progress, run.line = progress, f"restore {snapshot.id} -> {target.name}"
                progress.expect(run.line, sum(len(r.tags) for r in plan.repositories))
                progress.watch(run.line, _bytes_of(report))
            run.blob_limit = asyncio.Semaphore(max(blob_concurrency, 1))
            limit = asyncio.Semaphore(max(concurrency, 1))

            async def one(repo_plan: RepositoryPlan) -> None:
                async with limit:
                    await run.repository(repo_plan)

            await run_all(one(r) for r in plan.repositories)
        report.duration_s = time.monotonic() - started
        log.info("restore.run_finished", ok=report.ok, dry_run=dry_run, **report.summary())
    return report


def _bytes_of(report: RestoreReport) -> Callable[[], int]:
    """Reads the bytes *report* has counted as uploaded so far."""
    return lambda: report.stats.bytes_uploaded


def _moved(step: TagStep) -> str:
    return str(step.current) if step.action == "move" and step.current else ""


async def _preflight(
    store: SnapshotStore, snapshot: Snapshot, plan: RestorePlan, concurrency: int
) -> dict[Digest, Manifest]:
    """Read and re-hash every needed manifest; check stored blobs exist. Writes nothing."""
    needed = sorted({d for r in plan.repositories for d in r.manifests})
    manifests: dict[Digest, Manifest] = {}
    limit = asyncio.Semaphore(max(concurrency, 1) * 4)

    async def load(digest: Digest) -> None:
        async with limit:
            manifests[digest] = await load_manifest(store, snapshot, digest)

    await run_all(load(d) for d in needed)
    stored = sorted({b for r in plan.repositories for b in r.blobs if snapshot.stores_blob(b)})
    if stored:
        held: set[Digest] = set()
        async for obj in store.list("blobs/"):
            if (parsed := object_digest(obj.key)) is not None:
                held.add(parsed[1])
        for blob in stored:
            if blob not in held:
                raise SnapshotCorrupt(
                    f"blob {blob} of snapshot {snapshot.id} is missing from the store",
                    key=blob_key(blob),
                )
    return manifests


async def _target_tags(
    target: RegistryClient, plan: RestorePlan
) -> tuple[dict[str, dict[str, Digest]], set[str]]:
    """
    The target's current digest for each tag the plan names (HEAD), and the target
    repositories that have no tags at all; read only.
    """
    out: dict[str, dict[str, Digest]] = {}
    fresh: set[str] = set()
    limit = asyncio.Semaphore(16)

    async def head(repo: str, tag: str) -> None:
        async with limit:
            desc = await target.head_manifest(repo, tag)
        if desc is not None:
            out.setdefault(repo, {})[tag] = desc.digest

    async def repository(repo_plan: RepositoryPlan) -> None:
        existing = set(await target.list_tags(repo_plan.target))
        if not existing:
            fresh.add(repo_plan.target)
        await run_all(head(repo_plan.target, t.tag) for t in repo_plan.tags if t.tag in existing)

    await run_all(repository(r) for r in plan.repositories)
    return out, fresh


class _Run:
    """One restore's writing phase: shared blob homes, in-flight blob transfers, failures."""

    def __init__(
        self,
        store: SnapshotStore,
        snapshot: Snapshot,
        target: RegistryClient,
        sources: Mapping[str, RegistryClient],
        manifests: dict[Digest, Manifest],
        report: RestoreReport,
        retry: RetryPolicy | None,
    ) -> None:
        self.store, self.snapshot, self.target = store, snapshot, target
        self.manifests = manifests
        self.report = report
        self.retry = retry or RetryPolicy()
        # The snapshot's own source first: it is the likeliest holder of its blobs.
        self.sources = sorted(sources.items(), key=lambda kv: (kv[0] != snapshot.source, kv[0]))
        self.blob_limit = asyncio.Semaphore(4)
        self.blob_home: dict[Digest, str] = {}
        self.blobs_running: dict[tuple[str, Digest], asyncio.Task[None]] = {}
        self.failed: dict[tuple[str, Digest], str] = {}
        # Target repositories without a single tag: nothing to find there, so no HEADs.
        self.fresh: set[str] = set()
        self.progress: Tally | None = None
        self.line = ""

    async def repository(self, plan: RepositoryPlan) -> None:
        with structlog.contextvars.bound_contextvars(repository=plan.target):
            for level in plan.levels:
                await run_all(self._ensure(plan, d) for d in level)
            for step in plan.tags:
                self.report.items.append(await self._tag(plan, step))
                if self.progress is not None:
                    self.progress.done(self.line)

    def _deps(self, digest: Digest) -> list[Digest]:
        record = self.snapshot.manifests[digest]
        return list(record.children)

    async def _ensure(self, plan: RepositoryPlan, digest: Digest) -> None:
        """Make manifest *digest* present in the target repository, blobs first."""
        repo = plan.target
        for dep in self._deps(digest):
            if (repo, dep) in self.failed:
                self._fail(repo, digest, f"child {dep} could not be restored")
                return
        try:
            # Blobs first, even under a manifest that is present: a HEAD on the manifest
            # says nothing about its layers, and a layer lost under it is what is repaired.
            await run_all(
                self._blob(plan, blob, self.snapshot.blobs[blob])
                for blob in self.snapshot.manifests[digest].blobs
            )
            present = repo not in self.fresh and (
                await self.target.head_manifest(repo, str(digest)) is not None
            )
            if present:
                self.report.stats.manifests_present += 1
                return
            manifest = self.manifests[digest]
            # Re-hash just before the push: these exact bytes are what the digest names.
            if not digest.matches(manifest.raw):
                raise SnapshotCorrupt(f"manifest {digest} changed in memory before its push")
            await self.target.put_manifest(repo, str(digest), manifest)
            self.report.stats.manifests_pushed += 1
        except DrdError as exc:
            self._fail(repo, digest, f"{type(exc).__name__}: {exc}")

    def _fail(self, repo: str, digest: Digest, reason: str) -> None:
        self.failed[(repo, digest)] = reason
        self.report.failures[f"{repo}@{digest}"] = reason
        log.warning("restore.manifest_failed", repository=repo, digest=str(digest), reason=reason)

    async def _tag(self, plan: RepositoryPlan, step: TagStep) -> TagResult:
        repo = plan.target
        moved = _moved(step)
        if step.action == "keep":
            return TagResult(repo, step.tag, str(step.digest), step.action, "unchanged")
        reason = self.failed.get((repo, step.digest))
        if reason is None and step.digest not in self.manifests:
            reason = f"manifest {step.digest} was not loaded"
        if reason is None:
            try:
                await self.target.put_manifest(repo, step.tag, self.manifests[step.digest])
            except DrdError as exc:
                reason = f"{type(exc).__name__}: {exc}"
        if reason is not None:
            log.warning("restore.tag_failed", repository=repo, tag=step.tag, reason=reason)
            return TagResult(repo, step.tag, str(step.digest), step.action, "failed", moved, reason)
        outcome: Outcome = "moved" if step.action == "move" else "restored"
        log.debug("restore.tag", repository=repo, tag=step.tag, outcome=outcome)
        return TagResult(repo, step.tag, str(step.digest), step.action, outcome, moved)

    # ------------------------------------------------------------------ blobs

    async def _blob(self, plan: RepositoryPlan, digest: Digest, size: int) -> None:
        key = (plan.target, digest)
        task = self.blobs_running.get(key)
        if task is None:
            task = asyncio.create_task(self._place_blob(plan, digest, size))
            self.blobs_running[key] = task
        await asyncio.shield(task)

    async def _place_blob(self, plan: RepositoryPlan, digest: Digest, size: int) -> None:
        repo, stats = plan.target, self.report.stats
        if repo not in self.fresh and await self.target.has_blob(repo, digest) is not None:
            stats.blobs_present += 1
            self.blob_home.setdefault(digest, repo)
            return
        # Mount before upload, not after: a mount inside the target is free.
        homes = [self.blob_home.get(digest)]
        if any(c.base_url == self.target.base_url for _, c in self.sources):
            homes.append(plan.repository)  # restoring beside the original, as a drill does
        for home in dict.fromkeys(h for h in homes if h is not None and h != repo):
            if await self.target.mount_blob(repo, digest, home):
                stats.blobs_mounted += 1
                self.blob_home.setdefault(digest, repo)
                return
        async with self.blob_limit:
            if self.snapshot.stores_blob(digest):
                try:
                    await self.retry.call(
                        "restore.blob_from_store",
                        lambda: self._from_store(repo, digest, size),
                    )
                except (SnapshotNotFound, IntegrityError) as exc:
                    # A damaged store copy is not the end: an endpoint may still hold it.
                    log.warning("restore.blob_not_in_store", digest=str(digest), error=str(exc))
                else:
                    stats.blobs_from_store += 1
                    stats.bytes_uploaded += size
                    self.blob_home.setdefault(digest, repo)
                    return
            failures: list[str] = []
            if await self._from_endpoints(plan, digest, size, failures):
                self.blob_home.setdefault(digest, repo)
                return
        detail = f" ({'; '.join(failures)})" if failures else ""
        raise NotFound(
            f"blob {digest} is in neither the snapshot store nor any configured endpoint{detail}",
            registry=self.target.host,
            repository=repo,
        )

    async def _from_store(self, repo: str, digest: Digest, size: int) -> None:
        async with self.store.open_stream(blob_key(digest)) as chunks:
            await self.target.upload_blob_stream(
                repo, digest, size, verified_chunks(chunks, digest, size)
            )

    async def _from_endpoints(
        self, plan: RepositoryPlan, digest: Digest, size: int, failures: list[str]
    ) -> bool:
        """
        Copy the blob from the first endpoint holding it in the original repository.

        No HEAD first: the GET answers 404 where the blob is missing, and a drill
        restoring from its endpoints sends one request per blob fewer.
        """
        source_repo = plan.repository
        for name, client in self.sources:
            try:
                found = await self.retry.call(
                    "restore.blob_from_endpoint",
                    functools.partial(
                        self._stream_from, client, source_repo, plan.target, digest, size
                    ),
                )
                if not found:
                    continue
            except (RegistryError, IntegrityError) as exc:
                # One endpoint failing (or serving wrong bytes) leaves the others to try.
                log.warning(
                    "restore.blob_source_failed", endpoint=name, digest=str(digest), error=str(exc)
                )
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            self.report.stats.blobs_from_endpoints += 1
            self.report.stats.bytes_uploaded += size
            return True
        return False

    async def _stream_from(
        self, client: RegistryClient, source_repo: str, repo: str, digest: Digest, size: int
    ) -> bool:
        """Stream the blob from *client* to the target; False when *client* lacks it (404)."""
        async with contextlib.AsyncExitStack() as stack:
            try:
                reader = await stack.enter_async_context(client.open_blob(source_repo, digest))
            except NotFound:
                return False
            await self.target.upload_blob_stream(
                repo, digest, size, verified_chunks(reader.iter_chunked(CHUNK), digest, size)
            )
        return True
