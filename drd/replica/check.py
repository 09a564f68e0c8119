"""
Compare a replica with its source, tag by tag, as a replica drill and a failover
preflight both need: same digest, signatures verifying at the replica, attached
tags present for every subject the replica is expected to hold.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from drd.aio import run_all
from drd.errors import VerificationError
from drd.oci import mediatype
from drd.oci.digest import Digest
from drd.oci.referrers import subject_of_tag
from drd.registry.client import RegistryClient
from drd.scrub.check import ClosureCheck, check_closure
from drd.selection.policy import Policy
from drd.state import StateStore
from drd.trust.keys import TrustPolicy
from drd.trust.policy import NO_SIGNATURE, signature_tag
from drd.trust.tree import verify_tree
from drd.trust.verify import fingerprint_verifier

CheckStatus = Literal["ok", "missing", "differs", "incomplete", "excluded", "unverified"]
# A replica check's statuses that fail a drill or a failover preflight.
FAILING = ("missing", "differs", "incomplete", "unverified")


@dataclass(frozen=True, slots=True)
class TagCheck:
    """
    One source tag compared with a replica: ``ok`` (same digest, signature verifies when a
    trust policy applies), ``missing``, ``differs``, ``incomplete`` (the tag is right
    but a manifest or blob below it is missing or the wrong size: `drd.scrub.check`),
    ``unverified`` (there, but its signature does not verify there) or ``excluded``
    (a trusted policy would never copy it: it does not verify at the source either).
    """

    policy: str
    repository: str
    tag: str
    source_digest: str
    replica_digest: str
    status: CheckStatus
    reason: str = ""
    attached: bool = False  # a signature, attestation or referrers tag
    key: str = ""  # fingerprint of the key that verified it at the replica

    @property
    def failing(self) -> bool:
        """Whether this check fails a replica drill or a failover preflight."""
        return self.status in FAILING

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "policy": self.policy,
            "repository": self.repository,
            "tag": self.tag,
            "source_digest": self.source_digest,
            "replica_digest": self.replica_digest,
            "status": self.status,
            "reason": self.reason,
            "attached": self.attached,
            "key": self.key,
        }


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


async def replication_lag(
    state: StateStore | None, scopes: Sequence[ReplicaScope], replica: str, now: float
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
