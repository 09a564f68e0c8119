"""
Plan a restore: what to recreate from a snapshot, and in what order. Pure.

For each selected repository the plan lists the manifests to make present, in
levels where every manifest comes after its children (and after its subject,
when the snapshot holds it), the blobs those manifests need, and each tag with
what it does at the target: ``create`` (missing there), ``move`` (the target's
tag points elsewhere; it is moved back) or ``keep`` (already right).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from drd.errors import InvalidReference, SnapshotCorrupt
from drd.oci.digest import Digest
from drd.oci.ref import validate_repository
from drd.oci.referrers import subject_of_tag
from drd.selection.filters import glob_match
from drd.snapshot.model import RepositoryRecord, Snapshot

TagAction = Literal["create", "move", "keep"]


@dataclass(frozen=True, slots=True)
class TagStep:
    """One tag at the target: what it should point at, and what it points at now."""

    tag: str
    digest: Digest
    action: TagAction
    current: Digest | None = None


@dataclass(frozen=True)
class RepositoryPlan:
    """One repository: manifests by level (children first), the blobs they need, the tags."""

    repository: str  # as in the snapshot
    target: str  # where it goes: repository_prefix + repository
    levels: tuple[tuple[Digest, ...], ...]
    blobs: tuple[Digest, ...]
    tags: tuple[TagStep, ...]

    @property
    def manifests(self) -> tuple[Digest, ...]:
        """Every manifest, children before parents."""
        return tuple(d for level in self.levels for d in level)


@dataclass(frozen=True)
class RestorePlan:
    """The whole restore, repository by repository."""

    snapshot: str
    repositories: tuple[RepositoryPlan, ...]

    def counts(self) -> dict[str, int]:
        """How many repositories, manifests, blobs and tags of each action."""
        steps = [t for r in self.repositories for t in r.tags]
        return {
            "repositories": len(self.repositories),
            "manifests": sum(len(r.manifests) for r in self.repositories),
            "blobs": len({b for r in self.repositories for b in r.blobs}),
            "tags": len(steps),
            "create": sum(t.action == "create" for t in steps),
            "move": sum(t.action == "move" for t in steps),
            "keep": sum(t.action == "keep" for t in steps),
        }

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "snapshot": self.snapshot,
            "counts": self.counts(),
            "repositories": [
                {
                    "repository": r.repository,
                    "target": r.target,
                    "manifests": [str(d) for d in r.manifests],
                    "blobs": [str(b) for b in r.blobs],
                    "tags": [
                        {
                            "tag": t.tag,
                            "digest": str(t.digest),
                            "action": t.action,
                            "current": str(t.current) if t.current else None,
                        }
                        for t in r.tags
                    ],
                }
                for r in self.repositories
            ],
        }


@dataclass(frozen=True)
class Selection:
    """What to restore: repository globs, a tag regex, or exact (repository, tag) pairs."""

    repositories: tuple[str, ...] | None = None  # globs; None: every repository
    tag_pattern: str | None = None  # re.search over release tags; None: every tag
    only: frozenset[tuple[str, str]] | None = None  # exact pairs, as a drill samples them

    def __post_init__(self) -> None:
        if self.tag_pattern is not None:
            try:
                re.compile(self.tag_pattern)
            except re.error as exc:
                raise InvalidReference(f"tag pattern {self.tag_pattern!r}: {exc}") from exc

    @property
    def every_tag(self) -> bool:
        """No tag narrowing: the whole repository comes back, untagged content included."""
        return self.tag_pattern is None and self.only is None

    def wants_repository(self, name: str) -> bool:
        """Whether repository *name* is selected."""
        if self.only is not None and not any(r == name for r, _ in self.only):
            return False
        return self.repositories is None or any(glob_match(p, name) for p in self.repositories)

    def wants_tag(self, repository: str, tag: str) -> bool:
        """Whether release tag *tag* of *repository* is selected (attached tags ride along)."""
        if self.only is not None and (repository, tag) not in self.only:
            return False
        return self.tag_pattern is None or re.search(self.tag_pattern, tag) is not None


def target_name(prefix: str, repository: str) -> str:
    """*repository* under *prefix* (``drill-1/`` + ``team/app``), validated."""
    return validate_repository(f"{prefix}{repository}")


def select(snapshot: Snapshot, selection: Selection) -> dict[str, dict[str, Digest]]:
    """
    The tags to restore per repository: the selected release tags, plus every attached
    tag (``sha256-<hex>.sig`` and friends) whose subject comes back with them.
    """
    out: dict[str, dict[str, Digest]] = {}
    for name in sorted(snapshot.repositories):
        if not selection.wants_repository(name):
            continue
        repo = snapshot.repositories[name]
        if selection.every_tag:
            out[name] = dict(repo.tags)
            continue
        chosen = {
            tag: d
            for tag, d in repo.tags.items()
            if subject_of_tag(tag) is None and selection.wants_tag(name, tag)
        }
        closure = _closure(snapshot, repo, set(chosen.values()))
        grew = True
        while grew:
            grew = False
            for tag, d in repo.tags.items():
                subject = subject_of_tag(tag)
                if tag not in chosen and subject is not None and subject in closure:
                    chosen[tag] = d
                    closure |= _closure(snapshot, repo, {d})
                    grew = True
        if chosen:
            out[name] = chosen
    return out


def _closure(snapshot: Snapshot, repo: RepositoryRecord, roots: set[Digest]) -> set[Digest]:
    """*roots*, their children, and their API referrers, recursively."""
    seen: set[Digest] = set()
    stack = list(roots)
    while stack:
        digest = stack.pop()
        if digest in seen:
            continue
        seen.add(digest)
        record = snapshot.manifests.get(digest)
        if record is not None:
            stack.extend(record.children)
        stack.extend(repo.referrers.get(digest, ()))
    return seen


def plan_restore(
    snapshot: Snapshot,
    selection: Selection,
    target_tags: Mapping[str, Mapping[str, Digest]],
    *,
    repository_prefix: str = "",
) -> RestorePlan:
    """
    Decide what restoring *selection* of *snapshot* must do. Pure: no I/O, no clock.

    *target_tags* maps each target repository name to the tags it has now (only the
    tags the snapshot names matter). Tags the target has and the snapshot lacks are
    left alone. Raises `InvalidReference` for a prefix that makes an invalid name and
    `SnapshotCorrupt` for a cycle in the manifest graph.
    """
    plans: list[RepositoryPlan] = []
    for name, tags in select(snapshot, selection).items():
        repo = snapshot.repositories[name]
        target = target_name(repository_prefix, name)
        if selection.every_tag:
            wanted = set(repo.manifests)
        else:
            wanted = _closure(snapshot, repo, set(tags.values()))
        wanted &= set(snapshot.manifests)
        current = target_tags.get(target, {})
        steps = []
        for tag, digest in sorted(tags.items()):
            now = current.get(tag)
            action: TagAction = "create" if now is None else "keep" if now == digest else "move"
            steps.append(TagStep(tag, digest, action, now))
        blobs = sorted({b for d in wanted for b in snapshot.manifests[d].blobs})
        plans.append(
            RepositoryPlan(
                repository=name,
                target=target,
                levels=_levels(snapshot, wanted),
                blobs=tuple(blobs),
                tags=tuple(steps),
            )
        )
    return RestorePlan(snapshot=snapshot.id, repositories=tuple(plans))


def _levels(snapshot: Snapshot, wanted: set[Digest]) -> tuple[tuple[Digest, ...], ...]:
    """Group *wanted* so each manifest's children and subject sit in an earlier level."""
    level: dict[Digest, int] = {}

    def deps(digest: Digest) -> list[Digest]:
        record = snapshot.manifests[digest]
        found = [c for c in record.children if c in wanted]
        if record.subject is not None and record.subject in wanted:
            found.append(record.subject)
        return found

    for root in sorted(wanted):
        if root in level:
            continue
        # Iterative depth-first walk: a hostile graph must not exhaust the stack.
        stack: list[tuple[Digest, int]] = [(root, 0)]
        on_path: set[Digest] = set()
        while stack:
            digest, state = stack.pop()
            if state == 0:
                if digest in level:
                    continue
                if digest in on_path:
                    raise SnapshotCorrupt(f"manifest {digest} depends on itself")
                on_path.add(digest)
                stack.append((digest, 1))
                for dep in deps(digest):
                    if dep in on_path:
                        raise SnapshotCorrupt(f"manifest {digest} depends on itself")
                    if dep not in level:
                        stack.append((dep, 0))
            else:
                on_path.discard(digest)
                level[digest] = 1 + max((level[d] for d in deps(digest)), default=-1)
    if not level:
        return ()
    out: list[list[Digest]] = [[] for _ in range(max(level.values()) + 1)]
    for digest, n in level.items():
        out[n].append(digest)
    return tuple(tuple(sorted(group)) for group in out)
