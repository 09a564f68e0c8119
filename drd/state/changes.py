"""
What one replication run changes in the state database, decided once for both backends
(`drd.state.sqlite`, `drd.state.postgres`), which only say it in their own SQL.

Failed items become (or stay) pending; copied, up-to-date, drifted and rejected ones
stop being pending. A drifted item is recorded as drift; a copied or up-to-date one
clears its drift. A run that completed its pass moves ``last_clean``; a complete full
pass also moves ``last_success`` at each target where nothing failed (rejections are
the trust policy working, not failures) and forgets the pending and drift entries it
no longer saw.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from drd.replicate.report import PolicyReport

# (policy, target, repository, tag): the key of a pending or drift row.
Key = tuple[str, str, str, str]
Tag = tuple[str, str]

_CLEARS_PENDING = frozenset({"copied", "skipped", "drift", "rejected"})
_CLEARS_DRIFT = frozenset({"copied", "skipped"})


@dataclass(frozen=True, slots=True)
class Step:
    """
    One row change, in the order the run's items came: ``pend`` (params: key, since),
    ``unpend`` (key), ``drift`` (key, source digest, target digest, first seen, last
    seen) or ``undrift`` (key).
    """

    kind: Literal["pend", "unpend", "drift", "undrift"]
    params: tuple[object, ...]


@dataclass(slots=True)
class ReplicationChanges:
    """The row changes of one replication run of one policy."""

    policy: str
    targets: tuple[str, ...]
    started_at: float
    finished_at: float
    full: bool
    complete: bool
    steps: list[Step] = field(default_factory=list)
    failed: dict[str, set[Tag]] = field(default_factory=dict)
    drifted: dict[str, set[Tag]] = field(default_factory=dict)

    def sync_rows(self) -> list[tuple[str, str, float]]:
        """(policy, target, first seen) for every target the run reached."""
        return [(self.policy, t, self.started_at) for t in self.targets]

    def watermarks(self) -> list[tuple[str, bool]]:
        """
        Per target, after a complete pass: whether ``last_success`` moves (a full pass
        with nothing failed there); ``last_clean`` moves for every one of them.
        """
        if not self.complete:
            return []
        return [(t, self.full and not self.failed.get(t)) for t in self.targets]

    def forgotten_pending(self, target: str, older: Iterable[Tag]) -> list[Key]:
        """Of the *older* pending tags at *target*, the ones a full pass no longer saw fail."""
        failed = self.failed.get(target, set())
        return [(self.policy, target, r, t) for r, t in older if (r, t) not in failed]

    def resolved_drift(self, target: str, drifting: Iterable[Tag]) -> list[Key]:
        """Of the *drifting* tags at *target*, the ones a full pass no longer saw drift."""
        drifted = self.drifted.get(target, set())
        return [(self.policy, target, r, t) for r, t in drifting if (r, t) not in drifted]


def replication_changes(
    report: PolicyReport, *, full: bool, started_at: float, finished_at: float
) -> ReplicationChanges:
    """Decide what *report* changes; `ReplicationChanges.complete` is False for a broken pass."""
    targets = tuple(report.stats)
    changes = ReplicationChanges(
        report.policy,
        targets,
        started_at,
        finished_at,
        full,
        complete=not report.error,
        failed={t: set() for t in targets},
        drifted={t: set() for t in targets},
    )
    for item in report.items:
        key: Key = (report.policy, item.target, item.repository, item.tag)
        tag = (item.repository, item.tag)
        if item.outcome == "failed":
            changes.failed.setdefault(item.target, set()).add(tag)
            changes.steps.append(Step("pend", (*key, started_at)))
        elif item.outcome in _CLEARS_PENDING:
            changes.steps.append(Step("unpend", key))
        if item.outcome == "drift":
            changes.drifted.setdefault(item.target, set()).add(tag)
            seen = (finished_at, finished_at)
            changes.steps.append(Step("drift", (*key, item.digest, item.moved_from, *seen)))
        elif item.outcome in _CLEARS_DRIFT:
            changes.steps.append(Step("undrift", key))
    return changes
