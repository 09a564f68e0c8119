"""
Run one replication policy end to end: discover, plan, verify, copy, tag → PolicyReport.

Longer than most modules on purpose: a pass is one state machine over `_Pass`, and
discovery, planning, verification and copying all read and fill that state; the pure
decisions already live in `drd.replicate.plan` and `drd.selection`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import structlog

from drd.aio import exception_leaves
from drd.errors import (
    DrdError,
    IntegrityError,
    LeaseLost,
    NotFound,
    RateLimited,
    RegistryUnavailable,
    StateError,
    VerificationError,
)
from drd.oci.descriptor import Descriptor
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest
from drd.oci.mediatype import is_index
from drd.oci.referrers import (
    NOT_ATTACHED,
    REFERRERS,
    SIGNATURE,
    AttachedTag,
    claim_mismatch,
    is_attached_tag,
    parse_attached,
    signature_tag,
    subject_of_tag,
)
from drd.progress import Tally
from drd.registry.client import RegistryClient
from drd.replicate.cache import TagCache
from drd.replicate.copier import Copier, CopyStats, TargetState
from drd.replicate.plan import Action, Copy, Drift, Skip, plan_attached, plan_tags
from drd.replicate.referrers import MAX_DEPTH as REFERRER_DEPTH
from drd.replicate.referrers import ReferrerWalk
from drd.replicate.report import ItemResult, PolicyReport
from drd.retry import RetryPolicy
from drd.selection.policy import Policy

if TYPE_CHECKING:
    # Loaded where a policy propagates deletions (`_plan_deletions`), not by every pass.
    from drd.replicate.deletions import Recorder, TargetDeletions

log = structlog.get_logger(__name__)

_LANDED = ("copied", "skipped", "planned")
# Memory for source manifests kept between resolving a new tag and copying it.
MAX_FETCHED_BYTES = 64 * 1024 * 1024

# Attached tags can hang off attached artifacts (an SBOM's own signature, and a signature
# of that): this many rounds, as deep as referrers found through the API go.
MAX_ATTACHED_ROUNDS = REFERRER_DEPTH

# Verifies that *digest* in *repository* on *client* is signed by a trusted key; returns
# the key's fingerprint or raises VerificationError. Supplied by the trust package.
Verifier = Callable[[RegistryClient, str, Digest], Awaitable[str]]
# Verifies what an attached tag holds (its manifest, read by digest) under the same trust
# policy; returns a key's fingerprint or raises VerificationError.
AttachedVerifier = Callable[[RegistryClient, str, AttachedTag, Manifest], Awaitable[str]]


class RepositoryGate(Protocol):
    """
    Repositories shared with other nodes (`drd.state.leases.LeaseGate`): a pass copies
    only those it claims, and checks its claim (the fence) right before each tag write.
    """

    async def claim(self, repository: str) -> int | None:
        """A fencing token, or None: another node has the repository or just did it."""

    async def check(self, repository: str, token: int) -> None:
        """Return only while the claim with *token* holds; else raise `LeaseLost`."""

    async def release(self, repository: str, token: int, *, done: bool) -> None:
        """Give the claim back; *done*: the repository completed."""


@dataclass(frozen=True)
class TrustCheck:
    """A trust policy's two checks; called as a `Verifier`, it checks release digests."""

    release: Verifier
    attached: AttachedVerifier

    async def __call__(self, client: RegistryClient, repository: str, digest: Digest) -> str:
        """The release digest's check: its key's fingerprint, or `VerificationError`."""
        return await self.release(client, repository, digest)


