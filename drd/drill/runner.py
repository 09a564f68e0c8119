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
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from drd.config import Drills, Settings
from drd.drill.judge import RtoEstimate, Targets, estimate_rto, judge, snapshot_rpo
from drd.drill.plan import DrillPlan, plan_drill
from drd.drill.report import (
    DrillReport,
    Failure,
    Phase,
    RepositoryResult,
    TagCheck,
    write_report,
)
from drd.errors import (
    ConfigError,
    DrdError,
    SnapshotCorrupt,
    TransientError,
    VerificationError,
)
from drd.metrics import Metrics
from drd.oci import mediatype
from drd.oci.digest import Digest
from drd.oci.referrers import subject_of_tag
from drd.registry.client import RegistryClient
from drd.replicate.filters import RepoFilter
from drd.replicate.runner import Policy
from drd.resources import policy_from_config, trust_policy
from drd.restore.plan import RepositoryPlan
from drd.restore.runner import restore_snapshot
from drd.retry import RetryPolicy
from drd.scrub.check import ClosureCheck, check_closure
from drd.scrub.check import hash_blob as pull_blob
from drd.snapshot.catalog import LATEST, list_snapshots, load_snapshot, run_all
from drd.snapshot.model import Snapshot, object_digest
from drd.snapshot.sign import IndexKey
from drd.snapshot.store import SnapshotStore, open_store
from drd.state import RunRecord, State
from drd.trust.keys import TrustPolicy
from drd.trust.policy import NO_SIGNATURE, signature_tag
from drd.trust.tree import verify_tree
from drd.trust.verify import fingerprint_verifier

log = structlog.get_logger(__name__)

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


def new_run_id() -> str:
    """A fresh drill id: 12 lower-case hex characters."""
    return uuid.uuid4().hex[:12]


# --------------------------------------------------------------------------- timing


@dataclass
class _Step:
    """A phase in progress: callers set ``ok`` and ``detail`` before it ends."""

    ok: bool = True
    detail: str = ""


