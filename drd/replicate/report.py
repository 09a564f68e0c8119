"""Replication results: one ItemResult per (repository, tag, target), rolled into a report."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from drd.errors import DrdError
from drd.oci.referrers import subject_of_tag
from drd.replicate.copier import CopyStats

if TYPE_CHECKING:
    from drd.replicate.deletions import TargetDeletions

OUTCOMES = ("copied", "skipped", "failed", "drift", "rejected", "planned")


@dataclass(frozen=True)
class ItemResult:
    """What happened to one tag at one target."""

    repository: str
    tag: str
    target: str
    digest: str
    outcome: str  # one of OUTCOMES
    reason: str = ""
    moved_from: str = ""
    key: str = ""  # fingerprint of the key that verified it, when verified
    error: str = ""  # error class name for failures, a bounded metric label


def item_json(item: ItemResult) -> dict[str, Any]:
    """
    The machine form of *item*. A signature, attestation, SBOM or referrers tag also
    names its ``subject``: the digest of the image it belongs to (text folds it there).
    """
    doc = asdict(item)
    if (subject := subject_of_tag(item.tag)) is not None:
        doc["subject"] = str(subject)
    return doc


@dataclass
class PolicyReport:
    """One policy's pass: every item, blob counts per target, duration."""

    policy: str
    source: str
    dry_run: bool = False
    items: list[ItemResult] = field(default_factory=list)
    stats: dict[str, CopyStats] = field(default_factory=dict)
    repositories: int = 0
    # Repositories another node of the cluster had claimed (or just did): not this pass's.
    elsewhere: int = 0
    elsewhere_repositories: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    # What went wrong at the source: unreachable (the pass ended there), or repositories
    # it could not serve (the first one, and how many; the others were still copied).
    error: str = ""
    # The error itself behind ``error`` (the first one): what callers decide on.
    exception: DrdError | None = field(default=None, repr=False, compare=False)
    # Targets that could not be reached even after retries, with why: the rest of the
    # pass failed their items without asking them again. The other targets went on.
    unreachable: dict[str, str] = field(default_factory=dict)
    # propagate_deletions: per target, what was planned, deleted, kept, or held back.
    deletions: dict[str, TargetDeletions] = field(default_factory=dict)

    def count(self, outcome: str) -> int:
        return sum(1 for item in self.items if item.outcome == outcome)

    @property
    def ok(self) -> bool:
        """
        No item failed, every target answered, the pass completed, and no deletion was
        held back by the brake or failed. Items the trust policy rejected do not count
        against it: refusing them is the policy working (``rejected`` says how many).
        """
        if self.error or self.unreachable:
            return False
        if not all(d.ok for d in self.deletions.values()):
            return False
        return self.count("failed") == 0

    @property
    def rejected(self) -> int:
        """How many items the trust policy rejected (never written to their target)."""
        return self.count("rejected")

    @property
    def problem(self) -> str:
        """The pass's own error, else the targets it found unreachable; "" when neither."""
        unreachable = sorted(self.unreachable.items())
        held = [d.braked or d.error for d in self.deletions.values() if not d.ok]
        return self.error or "; ".join(
            [f"target {t} unreachable: {why}" for t, why in unreachable] + held
        )

    @property
    def bytes_copied(self) -> int:
        return sum(s.bytes_copied for s in self.stats.values())

    def summary(self) -> dict[str, Any]:
        """Counts by outcome plus bytes and duration: the canonical log line's fields."""
        counts = Counter(item.outcome for item in self.items)
        return {
            **{outcome: counts.get(outcome, 0) for outcome in OUTCOMES},
            "moved": sum(1 for i in self.items if i.moved_from and i.outcome == "copied"),
            "deleted": sum(len(d.deleted) for d in self.deletions.values()),
            "bytes": self.bytes_copied,
            "repositories": self.repositories,
            **({"elsewhere": self.elsewhere} if self.elsewhere else {}),
            "duration_s": round(self.duration_s, 3),
        }

    def to_json(self) -> dict[str, Any]:
        """The machine form of the report (``--json``)."""
        return {
            "policy": self.policy,
            "source": self.source,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "rejected": self.rejected,
            "error": self.error,
            "unreachable": dict(self.unreachable),
            "summary": self.summary(),
            "targets": {name: asdict(stats) for name, stats in self.stats.items()},
            "items": [item_json(item) for item in self.items],
            "deletions": {name: d.to_json() for name, d in self.deletions.items()},
        }