@dataclass
class _Pass:
    """Everything one pass shares: clients, copiers per target, the report being filled."""

    policy: Policy
    source: RegistryClient
    targets: Mapping[str, RegistryClient]
    retry: RetryPolicy
    verifier: Verifier | None
    dry_run: bool
    report: PolicyReport
    attached_check: AttachedVerifier | None = None
    copiers: dict[str, Copier] = field(default_factory=dict)
    done: set[tuple[str, str, str]] = field(default_factory=set)  # (target, repo, tag) handled
    indexes: set[Digest] = field(default_factory=set)  # source digests served as an index
    # Children of source indexes read this pass: manifests are immutable, one GET each.
    children: dict[Digest, tuple[tuple[Digest, bool], ...]] = field(default_factory=dict)
    cache: TagCache | None = None
    # Source manifests read whole (GET by tag) while resolving tags no target holds yet:
    # the copy starts from them instead of reading them again. Dropped per repository.
    fetched: dict[tuple[str, Digest], Manifest] = field(default_factory=dict)
    fetched_bytes: int = 0
    # Targets found unreachable this pass (after retries), with why: skipped from then on.
    down: dict[str, DrdError] = field(default_factory=dict)
    # A dry run's trust verdicts at the source, per (repository, tag, digest): the key that
    # verified it, or why not. The same for every target, so checked once.
    verdicts: dict[tuple[str, str, Digest], str | DrdError] = field(default_factory=dict)
    # Progress for a terminal, one line per target; items recorded per (target, repository).
    progress: Tally | None = None
    recorded: dict[tuple[str, str], int] = field(default_factory=dict)
    # With propagate_deletions: the digests each target was found to hold, per repository,
    # from planning its copies to planning its deletions.
    planned_at: dict[tuple[str, str], dict[str, Digest]] = field(default_factory=dict)

    def line(self, target: str) -> str:
        """The progress line of *target*."""
        return f"{self.policy.name} -> {target}"

    def expect(self, target: str, items: int) -> None:
        """*items* more items are to be handled at *target*."""
        if self.progress is not None:
            self.progress.expect(self.line(target), items)

    def settle(self, target: str, repo: str, items: int) -> None:
        """*repo* is over at *target*: the items it expected count done, recorded or not."""
        left = items - self.recorded.pop((target, repo), 0)
        if self.progress is not None and left > 0:
            self.progress.done(self.line(target), left)

    # Claims shared with other nodes, and the fencing token of each repository claimed.
    gate: RepositoryGate | None = None
    tokens: dict[str, int] = field(default_factory=dict)
    # Claims kept past their repository's copies because deletions are planned there:
    # released once the deletions are over, so no other node acts on it meanwhile.
    deferred: dict[str, int] = field(default_factory=dict)
    # Tags gone at the source, per target, with propagate_deletions: applied after the copies.
    deletions: dict[str, TargetDeletions] = field(default_factory=dict)
    # Per target, the (repository, referrer) handled this pass through the referrers API,
    # and what the source's API listed (once per pass, whatever the number of targets).
    referred: dict[str, set[tuple[str, Digest]]] = field(default_factory=dict)
    referrer_listings: dict[tuple[str, Digest], list[Descriptor] | None] = field(
        default_factory=dict
    )

    def keep(self, repo: str, manifest: Manifest) -> None:
        """Keep *manifest* for the copy, within `MAX_FETCHED_BYTES`."""
        if self.fetched_bytes + len(manifest.raw) <= MAX_FETCHED_BYTES:
            self.fetched[(repo, manifest.digest)] = manifest
            self.fetched_bytes += len(manifest.raw)

    def forget(self, repo: str) -> None:
        """Drop what was kept for *repo*: its copies are over."""
        for key in [k for k in self.fetched if k[0] == repo]:
            self.fetched_bytes -= len(self.fetched.pop(key).raw)


async def run_policy(
    policy: Policy,
    source: RegistryClient,
    targets: Mapping[str, RegistryClient],
    retry: RetryPolicy,
    *,
    verifier: Verifier | None = None,
    dry_run: bool = False,
    only: Sequence[tuple[str, str | None]] | None = None,
    cache: TagCache | None = None,
    progress: Tally | None = None,
    gate: RepositoryGate | None = None,
    recorder: Recorder | None = None,
) -> PolicyReport:
    """
    One replication pass of *policy* from *source* to every target.

    *only* narrows the pass to (repository, tag-or-None) pairs, as a webhook does.
    Per-item failures go into the report, and so does a target that cannot be reached
    (``unreachable``). A repository the source cannot serve does not stop the others;
    the first such failure, with how many there were, is the report's ``error``. An
    unreachable source ends the pass. With *dry_run* nothing is written: the plan is
    the report.
    With a *cache*, target tags it knows to hold the source's digest are not asked
    for (see `drd.replicate.cache`); it is flushed at the end of the pass.
    Items and bytes per target are counted into *progress* as they go.
    With ``propagate_deletions``, tags the source no longer lists are deleted at each
    target after the copies, within the policy's brake, once *recorder* has recorded
    them in a snapshot (`drd.replicate.deletions`); a dry run lists them.
    With a *gate*, only the repositories it grants are copied (the others are counted
    as ``elsewhere``), and every tag write and every deletion is fenced by the claim:
    the claim on a repository with deletions planned is kept until they are over.
    """
    report = PolicyReport(policy=policy.name, source=source.name, dry_run=dry_run)
    state = _Pass(policy, source, targets, retry, verifier, dry_run, report, cache=cache, gate=gate)
    state.attached_check = _attached_check(verifier)
    state.progress = progress
    for name, client in targets.items():
        copier = Copier(
            source, client, retry, blob_concurrency=policy.blob_concurrency, state=TargetState()
        )
        state.copiers[name] = copier
        report.stats[name] = copier.stats
        if progress is not None:
            progress.watch(state.line(name), _bytes_of(copier.stats))
    started = time.monotonic()
    failed: dict[str, DrdError] = {}
    with structlog.contextvars.bound_contextvars(policy=policy.name):
        try:
            repos = await _repositories(state, only)
            report.repositories = len(repos)
            limit = asyncio.Semaphore(policy.concurrency)

            async def one(repo: str) -> None:
                async with limit, _claimed(state, repo, failed) as mine:
                    if not mine:
                        return
                    try:
                        await _run_repository(state, repo, _only_tags(only, repo))
                    except* DrdError as group_error:
                        failure = _first(group_error)
                        if _unreachable(failure, source.host):
                            raise  # the source is down: the pass ends here
                        failed[repo] = failure
                        log.warning(
                            "replicate.repository_failed",
                            repository=repo,
                            error=f"{type(failure).__name__}: {failure}",
                        )

            async with asyncio.TaskGroup() as group:
                for repo in repos:
                    group.create_task(one(repo))
            await _delete(state, recorder)
            if failed:
                repo, first = min(failed.items())
                more = f"; {len(failed) - 1} more repositories failed" if len(failed) > 1 else ""
                report.exception = first
                report.error = f"{type(first).__name__}: {first} (repository {repo}{more})"
                log.error("replicate.pass_failed", error=report.error)
        except* DrdError as group_error:
            fatal = _first(group_error)
            report.exception = fatal
            report.error = f"{type(fatal).__name__}: {fatal}"
            # An unreachable source is an operating condition, not a bug: no traceback.
            log.error("replicate.pass_failed", error=report.error)  # noqa: TRY400
        finally:
            await _release_deferred(state, failed)
            report.deletions = {
                n: d for n, d in sorted(state.deletions.items()) if d.planned or d.kept or d.error
            }
            report.unreachable = {name: str(exc) for name, exc in state.down.items()}
            for copier in state.copiers.values():
                await copier.state.inflight.aclose()
            if cache is not None:
                await cache.flush()
        report.duration_s = time.monotonic() - started
        log.info("replicate.run_finished", **report.summary(), ok=report.ok)
    return report