class _Timeline:
    """Times phases against one monotonic start."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.phases: list[Phase] = []

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[_Step]:
        step = _Step()
        start = time.monotonic()
        try:
            yield step
        except BaseException:
            step.ok = False
            raise
        finally:
            end = time.monotonic()
            self.phases.append(Phase(name, start - self.t0, end - start, step.ok, step.detail))

    def total(self, *names: str) -> float:
        """The summed duration of the named phases."""
        return sum(p.duration_s for p in self.phases if p.name in names)


# --------------------------------------------------------------------------- restore drill

# The phases whose time is the restore time a drill measures (and extrapolates).
RESTORE_PHASES = ("restore", "pull and re-hash", "compare tags", "verify signatures")


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
    on *target* only.
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
    timeline = _Timeline()
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
            )
        except DrdError as exc:
            report.error = f"{type(exc).__name__}: {exc}"
            log.error("drill.aborted", error=report.error)  # noqa: TRY400 - an outage, no traceback
        except asyncio.CancelledError:
            log.warning("drill.cancelled", namespace=report.namespace)
            raise
        report.phases = timeline.phases
        report.finished_at = clock()
        rto = None
        if any(p.name == "restore" for p in timeline.phases):
            rto = estimate_rto(timeline.total(*RESTORE_PHASES), report.scope, report.whole)
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
    timeline: _Timeline,
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
) -> None:
    with timeline.phase("load snapshot") as step:
        snap = await load_snapshot(store, source, ref, verify_key=verify_key)
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
        timeline: _Timeline,
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

    async def read_back(self, timeline: _Timeline) -> None:
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

    async def cleanup(self, timeline: _Timeline) -> None:
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


async def verify_digest(
    client: RegistryClient, repo: str, digest: Digest, trust: TrustPolicy
) -> tuple[str, str] | None:
    """
    Verify *digest* in *repo* under *trust* (and, when the policy requires children,
    every manifest under it, as replication does: `drd.trust.tree.verify_tree`).

    None when it verifies, else ``(reason, message)``. Registry outages raise.
    """
    try:
        await verify_tree(client, repo, digest, trust, fingerprint_verifier(trust))
    except VerificationError as exc:
        return exc.reason, exc.message
    return None


# --------------------------------------------------------------------------- replica drill


@dataclass(frozen=True)
class ReplicaScope:
    """
    One replication policy as a replica drill or failover preflight checks it.

    *require* is the trust policy the replication policy requires (its
    ``require_signature``): sources that do not verify are never copied, so they are
    not expected at the replica. *verify* is the policy signatures are checked
    against at the replica (the required one, else ``[drills] trust``).
    """

    policy: Policy
    source: str
    require: TrustPolicy | None = None
    verify: TrustPolicy | None = None


async def check_replica(
    source: RegistryClient,
    replica: RegistryClient,
    scope: ReplicaScope,
    *,
    concurrency: int = 8,
) -> list[TagCheck]:
    """
    Compare every tag *scope*'s policy selects at *source* with *replica*.

    Release tags must be at the replica with the source's digest and, when a trust
    policy applies, verify there. Attached tags (signatures, attestations, referrers)
    must match for every subject the replica is expected to hold. Reads only;
    registry outages raise.
    """
    policy = scope.policy
    limit = asyncio.Semaphore(max(concurrency, 1))
    literal = policy.repositories.literal_names()
    repos = (
        literal
        if literal is not None
        else sorted(n for n in await source.catalog() if policy.repositories(n))
    )
    checks: list[TagCheck] = []

    async def heads(client: RegistryClient, repo: str, tags: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}

        async def one(tag: str) -> None:
            async with limit:
                desc = await client.head_manifest(repo, tag)
            if desc is not None:
                found[tag] = desc

        await run_all(one(t) for t in tags)
        return found

    async def repository(repo: str) -> None:
        source_tags = await source.list_tags(repo)
        release = policy.tags.select(source_tags)
        attached = [t for t in source_tags if subject_of_tag(t) is not None]
        if not policy.referrers:
            attached = []
        at_source = await heads(source, repo, release + attached)
        listed = set(await replica.list_tags(repo))
        at_replica = await heads(replica, repo, [t for t in release + attached if t in listed])
        expected_subjects: set[Digest] = set()
        found: list[TagCheck] = []

        async def release_tag(tag: str) -> None:
            if tag not in at_source:
                return  # deleted at the source meanwhile
            check = await _check_release(
                source, replica, scope, repo, tag, at_source[tag], at_replica.get(tag), limit
            )
            found.append(check)
            if check.status != "excluded":
                expected_subjects.add(at_source[tag].digest)
                if mediatype.is_index(at_source[tag].media_type):
                    async with limit:
                        index = await source.get_manifest(repo, at_source[tag].digest)
                    expected_subjects.update(c.digest for c in index.manifests)

        await run_all(release_tag(t) for t in release)
        for tag in sorted(attached):
            subject = subject_of_tag(tag)
            src, rep = at_source.get(tag), at_replica.get(tag)
            if src is None or subject not in expected_subjects:
                continue
            found.append(_compare(policy.name, repo, tag, src.digest, rep, attached=True))
        checks.extend(await _whole_at_replica(replica, repo, found, limit))

    await run_all(repository(r) for r in repos)
    checks.sort(key=lambda c: (c.repository, c.attached, c.tag))
    return checks


async def _whole_at_replica(
    replica: RegistryClient, repo: str, checks: list[TagCheck], limit: asyncio.Semaphore
) -> list[TagCheck]:
    """
    *checks*, with each tag the replica holds at the right digest walked there: a tag
    whose manifests or blobs are not all there is ``incomplete``, not ``ok``.
    """
    closure = ClosureCheck(repo)
    out = []
    for check in sorted(checks, key=lambda c: c.tag):
        if check.status not in ("ok", "unverified"):
            out.append(check)
            continue
        root = Digest.parse(check.replica_digest)
        if await check_closure(replica, closure, root, limit=limit):
            out.append(check)
            continue
        damaged = sorted(closure.closure(root) & closure.damage.keys())
        what = "; ".join(f"{closure.damage[d].kind} {d}" for d in damaged[:3]) + (
            f"; and {len(damaged) - 3} more" if len(damaged) > 3 else ""
        )
        out.append(dataclasses.replace(check, status="incomplete", reason=what))
    return out


def _compare(
    policy: str, repo: str, tag: str, source: Digest, replica: Any, *, attached: bool
) -> TagCheck:
    if replica is None:
        return TagCheck(
            policy, repo, tag, str(source), "", "missing", "not at the replica", attached
        )
    if replica.digest != source:
        return TagCheck(
            policy,
            repo,
            tag,
            str(source),
            str(replica.digest),
            "differs",
            "the replica's tag points elsewhere",
            attached,
        )
    return TagCheck(policy, repo, tag, str(source), str(replica.digest), "ok", "", attached)


async def _check_release(
    source: RegistryClient,
    replica: RegistryClient,
    scope: ReplicaScope,
    repo: str,
    tag: str,
    src: Any,
    rep: Any,
    limit: asyncio.Semaphore,
) -> TagCheck:
    name = scope.policy.name
    check = _compare(name, repo, tag, src.digest, rep, attached=False)
    if check.status != "ok":
        if scope.require is not None:
            async with limit:
                outcome = await verify_digest(source, repo, src.digest, scope.require)
            if outcome is not None:
                return TagCheck(
                    name,
                    repo,
                    tag,
                    str(src.digest),
                    check.replica_digest,
                    "excluded",
                    f"not verified at the source ({outcome[0]}): never replicated",
                )
        return check
    if scope.verify is None:
        return check
    async with limit:
        outcome = await verify_digest(replica, repo, src.digest, scope.verify)
    if outcome is None:
        return TagCheck(name, repo, tag, str(src.digest), str(rep.digest), "ok", "verified")
    reason, message = outcome
    if reason == NO_SIGNATURE and scope.require is None:
        async with limit:
            signed_at_source = await source.head_manifest(repo, signature_tag(src.digest))
        if signed_at_source is None:
            return TagCheck(name, repo, tag, str(src.digest), str(rep.digest), "ok", "unsigned")
    return TagCheck(
        name, repo, tag, str(src.digest), str(rep.digest), "unverified", f"{reason}: {message}"
    )


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
    timeline = _Timeline()
    with structlog.contextvars.bound_contextvars(job="drill", drill=run_id, target=replica.name):
        try:
            with timeline.phase("compare tags") as step:
                for scope in scopes:
                    report.checks += await check_replica(sources[scope.source], replica, scope)
                _fill_replica_report(report)
                step.ok = not report.failures
                step.detail = f"{len(report.checks)} tags of {len(scopes)} policies"
        except DrdError as exc:
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
        failing = [c for c in report.checks if c.failing]
        if lag is not None and lag[0] is not None:
            rpo_s, rpo_method = lag
        elif report.error:
            rpo_s, rpo_method = None, "unknown: the replica could not be compared"
        elif failing:
            rpo_s = None
            rpo_method = (
                f"unknown: {len(failing)} tag(s) are not at the replica as at the source, and "
                "no replication history says since when"
            )
        else:
            rpo_s, rpo_method = 0.0, "the replica held every source tag when compared"
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


def drills_config(settings: Settings) -> Drills:
    """The ``[drills]`` table; `ConfigError` when it is missing."""
    if settings.drills is None:
        raise ConfigError("drills are not configured", errors=[("drills", "add a [drills] table")])
    return settings.drills


def replica_scopes(settings: Settings, replica: str) -> list[ReplicaScope]:
    """Every replication policy that copies to *replica*, with its trust policies."""
    drills = settings.drills
    fallback = trust_policy(settings.trust[drills.trust]) if drills and drills.trust else None
    scopes = []
    for rep in settings.replication:
        if replica not in rep.targets:
            continue
        require = (
            trust_policy(settings.trust[rep.require_signature]) if rep.require_signature else None
        )
        scopes.append(
            ReplicaScope(policy_from_config(rep), rep.source, require, require or fallback)
        )
    return scopes


def trust_scopes(settings: Settings, endpoint: str) -> list[TrustScope]:
    """
    The trust policies of the replication policies that feed *endpoint*'s repositories
    (copy from it, or into it) and require signatures, in configuration order.
    """
    return [
        TrustScope(policy_from_config(rep).repositories, trust_policy(settings.trust[name]))
        for rep in settings.replication
        if (name := rep.require_signature) and endpoint in (rep.source, *rep.targets)
    ]


async def replication_lag(
    state: State | None, scopes: Sequence[ReplicaScope], replica: str, now: float
) -> tuple[float | None, str] | None:
    """The replica's lag from the daemon's replication history, or None without one."""
    if state is None:
        return None
    names = {s.policy.name for s in scopes}
    records = [r for r in await state.syncs() if r.policy in names and r.target == replica]
    if not records or len(records) < len(names):
        return None
    watermark = min(r.watermark for r in records)
    when = dt.datetime.fromtimestamp(watermark, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        max(0.0, now - watermark),
        f"replication lag from the daemon's history: every source change before {when} "
        "is known to be at the replica",
    )


def index_key(settings: Settings) -> IndexKey | None:
    """The snapshot signing key that verifies what the drill reads, when one is configured."""
    config = settings.snapshots
    pem = config.signing_key() if config else None
    if config is None or pem is None:
        return None
    return IndexKey.from_pem(pem, str(config.signing_key_file or "snapshots.signing_key_file"))


async def drill_from_settings(
    settings: Settings,
    registries: Mapping[str, RegistryClient],
    retry: RetryPolicy,
    *,
    snapshot: str = LATEST,
    replica: bool = False,
    sample: int | None = None,
    state: State | None = None,
    clock: Clock = utc_now,
) -> DrillReport:
    """
    The drill ``[drills]`` describes: a restore drill of *snapshot* into ``[drills] target``,
    or (with *replica* or ``mode = "replica"``) a replica drill of ``[drills] replica``.

    Raises `ConfigError` when the configuration cannot describe the drill.
    """
    drills = drills_config(settings)
    targets = Targets(drills.rto.total_seconds(), drills.rpo.total_seconds())
    if replica or drills.mode == "replica":
        name = drills.replica
        if name is None:
            raise ConfigError(
                "a replica drill needs [drills] replica",
                errors=[("drills.replica", "name the endpoint to check")],
            )
        scopes = replica_scopes(settings, name)
        if not scopes:
            raise ConfigError(
                f"no replication policy copies to {name}",
                errors=[("drills.replica", f"no [[replication]] lists {name} in targets")],
            )
        lag = await replication_lag(state, scopes, name, clock().timestamp())
        return await run_replica_drill(
            registries,
            registries[name],
            scopes,
            targets=targets,
            lag=lag,
            trust_name=drills.trust or "",
            clock=clock,
        )
    config = settings.snapshots
    if config is None:
        raise ConfigError(
            "a restore drill needs [snapshots]",
            errors=[("snapshots", "add a [snapshots] table to drill from")],
        )
    trust = trust_policy(settings.trust[drills.trust]) if drills.trust else None
    trusts = trust_scopes(settings, config.source)
    others = {n: c for n, c in registries.items() if n != drills.target}
    async with open_store(config, retry) as store:
        return await run_drill(
            store,
            registries[drills.target],
            source=config.source,
            targets=targets,
            snapshot=snapshot,
            sample=drills.sample if sample is None else sample,
            trust=trust,
            trusts=trusts,
            sources=others,
            verify_key=index_key(settings),
            retry=retry,
            clock=clock,
        )


async def record_drill(
    report: DrillReport,
    *,
    trigger: str,
    state: State | None = None,
    metrics: Metrics | None = None,
    endpoint: str = "",
) -> None:
    """Record *report* as a run of the job ``drill`` (state) and in the ``drd_drill_*`` metrics."""
    finished = (report.finished_at or utc_now()).timestamp()
    if state is not None:
        outcome = "ok" if report.ok else ("error" if report.error else "failed")
        await state.record_run(
            RunRecord(
                "drill",
                "drill",
                trigger,
                report.started_at.timestamp(),
                finished,
                outcome,
                report.summary(),
                report.error or "; ".join(report.judgement.reasons if report.judgement else ()),
            )
        )
    if metrics is not None:
        j = report.judgement
        metrics.record_drill(
            endpoint or report.target,
            ok=report.ok,
            duration_s=report.duration_s,
            finished_at=finished,
            rto_s=j.rto.value_s if j is not None and j.rto is not None else None,
            rpo_s=j.rpo_s if j is not None else None,
        )


def drill_job(
    settings: Settings,
    registries: Mapping[str, RegistryClient],
    retry: RetryPolicy,
    *,
    state: State | None,
    metrics: Metrics | None,
) -> Callable[[], Coroutine[Any, Any, None]]:
    """
    The daemon's scheduled drill: run the configured drill, write its reports into
    ``[drills] report_dir``, record it in state and metrics. A failed drill is
    recorded, not raised; a configuration error raises.
    """
    drills = drills_config(settings)

    async def run() -> None:
        report = await drill_from_settings(settings, registries, retry, state=state)
        try:
            paths = await asyncio.to_thread(write_report, report, drills.report_dir)
        except OSError as exc:
            log.error("drill.report_not_written", error=str(exc), directory=str(drills.report_dir))  # noqa: TRY400
            paths = {}
        await record_drill(
            report, trigger="schedule", state=state, metrics=metrics, endpoint=drills.target
        )
        if "html" in paths:
            log.info("drill.report_written", path=str(paths["html"]), ok=report.ok)

    return run


async def write_reports(report: DrillReport, directory: Path) -> dict[str, Path]:
    """`write_report` off the event loop."""
    return await asyncio.to_thread(write_report, report, directory)


__all__ = [
    "RESTORE_PHASES",
    "ReplicaScope",
    "TrustScope",
    "check_replica",
    "drill_from_settings",
    "drill_job",
    "pull_blob",
    "record_drill",
    "run_drill",
    "run_replica_drill",
    "verify_digest",
    "write_reports",
]
