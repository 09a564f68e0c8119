"""
Propagated deletions: tags gone at the source are removed at a target, never blindly.

Per pass and target: the tags to delete are planned while the repositories are copied
(`plan_deletions`, pure); then the brake is checked (`brake_reason`, pure): above
``max_deletions`` or ``max_deletion_percent`` of the tags the policy manages there,
nothing is deleted at that target and the report says why. Below it, the target's
affected repositories are recorded in a snapshot first (the *recorder*), and only the
(tag, digest) pairs that snapshot holds are deleted.

distribution deletes manifests by digest, which removes every tag on that digest: a
tag whose digest another tag still names at the target is kept and reported, never
deleted (the other tag would go with it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from drd.errors import DrdError, LeaseLost
from drd.oci.digest import Digest
from drd.oci.referrers import is_attached_tag
from drd.registry.client import RegistryClient
from drd.selection.policy import Brake

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Deletion:
    """One tag to delete at a target, at the digest it named when it was planned."""

    repository: str
    tag: str
    digest: Digest

    def to_json(self) -> dict[str, str]:
        return {"repository": self.repository, "tag": self.tag, "digest": str(self.digest)}


@dataclass(frozen=True)
class Recorded:
    """What a snapshot of the target recorded: its id, the snapshots' source name, its tags."""

    snapshot: str
    source: str
    tags: Mapping[str, Mapping[str, Digest]]  # repository -> tag -> digest


# Takes a snapshot of *repositories* at the target (endpoint name, client) and returns
# what it recorded. Supplied by the caller, which knows the snapshot store.
Recorder = Callable[[str, RegistryClient, Sequence[str]], Awaitable[Recorded]]
# Called with a repository right before each DELETE there: returns while this node may
# still delete in it, else raises `LeaseLost` (a cluster's fence; see drd.state.leases).
Fence = Callable[[str], Awaitable[None]]


@dataclass
class TargetDeletions:
    """Deletions at one target in one pass: planned, done, kept, and why not."""

    planned: list[Deletion] = field(default_factory=list)
    deleted: list[Deletion] = field(default_factory=list)
    # A tag kept because another tag at the target names the same digest (that tag).
    kept: list[tuple[Deletion, str]] = field(default_factory=list)
    managed: int = 0  # tags the policy selects at the target: what the percentage is of
    braked: str = ""
    snapshot: str = ""  # the snapshot that recorded what was deleted
    snapshot_source: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        """Nothing held back by the brake and nothing failed."""
        return not self.braked and not self.error

    def to_json(self) -> dict[str, Any]:
        return {
            "planned": [d.to_json() for d in self.planned],
            "deleted": [d.to_json() for d in self.deleted],
            "kept": [{**d.to_json(), "shared_with": other} for d, other in self.kept],
            "managed": self.managed,
            "braked": self.braked,
            "snapshot": self.snapshot,
            "snapshot_source": self.snapshot_source,
            "error": self.error,
        }


def deletable(tag: str, selects: Callable[[str], bool]) -> bool:
    """
    Whether the policy manages *tag*: its tag filters select it and it is not attached.

    Attached tags (signatures, the referrers fallback index) follow their subject and
    are left alone: a target may keep a fallback index the source never had.
    """
    return not is_attached_tag(tag) and selects(tag)


def plan_deletions(
    repository: str,
    source_tags: Collection[str],
    target: Mapping[str, Digest],
    selects: Callable[[str], bool],
) -> tuple[list[Deletion], list[tuple[Deletion, str]]]:
    """
    Tags *target* holds that the source no longer lists, split into those to delete and
    those kept because a tag that stays names the same digest (with that tag). Pure.

    *target* maps every tag at the target to its digest.
    """
    gone = {
        tag: digest
        for tag, digest in target.items()
        if tag not in source_tags and deletable(tag, selects)
    }
    staying: dict[Digest, str] = {}
    for tag, digest in sorted(target.items()):
        if tag not in gone:
            staying.setdefault(digest, tag)
    delete, kept = [], []
    for tag, digest in sorted(gone.items()):
        doomed = Deletion(repository, tag, digest)
        if digest in staying:
            kept.append((doomed, staying[digest]))
        else:
            delete.append(doomed)
    return delete, kept