def _bytes_of(stats: CopyStats) -> Callable[[], int]:
    """Reads the blob bytes *stats* has counted so far."""
    return lambda: stats.bytes_copied


@contextlib.asynccontextmanager
async def _claimed(state: _Pass, repo: str, failed: Mapping[str, DrdError]) -> AsyncIterator[bool]:
    """
    Whether this node works on *repo*: always without a gate; with one, when it grants
    the claim (released after, done unless the repository failed; kept until the end of
    the pass when deletions are planned in *repo*, so they stay fenced by it).
    """
    gate = state.gate
    if gate is None or state.dry_run:
        yield True
        return
    token = await gate.claim(repo)
    if token is None:
        state.report.elsewhere += 1
        state.report.elsewhere_repositories.append(repo)
        yield False
        return
    state.tokens[repo] = token
    done = False
    try:
        yield True
        done = repo not in failed
        if done and _deletes_in(state, repo):
            state.deferred[repo] = token  # released after the deletions (`_release_deferred`)
            return
    finally:
        if repo not in state.deferred:
            await _release(state, repo, token, done=done)


async def _release(state: _Pass, repo: str, token: int, *, done: bool) -> None:
    """Give the claim on *repo* back; a release that fails is logged (the lease runs out)."""
    state.tokens.pop(repo, None)
    if state.gate is None:
        return
    try:
        await state.gate.release(repo, token, done=done)
    except StateError as exc:  # the lease runs out by itself
        log.warning("replicate.release_failed", repository=repo, error=str(exc))


async def _release_deferred(state: _Pass, failed: Mapping[str, DrdError]) -> None:
    """The pass is over: release the claims kept for deletions."""
    for repo, token in sorted(state.deferred.items()):
        await _release(state, repo, token, done=repo not in failed)
    state.deferred.clear()


def _deletes_in(state: _Pass, repo: str) -> bool:
    """Whether deletions are planned in *repo* at any target this pass."""
    return any(d.repository == repo for plan in state.deletions.values() for d in plan.planned)


async def _fence(state: _Pass, repo: str) -> None:
    """Right before a tag write: raise `LeaseLost` unless this node still holds *repo*."""
    if state.gate is not None and repo in state.tokens:
        await state.gate.check(repo, state.tokens[repo])


async def _fence_deletion(state: _Pass, repo: str) -> None:
    """
    Right before a manifest DELETE: raise `LeaseLost` unless this node still holds
    *repo* (with a gate, a repository it holds no claim on deletes nothing).
    """
    if state.gate is None:
        return
    token = state.tokens.get(repo)
    if token is None:
        raise LeaseLost(f"{repo} is not claimed by this node: nothing deleted")
    await state.gate.check(repo, token)


def _attached_check(verifier: Verifier | None) -> AttachedVerifier | None:
    """How attached tags verify on a trusted policy; None on an untrusted one."""
    if verifier is None:
        return None
    if isinstance(verifier, TrustCheck):
        return verifier.attached
    return _through_signature_tag(verifier)


def _through_signature_tag(verifier: Verifier) -> AttachedVerifier:
    """
    For a bare release verifier, which reads signatures only through the ``.sig`` tag: a
    ``.sig`` passes when its subject verifies and the tag still names the bytes to be
    copied. Anything else needs the trust policy (`TrustCheck`) and is refused.
    """

    async def check(
        client: RegistryClient, repository: str, tag: AttachedTag, manifest: Manifest
    ) -> str:
        if tag.kind != SIGNATURE:
            raise VerificationError(
                f"{tag} cannot be verified without the trust policy",
                reason="no-signature",
                digest=str(tag.subject),
            )
        key = await verifier(client, repository, tag.subject)
        now = await client.head_manifest(repository, str(tag))
        if now is None or now.digest != manifest.digest:
            raise VerificationError(
                f"{tag} moved while it was verified", reason="malformed", digest=str(tag.subject)
            )
        return key

    return check


def _only_tags(only: Sequence[tuple[str, str | None]] | None, repo: str) -> set[str] | None:
    if only is None:
        return None
    tags = {tag for r, tag in only if r == repo}
    return None if None in tags else {t for t in tags if t is not None}


async def _repositories(state: _Pass, only: Sequence[tuple[str, str | None]] | None) -> list[str]:
    wanted = state.policy.repositories
    if only is not None:
        return sorted({repo for repo, _ in only if wanted(repo)})
    literal = wanted.literal_names()
    if literal is not None:
        return literal
    return sorted(name for name in await state.source.catalog() if wanted(name))


