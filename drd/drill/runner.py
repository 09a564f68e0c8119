"""
Run drills: restore a snapshot into a scratch namespace and prove it, or check a replica.

A **restore drill** loads a snapshot, restores it (or a seeded sample of its tags)
into ``drill-<id>/…`` on the drill endpoint, then reads everything back: every
manifest and blob is pulled and re-hashed, every tag is compared with the snapshot,
every signature is verified against the trust policy of the replication policy
feeding the repository (else ``[drills] trust``). Each phase is timed. Finally
every manifest the drill created is deleted by digest (which removes its tags),
the namespace is checked to hold no tag, and its blobs are deleted where the
registry allows it (the report counts what is left for garbage collection).
Nothing is ever written outside the namespace: the restore's repository prefix is
the namespace, and a namespace that already holds tags is refused.

A **replica drill** restores nothing: it compares every tag each replication
policy selects at the source with the replica (same digest), verifies signatures
at the replica, and takes the RPO from the replication lag.

Both end in a `DrillReport` judged against ``[drills] rto`` and ``rpo``.

Both drills share the timeline, the read-back and the report they fill, which is why
they sit in one module of over 500 lines; planning, judging and rendering are apart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from drd.aio import run_all
from drd.drill.estimate import DrillTimes
from drd.drill.judge import RtoEstimate, Targets, estimate_rto, judge, replica_rpo, snapshot_rpo
from drd.drill.plan import DrillPlan, plan_drill
from drd.drill.render import write_report
from drd.drill.report import DrillReport, Failure, RepositoryResult
from drd.errors import (
    DrdError,
    SnapshotCorrupt,
    TransientError,
)
from drd.oci.digest import Digest
from drd.oci.referrers import subject_of_tag
from drd.progress import Tally
from drd.registry.client import CHUNK, RegistryClient
from drd.registry.stream import verified_chunks
from drd.replica.check import ReplicaScope, check_replica, verify_digest
from drd.restore.plan import RepositoryPlan
from drd.restore.runner import restore_snapshot
from drd.retry import RetryPolicy
from drd.selection.filters import RepoFilter
from drd.snapshot.catalog import LATEST, list_snapshots, load_snapshot
from drd.snapshot.model import Snapshot, object_digest
from drd.snapshot.sign import IndexKey
from drd.store.base import SnapshotStore
from drd.timeline import Timeline, new_run_id, utc_now
from drd.trust.keys import TrustPolicy
from drd.trust.policy import NO_SIGNATURE, signature_tag

log = structlog.get_logger(__name__)

Clock = Callable[[], dt.datetime]


# --------------------------------------------------------------------------- timing


# --------------------------------------------------------------------------- restore drill

# The phases whose time is the restore time a drill measures (and extrapolates).
# Sees the loaded snapshot before the drill writes anything; refuses it by raising.
Accept = Callable[[Snapshot], Awaitable[None]]

RESTORE_PHASES = ("restore", "pull and re-hash", "compare tags", "verify signatures")
READBACK_PHASES = RESTORE_PHASES[1:]


async def run_drill(
    store: SnapshotStore,
    target: RegistryClient,
    *,
    source: str,
    targets: Targets,
    snapshot: str = LATEST,
    sample: int = 0,
    trust: TrustPolicy | None = None,
    trusts: Sequence[TrustScope] = (),
    sources: Mapping[str, RegistryClient] | None = None,
    verify_key: IndexKey | None = None,
    retry: RetryPolicy | None = None,
    run_id: str | None = None,
    clock: Clock = utc_now,
    concurrency: int = 8,
    progress: Tally | None = None,
    startup_s: float | None = None,
    accept: Accept | None = None,
) -> DrillReport:
    """
    Restore *snapshot* of *source* (``latest`` or an id) into *target* under
    ``drill-<run_id>/`` and prove it; return the judged report.

    *sources* are endpoints blobs may come from, used only when the snapshot did
    not store blobs (a drill of a snapshot with blobs proves the store alone
    suffices). Signatures are verified per repository with the first of *trusts*
    whose repositories match (the replication policies feeding them), else *trust*;
    a repository neither applies to is reported ``unsigned`` (not checked). Failures
    of content (digests, tags, signatures, corrupt or missing objects in the store)
    are in the report, each with its digest; an unreachable store or registry ends
    the drill early with ``report.error``. Side effects: writes into, then deletes
    from (manifests, then blobs where the registry allows it), the drill namespace
    on *target* only. *startup_s* is how long this process took to start and reach
    the drill, which a fresh ``drd restore`` would pay too (the RTO estimate's fixed cost). The
    restore's tags and bytes are counted into *progress*. *accept* sees the loaded snapshot
    before anything is written and may refuse it by raising (a rolled-back ``latest``).
    """
    run_id = run_id or new_run_id()
    report = DrillReport(
        mode="restore",
        id=run_id,
        target=target.name,
        source=source,
        started_at=clock(),
        trust=", ".join(
            dict.fromkeys([*(t.policy.name for t in trusts), *([trust.name] if trust else [])])
        ),
        sample=sample,
    )
    timeline = Timeline()
    with structlog.contextvars.bound_contextvars(job="drill", drill=run_id, target=target.name):
        try:
            await _restore_drill(
                report,
                timeline,
                store,
                target,
                source=source,
                ref=snapshot,
                sample=sample,
                trust=_Trusts(trusts, trust),
                sources=sources,
                verify_key=verify_key,
                retry=retry or RetryPolicy(),
                concurrency=concurrency,
                progress=progress,
                accept=accept,
            )
        except DrdError as exc:
            report.exception = exc
            report.error = f"{type(exc).__name__}: {exc}"
            log.error("drill.aborted", error=report.error)  # noqa: TRY400 - an outage, no traceback
        except asyncio.CancelledError:
            log.warning("drill.cancelled", namespace=report.namespace)
            raise
        report.phases = timeline.phases
        report.finished_at = clock()
        rto = None
        if any(p.name == "restore" for p in timeline.phases):
            times = DrillTimes(
                startup_s=startup_s,
                load_s=timeline.total("load snapshot"),
                restore_s=timeline.total("restore"),
                readback_s=timeline.total(*READBACK_PHASES),
                concurrency=concurrency,
            )
            rto = estimate_rto(times, report.scope, report.whole)
        newest = report.snapshot_taken_at
        rpo_s, rpo_method = snapshot_rpo(newest, report.started_at)
        if newest is None and report.error:
            rpo_method = "unknown: the snapshot index could not be read"
        report.judgement = judge(
            rto=rto,
            rpo_s=rpo_s,
            rpo_method=rpo_method,
            targets=targets,
            failures=len(report.failures),
            error=report.error,
        )
        log.info("drill.run_finished", **report.summary())
    return report


async def _restore_drill(
    report: DrillReport,
    timeline: Timeline,
    store: SnapshotStore,
    target: RegistryClient,
    *,
    source: str,
    ref: str,
    sample: int,
    trust: _Trusts,
    sources: Mapping[str, RegistryClient] | None,
    verify_key: IndexKey | None,
    retry: RetryPolicy,
    concurrency: int,
    progress: Tally | None = None,
    accept: Accept | None = None,
) -> None:
    with timeline.phase("load snapshot") as step:
        snap = await load_snapshot(store, source, ref, verify_key=verify_key)
        if accept is not None:
            await accept(snap)
        entries = await list_snapshots(store, source)
        plan = plan_drill(snap, sample=sample, run_id=report.id)
        step.detail = f"{snap.id}: {snap.tag_count} tags, {len(snap.manifests)} manifests"
    newest = entries[-1].taken_at if entries else snap.taken_at
    report.snapshot = snap.id
    report.snapshot_taken_at = max(newest, snap.taken_at)
    report.namespace = plan.namespace
    report.seed = plan.seed if plan.sampled else None
    report.sample = sample if plan.sampled else 0
    report.release_tags = plan.release_tags
    report.chosen = len(plan.chosen)
    report.scope, report.whole = plan.scope, plan.whole
    if entries and snap.id != entries[-1].id:
        report.notes.append(
            f"drilled snapshot {snap.id}; the RPO is measured from the newest, {entries[-1].id}"
        )
    if snap.skipped:
        report.notes.append(
            f"{len(snap.skipped)} tag(s) could not be recorded by this snapshot and are not "
            "protected by it (see `drd snapshot show`)"
        )
    if not snap.blobs_stored:
        report.notes.append(
            "this snapshot stores no blobs: they were taken from the configured endpoints, "
            "so the drill proves less than a restore after the loss of the source"
        )
    drill = _Drill(report, snap, plan, target, trust, retry, concurrency)
    drill.progress = progress
    await drill.check_namespace_empty()
    try:
        restored = await drill.restore(timeline, store, None if snap.blobs_stored else sources)
        if restored:
            await drill.read_back(timeline)
    finally:
        # Whatever happened above, even a cancellation: the namespace is this drill's own.
        await drill.cleanup(timeline)


class _Drill:
    """One restore drill's state: the plan, the target, and the report being filled."""

    def __init__(
        self,
        report: DrillReport,
        snapshot: Snapshot,
        plan: DrillPlan,
        target: RegistryClient,
        trust: _Trusts,
        retry: RetryPolicy,
        concurrency: int,
    ) -> None:
        self.report, self.snapshot, self.plan, self.target = report, snapshot, plan, target
        self.trust, self.retry = trust, retry
        self.progress: Tally | None = None
        self.limit = asyncio.Semaphore(max(concurrency, 1))
        self.repos: dict[str, RepositoryResult] = {}
        for repo_plan in plan.restore.repositories:
            result = RepositoryResult(repo_plan.repository, repo_plan.target)
            result.tags_expected = len(plan.expected.get(repo_plan.target, {}))
            self.repos[repo_plan.target] = result
        report.repositories = list(self.repos.values())

    def fail(self, phase: str, repository: str, digest: str, reason: str, tag: str = "") -> None:
        self.report.failures.append(Failure(phase, repository, digest, reason, tag))
        if repository in self.repos:
            self.repos[repository].failures += 1
        log.warning(
            "drill.check_failed",
            phase=phase,
            repository=repository,
            tag=tag,
            digest=digest,
            reason=reason,
        )

    async def check_namespace_empty(self) -> None:
        """Refuse to write into a drill namespace that already holds tags."""
        for name in self.repos:
            if not name.startswith(self.plan.namespace):  # pragma: no cover - plan guarantees it
                raise DrdError(f"drill repository {name} is outside {self.plan.namespace}")
            tags = await self.target.list_tags(name)
            if tags:
                raise DrdError(
                    f"drill repository {name} on {self.target.name} already holds "
                    f"{len(tags)} tag(s); refusing to restore over it"
                )

    # ------------------------------------------------------------------ restore

    async def restore(
        self,
        timeline: Timeline,
        store: SnapshotStore,
        sources: Mapping[str, RegistryClient] | None,
    ) -> bool:
        """Restore the plan's selection; False when nothing could be written."""
        with timeline.phase("restore") as step:
            try:
                restored = await restore_snapshot(
                    store,
                    self.snapshot,
                    self.target,
                    sources=sources,
                    selection=self.plan.selection,
                    repository_prefix=self.plan.namespace,
                    retry=self.retry,
                    progress=self.progress,
                )
            except SnapshotCorrupt as exc:
                found = object_digest(exc.key) if exc.key else None
                digest = str(found[1]) if found else ""
                self.fail("restore", "", digest, f"SnapshotCorrupt: {exc}")
                step.ok, step.detail = False, "the snapshot is corrupt or incomplete"
                return False
            summary = restored.summary()
            self.report.restore = summary
            for where, reason in sorted(restored.failures.items()):
                repository, _, digest = where.partition("@")
                self.fail("restore", repository, digest, reason)
            for item in restored.items:
                if item.outcome == "failed":
                    self.fail("restore", item.repository, item.digest, item.reason, item.tag)
            step.ok = restored.ok
            step.detail = (
                f"{summary['manifests_pushed']} manifests, "
                f"{summary['blobs_from_store'] + summary['blobs_from_endpoints']} blobs uploaded"
            )
        return True

    # ------------------------------------------------------------------ read back

    async def read_back(self, timeline: Timeline) -> None:
        """Pull and re-hash everything, compare tags, verify signatures."""
        rb = self.report.readback
        with timeline.phase("pull and re-hash") as step:
            await run_all(self._pull_repository(r) for r in self.plan.restore.repositories)
            step.ok = not any(f.phase == "read back" for f in self.report.failures)
            step.detail = f"{rb.manifests} manifests, {rb.blobs} blobs"
        with timeline.phase("compare tags") as step:
            await run_all(self._compare_tags(name) for name in self.repos)
            step.ok = rb.tags_ok == rb.tags
            step.detail = f"{rb.tags_ok} of {rb.tags} tags as in the snapshot"
        policies = {name: self.trust.of(self.plan.source_repository(name)) for name in self.repos}
        unchecked = sorted(name for name, policy in policies.items() if policy is None)
        for name in unchecked:
            count = len(self._release_digests(name))
            self.repos[name].unchecked += count
            rb.unchecked += count
        if unchecked:
            self.report.notes.append(
                f"signatures not verified in {len(unchecked)} repositories (reported unsigned): "
                "no replication policy feeding them requires signatures and [drills] names no "
                "trust policy"
            )
        if len(unchecked) == len(policies):
            return
        with timeline.phase("verify signatures") as step:
            await run_all(
                self._verify_repository(name, policy)
                for name, policy in policies.items()
                if policy is not None
            )
            step.ok = rb.signature_failures == 0
            step.detail = (
                f"{rb.signed_ok} verified, {rb.unsigned} unsigned, {rb.signature_failures} failed"
            )

    async def _pull_repository(self, repo_plan: RepositoryPlan) -> None:
        name = repo_plan.target
        await run_all(
            [self._pull_manifest(name, d) for d in repo_plan.manifests]
            + [self._pull_blob(name, b) for b in repo_plan.blobs]
        )

    async def _pull_manifest(self, repo: str, digest: Digest) -> None:
        async with self.limit:
            try:
                manifest = await self.target.get_manifest(repo, digest)
            except (DrdError, ValueError) as exc:
                if isinstance(exc, TransientError):
                    raise
                self.fail("read back", repo, str(digest), f"manifest: {type(exc).__name__}: {exc}")
                return
        result, rb = self.repos[repo], self.report.readback
        result.manifests += 1
        result.manifest_bytes += len(manifest.raw)
        rb.manifests += 1
        rb.manifest_bytes += len(manifest.raw)

    async def _pull_blob(self, repo: str, digest: Digest) -> None:
        expected = self.snapshot.blobs[digest]
        async with self.limit:
            try:
                count = await self.retry.call(
                    "drill.pull_blob",
                    lambda: pull_blob(self.target, repo, digest, expected),
                )
            except DrdError as exc:
                if isinstance(exc, TransientError):
                    raise
                self.fail("read back", repo, str(digest), f"blob: {type(exc).__name__}: {exc}")
                return
        result, rb = self.repos[repo], self.report.readback
        result.blobs += 1
        result.blob_bytes += count
        rb.blobs += 1
        rb.blob_bytes += count

    async def _compare_tags(self, repo: str) -> None:
        expected = self.plan.expected.get(repo, {})
        result, rb = self.repos[repo], self.report.readback
        present = set(await self.target.list_tags(repo))
        rb.tags += len(expected)
        for extra in sorted(present - set(expected)):
            self.fail("compare tags", repo, "", "tag not in the snapshot", extra)
        heads: dict[str, Digest | None] = {}

        async def head(tag: str) -> None:
            async with self.limit:
                desc = await self.target.head_manifest(repo, tag)
            heads[tag] = desc.digest if desc else None

        await run_all(head(tag) for tag in sorted(expected) if tag in present)
        for tag, digest in sorted(expected.items()):
            found = heads.get(tag)
            if found is None:
                self.fail("compare tags", repo, str(digest), "tag missing after the restore", tag)
            elif found != digest:
                self.fail(
                    "compare tags",
                    repo,
                    str(digest),
                    f"tag points at {found}, the snapshot says {digest}",
                    tag,
                )
            else:
                result.tags_ok += 1
                rb.tags_ok += 1

    def _release_digests(self, repo: str) -> list[Digest]:
        expected = self.plan.expected.get(repo, {})
        return sorted({d for t, d in expected.items() if subject_of_tag(t) is None})

    async def _verify_repository(self, repo: str, trust: TrustPolicy) -> None:
        expected = self.plan.expected.get(repo, {})
        recorded = self.snapshot.repositories[self.plan.source_repository(repo)].tags
        release = self._release_digests(repo)
        result, rb = self.repos[repo], self.report.readback

        async def one(digest: Digest) -> None:
            async with self.limit:
                outcome = await verify_digest(self.target, repo, digest, trust)
            if outcome is None:
                result.signed_ok += 1
                rb.signed_ok += 1
                return
            reason, message = outcome
            if reason == NO_SIGNATURE and signature_tag(digest) not in recorded:
                result.unsigned += 1
                rb.unsigned += 1
                return
            result.signature_failures += 1
            rb.signature_failures += 1
            tags = ", ".join(sorted(t for t, d in expected.items() if d == digest))
            self.fail("verify signatures", repo, str(digest), f"{reason}: {message}", tags)

        await run_all(one(d) for d in release)

    # ------------------------------------------------------------------ cleanup

    async def cleanup(self, timeline: Timeline) -> None:
        """
        Delete every manifest of the plan by digest, parents first; check no tag is left;
        then delete the drill repositories' blobs where the registry allows it.
        """
        deleted = 0
        left: list[str] = []
        blobs = _BlobCleanup()
        with timeline.phase("cleanup") as step:
            for repo_plan in self.plan.restore.repositories:
                name = repo_plan.target
                for level in reversed(repo_plan.levels):
                    try:
                        await run_all(self._delete(name, d) for d in level)
                    except DrdError as exc:
                        self.fail("cleanup", name, "", f"{type(exc).__name__}: {exc}")
                        break
                    deleted += len(level)
                try:
                    remaining = await self.target.list_tags(name)
                except DrdError as exc:
                    self.fail("cleanup", name, "", f"cannot list tags: {exc}")
                    continue
                if remaining:
                    left.append(name)
                    self.fail(
                        "cleanup",
                        name,
                        "",
                        f"{len(remaining)} tag(s) left behind: {', '.join(sorted(remaining)[:5])}",
                    )
                    continue
                try:
                    await run_all(self._delete_blob(name, b, blobs) for b in repo_plan.blobs)
                except DrdError as exc:
                    self.fail("cleanup", name, "", f"blobs: {type(exc).__name__}: {exc}")
            step.ok = not left and not any(f.phase == "cleanup" for f in self.report.failures)
            step.detail = f"{deleted} manifests deleted by digest, {blobs.deleted} blobs deleted"
        self.report.cleanup = {
            "namespace": self.plan.namespace,
            "manifests_deleted": deleted,
            "repositories_with_tags": left,
            "blobs_deleted": blobs.deleted,
            "blob_bytes_deleted": blobs.bytes_deleted,
            "blobs_left": blobs.left,
            "blob_bytes_left": blobs.bytes_left,
        }

    async def _delete(self, repo: str, digest: Digest) -> None:
        async with self.limit:
            await self.target.delete_manifest(repo, digest)

    async def _delete_blob(self, repo: str, digest: Digest, tally: _BlobCleanup) -> None:
        size = self.snapshot.blobs.get(digest, 0)
        async with self.limit:
            deleted = await self.target.delete_blob(repo, digest)
        if deleted:
            tally.deleted += 1
            tally.bytes_deleted += size
        else:
            tally.left += 1
            tally.bytes_left += size


@dataclass
class _BlobCleanup:
    """Blobs a drill's cleanup deleted, and those the registry would not let it delete."""

    deleted: int = 0
    bytes_deleted: int = 0
    left: int = 0
    bytes_left: int = 0


@dataclass(frozen=True)
class TrustScope:
    """The trust policy a replication policy requires, over the repositories it selects."""

    repositories: RepoFilter
    policy: TrustPolicy


@dataclass(frozen=True)
class _Trusts:
    """Which trust policy verifies a repository's signatures in a restore drill."""

    scopes: Sequence[TrustScope] = ()
    fallback: TrustPolicy | None = None

    def of(self, repository: str) -> TrustPolicy | None:
        """The first scope selecting *repository*, else the fallback (None: not checked)."""
        for scope in self.scopes:
            if scope.repositories(repository):
                return scope.policy
        return self.fallback


async def pull_blob(client: RegistryClient, repo: str, digest: Digest, size: int) -> int:
    """
    Stream one blob from *client* through a hasher; return its length.

    Raises `SizeMismatch` or `DigestMismatch` naming the digest, `NotFound` when absent.
    """
    count = 0
    async with client.open_blob(repo, digest, size) as reader:
        async for chunk in verified_chunks(reader.iter_chunked(CHUNK), digest, size):
            count += len(chunk)
    return count


# --------------------------------------------------------------------------- replica drill


async def run_replica_drill(
    sources: Mapping[str, RegistryClient],
    replica: RegistryClient,
    scopes: Sequence[ReplicaScope],
    *,
    targets: Targets,
    lag: tuple[float | None, str] | None = None,
    trust_name: str = "",
    run_id: str | None = None,
    clock: Clock = utc_now,
) -> DrillReport:
    """
    Check *replica* in place against each scope's source; restore nothing.

    *lag* is ``(seconds, how it was measured)`` from the replication history, when
    there is one; otherwise the RPO is 0 when the replica is complete and unknown
    when it is not. Registry outages end the drill with ``report.error``.
    """
    run_id = run_id or new_run_id()
    report = DrillReport(
        mode="replica",
        id=run_id,
        target=replica.name,
        source=", ".join(sorted({s.source for s in scopes})),
        started_at=clock(),
        trust=trust_name,
    )
    timeline = Timeline()
    with structlog.contextvars.bound_contextvars(job="drill", drill=run_id, target=replica.name):
        try:
            with timeline.phase("compare tags") as step:
                for scope in scopes:
                    report.checks += await check_replica(sources[scope.source], replica, scope)
                _fill_replica_report(report)
                step.ok = not report.failures
                step.detail = f"{len(report.checks)} tags of {len(scopes)} policies"
        except DrdError as exc:
            report.exception = exc
            report.error = f"{type(exc).__name__}: {exc}"
            log.error("drill.aborted", error=report.error)  # noqa: TRY400 - an outage, no traceback
        report.phases = timeline.phases
        report.finished_at = clock()
        measured = timeline.total("compare tags")
        rto = RtoEstimate(
            measured_s=measured,
            value_s=measured,
            scale=1.0,
            byte_ratio=1.0,
            object_ratio=1.0,
            method=(
                "replica in place: recovery is a failover to it, and the time measured is "
                "checking every tag and signature the failover relies on"
            ),
        )
        rpo_s, rpo_method = replica_rpo(
            lag, compared=not report.error, failing=sum(1 for c in report.checks if c.failing)
        )
        report.judgement = judge(
            rto=None if report.error else rto,
            rpo_s=rpo_s,
            rpo_method=rpo_method,
            targets=targets,
            failures=len(report.failures),
            error=report.error,
        )
        log.info("drill.run_finished", **report.summary())
    return report


def _fill_replica_report(report: DrillReport) -> None:
    rb = report.readback
    by_repo: dict[str, RepositoryResult] = {}
    for check in report.checks:
        result = by_repo.setdefault(
            check.repository, RepositoryResult(check.repository, check.repository)
        )
        if check.status == "excluded":
            continue
        result.tags_expected += 1
        rb.tags += 1
        if check.status == "ok":
            result.tags_ok += 1
            rb.tags_ok += 1
            if not check.attached and check.reason == "verified":
                result.signed_ok += 1
                rb.signed_ok += 1
            elif not check.attached and check.reason == "unsigned":
                result.unsigned += 1
                rb.unsigned += 1
            elif not check.attached:
                # No trust policy applies at the replica: whole, signatures not checked.
                result.unchecked += 1
                rb.unchecked += 1
            continue
        if check.status == "unverified":
            result.signature_failures += 1
            rb.signature_failures += 1
        result.failures += 1
        report.failures.append(
            Failure(
                "compare tags",
                check.repository,
                check.source_digest,
                f"{check.status}: {check.reason}"
                + (f" (replica has {check.replica_digest})" if check.status == "differs" else ""),
                check.tag,
            )
        )
    excluded = sum(1 for c in report.checks if c.status == "excluded")
    if excluded:
        report.notes.append(
            f"{excluded} source tag(s) do not verify at the source and are, by policy, never "
            "replicated"
        )
    report.release_tags = sum(1 for c in report.checks if not c.attached)
    report.chosen = report.release_tags
    report.repositories = sorted(by_repo.values(), key=lambda r: r.repository)


# --------------------------------------------------------------------------- from config


async def write_reports(report: DrillReport, directory: Path) -> dict[str, Path]:
    """`write_report` off the event loop."""
    return await asyncio.to_thread(write_report, report, directory)


__all__ = [
    "RESTORE_PHASES",
    "TrustScope",
    "pull_blob",
    "run_drill",
    "run_replica_drill",
    "write_reports",
]
