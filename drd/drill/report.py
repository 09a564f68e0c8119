"""
DrillReport: what a drill did and found, and its JSON form (machines). The forms for
people (text, Markdown, HTML) are rendered by `drd.drill.render`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from drd import __version__
from drd.drill.judge import Judgement
from drd.drill.plan import Volume
from drd.errors import DrdError
from drd.replica.check import TagCheck
from drd.timeline import Phase

Mode = Literal["restore", "replica"]


@dataclass(frozen=True, slots=True)
class Failure:
    """One thing that did not check out: where (phase, repository, tag), which digest, why."""

    phase: str
    repository: str
    digest: str
    reason: str
    tag: str = ""

    def to_json(self) -> dict[str, str]:
        """A JSON-ready view."""
        return {
            "phase": self.phase,
            "repository": self.repository,
            "tag": self.tag,
            "digest": self.digest,
            "reason": self.reason,
        }


@dataclass
class RepositoryResult:
    """What the drill checked in one repository."""

    repository: str  # the name in the snapshot (or at the source)
    target: str  # where it was checked: the drill repository, or the replica's
    tags_expected: int = 0
    tags_ok: int = 0
    manifests: int = 0
    manifest_bytes: int = 0
    blobs: int = 0
    blob_bytes: int = 0
    signed_ok: int = 0
    unsigned: int = 0
    signature_failures: int = 0
    failures: int = 0
    unchecked: int = 0  # release digests no trust policy applied to: signatures not checked

    @property
    def ok(self) -> bool:
        """Every check in this repository passed."""
        return self.failures == 0 and self.tags_ok == self.tags_expected

    @property
    def status(self) -> str:
        """
        ``failed``; ``unsigned`` when some release tag carries no signature, or no trust
        policy applies so none was checked (whole, but not proven authentic); else ``ok``.
        """
        if not self.ok:
            return "failed"
        return "unsigned" if self.unsigned or self.unchecked else "ok"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "repository": self.repository,
            "target": self.target,
            "ok": self.ok,
            "status": self.status,
            "tags_expected": self.tags_expected,
            "tags_ok": self.tags_ok,
            "manifests": self.manifests,
            "manifest_bytes": self.manifest_bytes,
            "blobs": self.blobs,
            "blob_bytes": self.blob_bytes,
            "signed_ok": self.signed_ok,
            "unsigned": self.unsigned,
            "signature_failures": self.signature_failures,
            "unchecked": self.unchecked,
            "failures": self.failures,
        }


@dataclass
class Readback:
    """What the drill pulled and checked: the numbers its RTO measurement covers."""

    manifests: int = 0
    manifest_bytes: int = 0
    blobs: int = 0
    blob_bytes: int = 0
    tags: int = 0
    tags_ok: int = 0
    signed_ok: int = 0
    unsigned: int = 0
    signature_failures: int = 0
    unchecked: int = 0

    @property
    def bytes(self) -> int:
        """Manifest plus blob bytes pulled."""
        return self.manifest_bytes + self.blob_bytes

    def to_json(self) -> dict[str, int]:
        """A JSON-ready view."""
        return {**self.__dict__, "bytes": self.bytes}


@dataclass
class DrillReport:
    """One drill, start to verdict. Built by `drd.drill.runner`; rendered here."""

    mode: Mode
    id: str
    target: str  # the drill endpoint (restore) or the replica endpoint (replica)
    source: str  # the snapshot's source endpoint (restore) or the primary (replica)
    started_at: dt.datetime
    snapshot: str = ""
    snapshot_taken_at: dt.datetime | None = None
    namespace: str = ""
    trust: str = ""  # the trust policy signatures were verified against; "" for none
    sample: int = 0
    seed: int | None = None
    release_tags: int = 0  # release tags in the snapshot, or selected at the source
    chosen: int = 0  # release tags this drill covered
    finished_at: dt.datetime | None = None
    phases: list[Phase] = field(default_factory=list)
    repositories: list[RepositoryResult] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    checks: list[TagCheck] = field(default_factory=list)
    scope: Volume = field(default_factory=Volume)
    whole: Volume = field(default_factory=Volume)
    readback: Readback = field(default_factory=Readback)
    restore: dict[str, Any] = field(default_factory=dict)
    cleanup: dict[str, Any] = field(default_factory=dict)
    judgement: Judgement | None = None
    notes: list[str] = field(default_factory=list)
    error: str = ""
    # The error behind ``error``: what callers decide on (never parse ``error``).
    exception: DrdError | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """The drill passed: no failure, no error, RTO and RPO within their targets."""
        return (
            self.judgement is not None
            and self.judgement.passed
            and not self.failures
            and not self.error
        )

    @property
    def verdict(self) -> str:
        """``PASSED`` or ``FAILED``."""
        return "PASSED" if self.ok else "FAILED"

    @property
    def duration_s(self) -> float:
        """Wall-clock time from start to finish."""
        if self.finished_at is None:
            return sum(p.duration_s for p in self.phases)
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def title(self) -> str:
        """What was drilled, in a few words."""
        if self.mode == "replica":
            return f"Replica drill of {self.target} against {self.source}"
        return f"Restore drill of snapshot {self.snapshot} into {self.target}"

    @property
    def file_stem(self) -> str:
        """``drill-<UTC start>-<id>``: report files sort by time."""
        return f"drill-{self.started_at.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}-{self.id}"

    def summary(self) -> dict[str, Any]:
        """Counts and the verdict: the ``drill.run_finished`` fields."""
        judgement = self.judgement
        return {
            "mode": self.mode,
            "ok": self.ok,
            "snapshot": self.snapshot,
            "tags": self.readback.tags,
            "manifests": self.readback.manifests,
            "blobs": self.readback.blobs,
            "bytes": self.readback.bytes,
            "failures": len(self.failures),
            "rto_estimate_s": (
                round(judgement.rto.value_s, 3) if judgement and judgement.rto else None
            ),
            "rpo_s": (
                round(judgement.rpo_s, 3) if judgement and judgement.rpo_s is not None else None
            ),
            "duration_s": round(self.duration_s, 3),
        }

    def to_json(self) -> dict[str, Any]:
        """The machine form of the report."""
        return {
            "kind": "drd-drill-report",
            "schema_version": 1,
            "mode": self.mode,
            "id": self.id,
            "ok": self.ok,
            "verdict": self.verdict,
            "target": self.target,
            "source": self.source,
            "snapshot": self.snapshot,
            "snapshot_taken_at": _iso(self.snapshot_taken_at),
            "namespace": self.namespace,
            "trust": self.trust,
            "sample": self.sample,
            "seed": self.seed,
            "release_tags": self.release_tags,
            "chosen": self.chosen,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_s": round(self.duration_s, 3),
            "judgement": self.judgement.to_json() if self.judgement else None,
            "scope": self.scope.to_json(),
            "whole": self.whole.to_json(),
            "readback": self.readback.to_json(),
            "restore": self.restore,
            "cleanup": self.cleanup,
            "phases": [p.to_json() for p in self.phases],
            "repositories": [r.to_json() for r in self.repositories],
            "failures": [f.to_json() for f in self.failures],
            "checks": [c.to_json() for c in self.checks],
            "notes": list(self.notes),
            "error": self.error,
            "drd_version": __version__,
        }


def _iso(when: dt.datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