async def _digests(
    client: RegistryClient,
    repo: str,
    tags: Sequence[str],
    limit: int,
    indexes: set[Digest] | None = None,
    *,
    fetch: Callable[[str], bool] | None = None,
    keep: Callable[[Manifest], None] | None = None,
) -> dict[str, Digest]:
    """
    Resolve every tag concurrently; a tag that vanished in between is left out.

    A tag *fetch* selects is read whole (GET) and its manifest handed to *keep*: one
    request where a copy would need HEAD then GET. The others cost a HEAD. Digests
    served as an index or manifest list are added to *indexes* when given.
    """
    sem = asyncio.Semaphore(limit)
    found: dict[str, Digest] = {}

    async def resolve(tag: str) -> None:
        async with sem:
            desc = None
            if fetch is not None and keep is not None and fetch(tag):
                try:
                    manifest = await client.get_manifest(repo, tag)
                except NotFound:
                    return
                except DrdError:
                    # A bad manifest fails its own item when the copy reads it, not the pass.
                    manifest = None
                if manifest is not None:
                    keep(manifest)
                    desc = Descriptor(manifest.media_type, manifest.digest, len(manifest.raw))
            if desc is None:
                desc = await client.head_manifest(repo, tag)
                if desc is None:
                    return
        found[tag] = desc.digest
        if indexes is not None and is_index(desc.media_type):
            indexes.add(desc.digest)

    async with asyncio.TaskGroup() as group:
        for tag in tags:
            group.create_task(resolve(tag))
    return found


async def _run_repository(state: _Pass, repo: str, only_tags: set[str] | None) -> None:
    try:
        await _resolve_and_copy(state, repo, only_tags)
    finally:
        state.forget(repo)


async def _resolve_and_copy(state: _Pass, repo: str, only_tags: set[str] | None) -> None:
    policy = state.policy
    async with asyncio.TaskGroup() as group:
        listing = group.create_task(state.source.list_tags(repo))
        at_targets = {
            n: group.create_task(_target_tags(c, repo))
            for n, c in state.targets.items()
            if n not in state.down
        }
    source_tags = listing.result()
    target_tags: dict[str, set[str] | DrdError] = {n: t.result() for n, t in at_targets.items()}
    selected_names = [
        t for t in policy.tags.select(source_tags) if only_tags is None or t in only_tags
    ]
    attached_names = [t for t in source_tags if is_attached_tag(t)] if policy.referrers else []

    def new_everywhere(tag: str) -> bool:
        # No target lists it: the copy will read its manifest anyway, so read it now.
        return not state.dry_run and all(
            isinstance(listed, DrdError) or tag not in listed for listed in target_tags.values()
        )

    def keep(manifest: Manifest) -> None:
        state.keep(repo, manifest)

    width = max(policy.blob_concurrency, 4)
    async with asyncio.TaskGroup() as group:
        heads = group.create_task(
            _digests(
                state.source,
                repo,
                selected_names,
                width,
                state.indexes,
                fetch=new_everywhere,
                keep=keep,
            )
        )
        signatures = group.create_task(
            _digests(state.source, repo, attached_names, width, fetch=new_everywhere, keep=keep)
        )
    selected, attached = heads.result(), signatures.result()
    for target_name, client in state.targets.items():
        listed = target_tags[target_name] if target_name in target_tags else state.down[target_name]
        wanted = {**selected, **attached}
        state.expect(target_name, len(wanted))
        interrupted = False
        try:
            await _to_target(state, repo, (target_name, client), listed, selected, attached)
            # Planned only where the copies were (a target that failed them deletes nothing).
            known = state.planned_at.pop((target_name, repo), None)
            if known is not None and not isinstance(listed, DrdError):
                await _plan_deletions(
                    state, repo, target_name, source_tags, listed, known, only_tags
                )
        except asyncio.CancelledError:
            interrupted = True  # unsettled: an interrupted command counts what was done
            raise
        finally:
            if not interrupted:
                state.settle(target_name, repo, len(wanted))


async def _to_target(
    state: _Pass,
    repo: str,
    target_client: tuple[str, RegistryClient],
    listed: set[str] | DrdError,
    selected: dict[str, Digest],
    attached: dict[str, Digest],
) -> None:
    """*repo*'s wanted tags at one target: what it holds, then the plan, acted on."""
    target_name, client = target_client
    wanted = {**selected, **attached}
    if isinstance(listed, DrdError):
        # This target fails this repository's items; the other targets go on.
        _target_failed(state, repo, target_name, wanted, listed)
        return
    known = [t for t in wanted if t in listed]
    target = await _cached(state, client, repo, wanted, listed)
    ask = [t for t in known if t not in target]
    failure: DrdError | None = None
    try:
        target |= await _digests(client, repo, ask, max(state.policy.blob_concurrency, 4))
    except* DrdError as group_error:
        failure = _first(group_error)
    if failure is not None:
        _target_failed(state, repo, target_name, wanted, failure)
        return
    if state.cache is not None:
        for tag in ask:
            state.cache.observed(client.base_url, repo, tag, target.get(tag))
    await _execute(state, repo, target_name, selected, attached, target)
    if state.policy.propagate_deletions:
        state.planned_at[(target_name, repo)] = target