def brake_reason(count: int, managed: int, brake: Brake) -> str | None:
    """Why *count* deletions out of *managed* tags are too many for one pass; None if not."""
    if count > brake.max_count:
        return f"{count} deletions exceed max_deletions = {brake.max_count}"
    percent = 100.0 * count / managed if managed else 100.0
    if count and percent > brake.max_percent:
        return (
            f"{count} deletions are {percent:.1f}% of the {managed} tags managed at the "
            f"target, over max_deletion_percent = {brake.max_percent:g}"
        )
    return None


def confirm(
    planned: Sequence[Deletion], recorded: Recorded
) -> tuple[list[Deletion], list[tuple[Deletion, str]], list[Deletion]]:
    """
    The deletions *recorded* holds exactly (same tag, same digest), grouped by digest;
    those now sharing their digest with a tag that stays (and that tag); and those the
    snapshot does not hold as planned (the tag moved or went since). Pure.
    """
    go, kept, unrecorded = [], [], []
    doomed = {(d.repository, d.tag) for d in planned}
    for deletion in planned:
        tags = recorded.tags.get(deletion.repository, {})
        if tags.get(deletion.tag) != deletion.digest:
            unrecorded.append(deletion)
            continue
        other = next(
            (
                t
                for t, d in sorted(tags.items())
                if d == deletion.digest and (deletion.repository, t) not in doomed
            ),
            None,
        )
        if other is not None:
            kept.append((deletion, other))
        else:
            go.append(deletion)
    return go, kept, unrecorded


async def apply_deletions(
    target: str,
    client: RegistryClient,
    plan: TargetDeletions,
    brake: Brake,
    recorder: Recorder | None,
    *,
    dry_run: bool,
    fence: Fence | None = None,
) -> None:
    """
    Delete what *plan* holds at *target*, unless the brake holds; fills in *plan*.

    A plan that already failed (a target's tags could not be read) deletes nothing.
    A dry run checks the brake and stops. Otherwise the affected repositories are
    recorded by *recorder* first; its failure deletes nothing (``error``). Each
    recorded digest is then deleted once (removing its planned tags), each DELETE
    right after *fence* allowed it: when the fence refuses (`LeaseLost`: another node
    has the repository now), nothing more is deleted at *target* this pass.
    """
    if not plan.planned or plan.error:
        return
    reason = brake_reason(len(plan.planned), plan.managed, brake)
    if reason is not None:
        plan.braked = f"nothing deleted at {target}: {reason}"
        log.warning("replicate.deletions_braked", target=target, reason=plan.braked)
        return
    if dry_run:
        return
    if recorder is None:
        plan.error = "no snapshot store to record the deletions in: nothing deleted"
        return
    repositories = sorted({d.repository for d in plan.planned})
    try:
        recorded = await recorder(target, client, repositories)
    except DrdError as exc:
        plan.error = f"the snapshot before deleting failed, nothing deleted: {exc}"
        log.error("replicate.deletions_not_recorded", target=target, error=str(exc))  # noqa: TRY400
        return
    plan.snapshot, plan.snapshot_source = recorded.snapshot, recorded.source
    go, kept, unrecorded = confirm(plan.planned, recorded)
    plan.kept += kept
    for deletion in unrecorded:
        log.info("replicate.deletion_skipped", target=target, **deletion.to_json())
    done: set[tuple[str, Digest]] = set()
    for deletion in go:
        key = (deletion.repository, deletion.digest)
        try:
            if key not in done:
                if fence is not None:
                    await fence(deletion.repository)
                await client.delete_manifest(deletion.repository, deletion.digest)
                done.add(key)
        except LeaseLost as exc:
            plan.error = f"not deleting {deletion.repository}@{deletion.digest}: {exc}"
            log.warning("replicate.deletion_fenced", target=target, error=plan.error)
            return
        except DrdError as exc:
            plan.error = f"deleting {deletion.repository}@{deletion.digest} failed: {exc}"
            log.error("replicate.deletion_failed", target=target, error=plan.error)  # noqa: TRY400
            return
        plan.deleted.append(deletion)
        log.info("replicate.deleted", target=target, snapshot=plan.snapshot, **deletion.to_json())
