"""PolicyReport values for bookkeeping tests: what a replication run hands the daemon."""

from __future__ import annotations

from collections.abc import Iterable

from drd.errors import DrdError
from drd.replicate.copier import CopyStats
from drd.replicate.report import ItemResult, PolicyReport

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def item(
    tag: str,
    outcome: str,
    *,
    repository: str = "team/app",
    target: str = "dst",
    reason: str = "",
    error: str = "",
    moved_from: str = "",
) -> ItemResult:
    """One tag's result at one target."""
    return ItemResult(repository, tag, target, DIGEST_A, outcome, reason, moved_from, error=error)


def report(
    items: Iterable[ItemResult] = (),
    *,
    policy: str = "prod",
    targets: Iterable[str] = ("dst",),
    error: DrdError | None = None,
    dry_run: bool = False,
    stats: CopyStats | None = None,
    duration_s: float = 1.5,
) -> PolicyReport:
    """A finished pass of *policy* with *items*, the same blob stats at every target."""
    result = PolicyReport(policy=policy, source="src", dry_run=dry_run)
    for target in targets:
        result.stats[target] = stats or CopyStats()
    result.items.extend(items)
    if error is not None:
        result.exception = error
        result.error = f"{type(error).__name__}: {error}"
    result.duration_s = duration_s
    return result