async def _plan_deletions(
    state: _Pass,
    repo: str,
    target_name: str,
    source_tags: Sequence[str],
    listed: set[str],
    known: dict[str, Digest],
    only_tags: set[str] | None,
) -> None:
    """Note the tags of *repo* at *target_name* that the source no longer lists."""
    from drd.replicate.deletions import TargetDeletions, deletable, plan_deletions

    selects = state.policy.tags.matches
    plan = state.deletions.setdefault(target_name, TargetDeletions())
    plan.managed += sum(1 for tag in listed if deletable(tag, selects))
    present = set(source_tags)
    gone = [t for t in listed if t not in present and deletable(t, selects)]
    if only_tags is not None:
        gone = [t for t in gone if t in only_tags]
    if not gone:
        return
    # Every tag's digest, to keep a tag whose digest another tag still names.
    ask = [t for t in listed if t not in known]
    width = max(state.policy.blob_concurrency, 4)
    found: dict[str, Digest] = {}
    failure: DrdError | None = None
    try:
        found = await _digests(state.targets[target_name], repo, ask, width)
    except* DrdError as group_error:
        failure = _first(group_error)
    if failure is not None:
        _mark_down(state, target_name, failure)
        # Nothing is deleted at this target this pass: what it holds is not known whole.
        plan.error = plan.error or f"cannot read the tags of {repo} at {target_name}: {failure}"
        return
    digests = {**known, **found}
    at_target = {t: d for t, d in digests.items() if t in listed}
    chosen = set(gone)
    delete, kept = plan_deletions(repo, present, at_target, chosen.__contains__)
    plan.planned += delete
    plan.kept += kept


async def _delete(state: _Pass, recorder: Recorder | None) -> None:
    """Apply each reachable target's planned deletions (see `drd.replicate.deletions`)."""
    if not state.deletions:
        return
    from drd.replicate.deletions import apply_deletions

    for name, plan in sorted(state.deletions.items()):
        if name in state.down:
            continue
        await apply_deletions(
            name,
            state.targets[name],
            plan,
            state.policy.brake,
            recorder,
            dry_run=state.dry_run,
            fence=functools.partial(_fence_deletion, state),
        )


async def _target_tags(client: RegistryClient, repo: str) -> set[str] | DrdError:
    """The tags *client* lists for *repo*, or why it could not list them."""
    try:
        return set(await client.list_tags(repo))
    except DrdError as exc:
        return exc


def _target_failed(
    state: _Pass, repo: str, target: str, tags: Mapping[str, Digest], exc: DrdError
) -> None:
    """Every tag of *repo* fails at *target* for *exc*; the other targets go on."""
    if state.down.get(target) is exc:  # found down by an earlier repository: not asked now
        reason = f"not tried: {target} was unreachable earlier in this pass ({exc})"
    else:
        reason = str(exc)
        _mark_down(state, target, exc)
    error = type(exc).__name__
    for tag, digest in sorted(tags.items()):
        failed = ItemResult(repo, tag, target, str(digest), "failed", reason, error=error)
        _record(state, repo, target, failed, quiet=True)
    # One line for the lot: the same reason item by item tells nothing more.
    log.warning(
        "replicate.target_failed",
        repository=repo,
        target=target,
        items=len(tags),
        reason=reason,
    )


def _mark_down(state: _Pass, target: str, exc: DrdError) -> None:
    """
    Remember that *target* could not be reached even after retries: the rest of the
    pass fails its items at once instead of retrying against it repository by repository.
    """
    host = state.targets[target].host
    if host != state.source.host and _unreachable(exc, host):
        state.down.setdefault(target, exc)


def _unreachable(exc: DrdError, host: str) -> bool:
    """*exc* says that *host* could not be reached, even after retries."""
    return isinstance(exc, (RegistryUnavailable, RateLimited)) and exc.registry == host


def _first(group: BaseExceptionGroup[DrdError]) -> DrdError:
    """The first drd error in *group*, nested groups flattened."""
    return next(e for e in exception_leaves(group) if isinstance(e, DrdError))


async def _cached(
    state: _Pass, client: RegistryClient, repo: str, wanted: dict[str, Digest], listed: set[str]
) -> dict[str, Digest]:
    """The wanted tags the cache knows *client* holds at the source's digest: no HEAD."""
    if state.cache is None:
        return {}
    return await state.cache.lookup(client.base_url, repo, wanted, listed)


async def _execute(
    state: _Pass,
    repo: str,
    target: str,
    selected: dict[str, Digest],
    attached: dict[str, Digest],
    current: dict[str, Digest],
) -> None:
    """
    Release tags first (concurrently), then the tags attached to what made it, in rounds:
    an attached artifact that lands can carry its own (an SBOM's signature).
    """
    primary = plan_tags(selected, current, immutable=state.policy.immutable_tags)
    # Signatures of the release digests are offered to trusted copies, which move them first.
    offered = [
        a for a in plan_attached(attached, current, set(selected.values())) if isinstance(a, Copy)
    ]
    results = await asyncio.gather(*(_act(state, repo, target, a, offered) for a in primary))
    # A signature rides only on content that made it, in this repository: a rejected
    # image takes its .sig with it, and a digest seen in another repository counts not.
    present = {Digest.parse(i.digest) for i in results if i.outcome in _LANDED}
    present |= _seen_in(state, target, repo)
    if _unexplained(attached, current, present):
        roots = {Digest.parse(i.digest) for i in results} & present & state.indexes
        present |= await _children(state, repo, roots)
    if state.policy.referrers:
        # The source's tags cover its fallback indexes; the API covers referrers without one.
        with_tag = {a.subject for t in attached if (a := parse_attached(t)) and a.kind == REFERRERS}
        present |= await _api_referrers(state, repo, target, present, with_tag)
    pending = {t: d for t, d in attached.items() if (target, repo, t) not in state.done}
    for _ in range(MAX_ATTACHED_ROUNDS):
        riding = plan_attached(pending, current, present)
        if not riding:
            break
        landed = await asyncio.gather(*(_ride(state, repo, target, a) for a in riding))
        for action in riding:
            pending.pop(action.tag, None)
        present |= {Digest.parse(i.digest) for i in landed if i and i.outcome in _LANDED}
        present |= _seen_in(state, target, repo)
    await _dangling_fallbacks(state, repo, target, pending, current)


