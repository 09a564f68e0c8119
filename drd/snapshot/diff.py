"""PURE. What changed between two snapshots: repositories, tags added, removed, moved."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drd.oci.digest import Digest
from drd.snapshot.model import Snapshot


@dataclass(frozen=True, slots=True)
class TagChange:
    """One tag that differs between two snapshots."""

    repository: str
    tag: str
    before: Digest | None  # None: added
    after: Digest | None  # None: removed

    @property
    def kind(self) -> str:
        """``added``, ``removed`` or ``moved``."""
        if self.before is None:
            return "added"
        if self.after is None:
            return "removed"
        return "moved"


@dataclass(frozen=True)
class SnapshotDiff:
    """What changed from *old* to *new*: repositories, tags, and manifests new to *new*."""

    old: str
    new: str
    repositories_added: tuple[str, ...]
    repositories_removed: tuple[str, ...]
    tags: tuple[TagChange, ...]
    manifests_added: tuple[Digest, ...]
    manifests_removed: tuple[Digest, ...]

    def of_kind(self, kind: str) -> list[TagChange]:
        """The tag changes of one kind."""
        return [c for c in self.tags if c.kind == kind]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "old": self.old,
            "new": self.new,
            "repositories_added": list(self.repositories_added),
            "repositories_removed": list(self.repositories_removed),
            "tags": {
                kind: [
                    {
                        "repository": c.repository,
                        "tag": c.tag,
                        "before": str(c.before) if c.before else None,
                        "after": str(c.after) if c.after else None,
                    }
                    for c in self.of_kind(kind)
                ]
                for kind in ("added", "removed", "moved")
            },
            "manifests_added": [str(d) for d in self.manifests_added],
            "manifests_removed": [str(d) for d in self.manifests_removed],
        }


def diff(old: Snapshot, new: Snapshot) -> SnapshotDiff:
    """Tags added, removed and moved from *old* to *new*, and the manifest digests new to it."""
    changes: list[TagChange] = []
    for name in sorted(old.repositories.keys() | new.repositories.keys()):
        before = old.repositories[name].tags if name in old.repositories else {}
        after = new.repositories[name].tags if name in new.repositories else {}
        for tag in sorted(before.keys() | after.keys()):
            b, a = before.get(tag), after.get(tag)
            if b != a:
                changes.append(TagChange(name, tag, b, a))
    return SnapshotDiff(
        old=old.id,
        new=new.id,
        repositories_added=tuple(sorted(new.repositories.keys() - old.repositories.keys())),
        repositories_removed=tuple(sorted(old.repositories.keys() - new.repositories.keys())),
        tags=tuple(changes),
        manifests_added=tuple(sorted(new.manifests.keys() - old.manifests.keys())),
        manifests_removed=tuple(sorted(old.manifests.keys() - new.manifests.keys())),
    )
