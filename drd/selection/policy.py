"""A replication policy with every default resolved: what engines need to select and copy."""

from __future__ import annotations

from dataclasses import dataclass

from drd.selection.filters import RepoFilter, TagFilter


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