async def _dangling_fallbacks(
    state: _Pass, repo: str, target: str, pending: dict[str, Digest], current: dict[str, Digest]
) -> None:
    """
    A bare ``sha256-<hex>`` tag whose subject the source repository does not hold (pushed
    before its subject, or listing content kept elsewhere) rides on nothing: it is an
    ordinary tag of the source, copied byte-exact like any other (`_as_ordinary`).
    """
    for tag, digest in sorted(pending.items()):
        parsed = parse_attached(tag)
        if parsed is None or parsed.kind != REFERRERS or current.get(tag) == digest:
            continue
        if await state.source.head_manifest(repo, str(parsed.subject)) is not None:
            continue  # its subject is here: it rides once the subject is copied
        action = Copy(tag, digest, current.get(tag))
        if state.dry_run:
            if state.policy.tags.matches(tag):
                moved = str(action.moved_from or "")
                _record(
                    state,
                    repo,
                    target,
                    ItemResult(repo, tag, target, str(digest), "planned", "", moved),
                )
            continue
        why = f"its subject {parsed.subject} is not in {repo}"
        result = await _as_ordinary(state, repo, target, action, why)
        if result is not None:
            _record(state, repo, target, result)


async def _api_referrers(
    state: _Pass, repo: str, target: str, subjects: set[Digest], with_tag: set[Digest]
) -> set[Digest]:
    """
    The referrers of *subjects* the source lists through its referrers API, to any depth,
    brought to *target* (`drd.replicate.referrers`); those now there.
    """
    walk = ReferrerWalk(
        state.source,
        state.copiers[target],
        target,
        check=state.attached_check,
        dry_run=state.dry_run,
        read_back=state.policy.verify_after_copy,
        done=state.referred.setdefault(target, set()),
        listings=state.referrer_listings,
    )
    try:
        return await walk.run(repo, subjects, with_tag)
    finally:
        state.report.items.extend(walk.results)
        for result in walk.results:
            if result.outcome in ("failed", "rejected"):
                log.warning(
                    "replicate.item_failed" if result.outcome == "failed" else "replicate.rejected",
                    repository=repo,
                    tag=result.tag,
                    target=target,
                    digest=result.digest,
                    reason=result.reason,
                )
        if walk.failure is not None:
            _mark_down(state, target, walk.failure)


def _seen_in(state: _Pass, target: str, repo: str) -> set[Digest]:
    """Manifests this pass made or found present in *repo* at *target*."""
    return {digest for where, digest in state.copiers[target].seen if where == repo}


def _unexplained(
    attached: dict[str, Digest], current: dict[str, Digest], present: set[Digest]
) -> bool:
    """Attached tags not yet at the target whose subject this pass has not seen."""
    return any(
        current.get(tag) != digest and subject_of_tag(tag) not in present
        for tag, digest in attached.items()
    )


async def _children(state: _Pass, repo: str, roots: set[Digest]) -> set[Digest]:
    """
    Every manifest under the index digests *roots*, read from the source once per pass.

    Only needed when a signature hangs off a platform child of an index this pass left
    alone: a no-op pass with nothing new attached never pays for it, and image
    manifests (no children) are never fetched for it.
    """
    found: set[Digest] = set()
    todo = list(roots)
    while todo and len(found) < 10_000:
        digest = todo.pop()
        if digest not in state.children:
            manifest = await state.source.get_manifest(repo, digest)
            state.children[digest] = tuple(
                (d.digest, is_index(d.media_type)) for d in manifest.manifests
            )
        for child, nested in state.children[digest]:
            if child not in found:
                found.add(child)
                if nested:
                    todo.append(child)
    return found


async def _ride(state: _Pass, repo: str, target: str, action: Action) -> ItemResult | None:
    """
    One attached tag's action, recorded. None when it held something other than its name
    says and, as the ordinary tag it then is, the tag filters exclude it.
    """
    if not isinstance(action, Copy) or state.dry_run:
        return await _act(state, repo, target, action, [])
    result = await _copy_attached(state, repo, target, action)
    if result is not None:
        _record(state, repo, target, result)
    return result


async def _act(
    state: _Pass, repo: str, target: str, action: Action, attached: list[Copy]
) -> ItemResult:
    result = await _outcome(state, repo, target, action, attached)
    _record(state, repo, target, result)
    return result


