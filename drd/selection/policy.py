"""A replication policy with every default resolved: what engines need to select and copy."""

from __future__ import annotations

from dataclasses import dataclass, field

from drd.selection.filters import RepoFilter, TagFilter


@dataclass(frozen=True)
class Brake:
    """Propagated deletions: at most this many, and this % of the managed tags, per pass."""

    max_count: int = 100
    max_percent: float = 10.0


@dataclass(frozen=True)
class Policy:
    """A replication policy with every default resolved: what the runner needs, nothing more."""

    name: str
    repositories: RepoFilter
    tags: TagFilter
    referrers: bool = True
    verify_after_copy: bool = True
    immutable_tags: bool = False
    concurrency: int = 8
    blob_concurrency: int = 8
    propagate_deletions: bool = False
    brake: Brake = field(default_factory=Brake)
