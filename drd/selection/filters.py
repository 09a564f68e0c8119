"""Repository globs and tag regexes: what a replication policy selects. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from drd.oci.referrers import is_attached_tag


@lru_cache(maxsize=1024)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """``**`` crosses ``/``; ``*`` and ``?`` stay within one path component."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("^" + "".join(out) + "$")


def glob_match(pattern: str, name: str) -> bool:
    """Whether repository *name* matches *pattern* (``team-a/**``, ``base/*``)."""
    return _glob_regex(pattern).fullmatch(name) is not None


def is_literal(pattern: str) -> bool:
    """A pattern with no wildcard names exactly one repository."""
    return not any(c in pattern for c in "*?[")


@dataclass(frozen=True)
class RepoFilter:
    """Include globs (None: everything) minus exclude globs."""

    include: tuple[str, ...] | None
    exclude: tuple[str, ...] = ()

    def __call__(self, name: str) -> bool:
        if any(glob_match(p, name) for p in self.exclude):
            return False
        return self.include is None or any(glob_match(p, name) for p in self.include)

    def literal_names(self) -> list[str] | None:
        """The repositories to visit without a catalog, when every include is literal."""
        if self.include is None or not all(is_literal(p) for p in self.include):
            return None
        return [p for p in self.include if self(p)]


@dataclass(frozen=True)
class TagFilter:
    """Include regexes (None: every tag) minus exclude regexes; attached tags never match."""

    include: tuple[str, ...] | None
    exclude: tuple[str, ...] = ()

    def __call__(self, tag: str) -> bool:
        return not is_attached_tag(tag) and self.matches(tag)

    def matches(self, tag: str) -> bool:
        """The regexes alone: for an attached-looking tag found to hold something else."""
        if any(re.search(p, tag) for p in self.exclude):
            return False
        return self.include is None or any(re.search(p, tag) for p in self.include)

    def select(self, tags: Iterable[str]) -> list[str]:
        """The selected tags, sorted."""
        return sorted(t for t in tags if self(t))


def tag_filter(include: Sequence[str] | None, exclude: Sequence[str]) -> TagFilter:
    """Build a TagFilter from config lists."""
    return TagFilter(tuple(include) if include is not None else None, tuple(exclude))