def _record(
    state: _Pass, repo: str, target: str, result: ItemResult, *, quiet: bool = False
) -> None:
    """Add *result* to the report and the cache; log it unless *quiet* (the caller does)."""
    state.report.items.append(result)
    state.done.add((target, repo, result.tag))
    if state.progress is not None:
        state.recorded[(target, repo)] = state.recorded.get((target, repo), 0) + 1
        state.progress.done(state.line(target))
    if state.cache is not None and result.outcome in ("copied", "failed"):
        # A failed copy may have left the tag anywhere: forget it, the next pass asks.
        landed = Digest.parse(result.digest) if result.outcome == "copied" else None
        state.cache.observed(state.targets[target].base_url, repo, result.tag, landed)
    if quiet:
        return
    if result.outcome in ("failed", "rejected", "drift"):
        log.warning(
            f"replicate.{result.outcome}"
            if result.outcome != "failed"
            else "replicate.item_failed",
            repository=repo,
            tag=result.tag,
            target=target,
            digest=result.digest,
            reason=result.reason,
        )
    else:
        log.debug(
            "replicate.item",
            repository=repo,
            tag=result.tag,
            target=target,
            digest=result.digest,
            outcome=result.outcome,
        )


async def _outcome(
    state: _Pass, repo: str, target: str, action: Action, attached: list[Copy]
) -> ItemResult:
    match action:
        case Skip(tag, digest, reason, _):
            return ItemResult(repo, tag, target, str(digest), "skipped", reason)
        case Drift(tag, source, current):
            return ItemResult(
                repo,
                tag,
                target,
                str(source),
                "drift",
                f"tag moved at the source; immutable target keeps {current}",
                str(current),
            )
        case Copy(tag, digest, moved_from):
            moved = str(moved_from) if moved_from else ""
            if state.dry_run:
                return await _plan(state, repo, target, action, moved)
            return await _copy(state, repo, target, action, moved, attached)
    raise AssertionError(f"unknown action {action!r}")  # pragma: no cover


async def _plan(state: _Pass, repo: str, target: str, action: Copy, moved: str) -> ItemResult:
    """
    A dry run's copy: ``planned``, or ``rejected`` with why when the trust policy would
    refuse it (checked at the source as the copy would, once per digest and pass).
    """
    tag, digest = action.tag, action.digest
    key = ""
    if state.verifier is not None:
        verdict = state.verdicts.get((repo, tag, digest))
        if verdict is None:
            verdict = state.verdicts[(repo, tag, digest)] = await _dry_verdict(state, repo, action)
        if isinstance(verdict, DrdError):
            outcome = "rejected" if isinstance(verdict, VerificationError) else "failed"
            reason = verdict.reason if isinstance(verdict, VerificationError) else str(verdict)
            error = "" if isinstance(verdict, VerificationError) else type(verdict).__name__
            return ItemResult(repo, tag, target, str(digest), outcome, reason, moved, error=error)
        key = verdict
    return ItemResult(repo, tag, target, str(digest), "planned", "", moved, key)


async def _dry_verdict(state: _Pass, repo: str, action: Copy) -> str | DrdError:
    """The key that verifies *action* at the source, or the error that refuses it."""
    try:
        if not action.attached and state.verifier is not None:
            return await state.verifier(state.source, repo, action.digest)
        tag = parse_attached(action.tag)
        if tag is None:  # pragma: no cover - attached actions name attached tags
            return ""
        manifest = state.fetched.get((repo, action.digest))
        if manifest is None:
            manifest = await state.source.get_manifest(repo, action.digest)
        return await _check_attached(state, repo, tag, manifest)
    except VerificationError as exc:
        if exc.reason == NOT_ATTACHED:
            return ""  # an ordinary tag after all: the copy decides; the plan copies it
        return exc
    except DrdError as exc:
        return exc


async def _copy(
    state: _Pass, repo: str, target: str, action: Copy, moved: str, attached: list[Copy]
) -> ItemResult:
    copier = state.copiers[target]
    digest = action.digest
    key = ""
    try:
        if state.verifier is not None:
            # Verify by digest, then copy by that same digest: a tag moved meanwhile is ignored.
            key = await state.verifier(state.source, repo, digest)
        manifest = await copier.copy_graph(repo, repo, digest, state.fetched.get((repo, digest)))
        if state.policy.verify_after_copy:
            await copier.read_back(repo, manifest)
        if state.verifier is not None:
            # Signatures before the tag, then verify there: the tag is the commit point.
            await _copy_signatures(state, repo, target, manifest, attached)
            if state.policy.verify_after_copy:
                await _verify_at_target(state, repo, target, digest)
        await _fence(state, repo)
        await copier.tag(repo, action.tag, manifest)
    except VerificationError as exc:
        return ItemResult(repo, action.tag, target, str(digest), "rejected", exc.reason, moved)
    except DrdError as exc:
        _mark_down(state, target, exc)
        return ItemResult(
            repo,
            action.tag,
            target,
            str(digest),
            "failed",
            str(exc),
            moved,
            error=type(exc).__name__,
        )
    return ItemResult(repo, action.tag, target, str(digest), "copied", "", moved, key)


async def _copy_attached(state: _Pass, repo: str, target: str, action: Copy) -> ItemResult | None:
    """
    One attached tag: checked to hold what its name says (and, on a trusted policy,
    verified) by digest at the source, then copied by that digest and tagged.

    A rejected one is reported and never written: the target keeps what its tag held.
    One that holds something else is an ordinary tag (`_as_ordinary`).
    """
    moved = str(action.moved_from or "")
    try:
        key = await _place_attached(state, repo, target, action)
    except VerificationError as exc:
        if exc.reason == NOT_ATTACHED:
            return await _as_ordinary(state, repo, target, action, exc.message)
        return ItemResult(
            repo, action.tag, target, str(action.digest), "rejected", exc.reason, moved
        )
    except DrdError as exc:
        _mark_down(state, target, exc)
        return ItemResult(
            repo,
            action.tag,
            target,
            str(action.digest),
            "failed",
            str(exc),
            moved,
            error=type(exc).__name__,
        )
    return ItemResult(repo, action.tag, target, str(action.digest), "copied", "", moved, key)


async def _as_ordinary(
    state: _Pass, repo: str, target: str, action: Copy, why: str
) -> ItemResult | None:
    """
    An attached-looking tag that holds something else is an ordinary tag: the tag
    filters select it or not (None), immutable tags stay put, and a trusted policy
    verifies it like any release tag.
    """
    log.info("replicate.not_attached", repository=repo, tag=action.tag, target=target, why=why)
    if not state.policy.tags.matches(action.tag):
        return None
    if action.moved_from is not None and state.policy.immutable_tags:
        drift = Drift(action.tag, action.digest, action.moved_from)
        return await _outcome(state, repo, target, drift, [])
    release = Copy(action.tag, action.digest, action.moved_from)
    return await _copy(state, repo, target, release, str(action.moved_from or ""), [])


async def _place_attached(state: _Pass, repo: str, target: str, action: Copy) -> str:
    """
    `_copy_attached` raising: `VerificationError` when rejected (``not-attached`` when it
    holds something else), other `DrdError` when it failed; the verifying key or "".
    """
    tag = parse_attached(action.tag)
    if tag is None:  # pragma: no cover - plan_attached plans attached tags only
        raise AssertionError(f"{action.tag} is not an attached tag")
    copier = state.copiers[target]
    manifest = state.fetched.get((repo, action.digest))
    if manifest is None:
        manifest = await state.source.get_manifest(repo, action.digest)
    key = await _check_attached(state, repo, tag, manifest)
    copied = await copier.copy_graph(repo, repo, action.digest, manifest)
    if state.policy.verify_after_copy:
        await copier.read_back(repo, copied)
    await _fence(state, repo)
    await copier.tag(repo, action.tag, copied)
    return key


async def _check_attached(state: _Pass, repo: str, tag: AttachedTag, manifest: Manifest) -> str:
    """
    What *tag* holds is what its name claims; on a trusted policy it verifies too.

    Raises `VerificationError`: ``not-attached``, or why it did not verify.
    """
    if (why := claim_mismatch(tag, manifest)) is not None:
        raise VerificationError(why, reason=NOT_ATTACHED, digest=str(tag.subject))
    if state.attached_check is not None:
        # The trust side reads the referrers a referrers index lists, and checks them too.
        return await state.attached_check(state.source, repo, tag, manifest)
    if tag.kind == REFERRERS:
        for desc in manifest.manifests:
            referrer = await state.source.get_manifest(repo, desc.digest)
            if referrer.subject is None or referrer.subject.digest != tag.subject:
                raise VerificationError(
                    f"{tag} lists {desc.digest}, not a referrer of {tag.subject}",
                    reason=NOT_ATTACHED,
                    digest=str(tag.subject),
                )
    return ""


async def _copy_signatures(
    state: _Pass, repo: str, target: str, manifest: Manifest, attached: list[Copy]
) -> None:
    """
    Copy the attached tags hanging off *manifest* now, ahead of the release tag.

    For an index, the ``.sig`` tag of every manifest under it, at any depth, goes along
    when the source has one: a trust policy that requires the children's signatures
    re-verifies them at the target. Each is checked as `_copy_attached` does; a rejected
    one is reported and left out (the release then verifies at the target, or not).
    """
    digest = manifest.digest
    copier = state.copiers[target]

    async def put(action: Copy) -> None:
        # Two release tags on one digest copy its signatures concurrently: the same
        # bytes twice is harmless, but the report counts the tag once.
        if (target, repo, action.tag) in state.done:
            return
        moved = str(action.moved_from or "")
        try:
            key = await _place_attached(state, repo, target, action)
        except VerificationError as exc:
            if exc.reason == NOT_ATTACHED:
                return  # an ordinary tag after all: the attached rounds take it from here
            item = ItemResult(
                repo, action.tag, target, str(action.digest), "rejected", exc.reason, moved
            )
        else:
            item = ItemResult(
                repo, action.tag, target, str(action.digest), "copied", "", moved, key
            )
        if (target, repo, action.tag) not in state.done:
            _record(state, repo, target, item)

    async def child_signature(child: Digest) -> None:
        tag = signature_tag(child)
        if (target, repo, tag) in state.done:
            return
        found = await state.source.head_manifest(repo, tag)
        if found is None:
            return
        present = await copier.target.head_manifest(repo, tag)
        if present is None or present.digest != found.digest:
            await put(Copy(tag, found.digest, present.digest if present else None, attached=True))

    for action in attached:
        if subject_of_tag(action.tag) == digest:
            await put(action)
    if manifest.is_index:
        state.children.setdefault(
            digest, tuple((d.digest, is_index(d.media_type)) for d in manifest.manifests)
        )
        below = await _children(state, repo, {digest})
        await asyncio.gather(*(child_signature(child) for child in sorted(below, key=str)))


async def _verify_at_target(state: _Pass, repo: str, target: str, digest: Digest) -> None:
    """The copy must verify where it landed, or the item fails (it is not promoted)."""
    if state.verifier is None:
        return
    try:
        await state.verifier(state.targets[target], repo, digest)
    except VerificationError as exc:
        raise IntegrityError(
            f"signature of {digest} does not verify at {target}: {exc.reason}"
        ) from exc
