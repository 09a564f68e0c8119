"""
Judge a drill against its RTO and RPO targets. Pure: no I/O, no clock.

RPO is how much would be lost right now: the age of the newest snapshot (a
restore drill), or the replication lag of the replica (a replica drill).

RTO is how long getting the registry back would take. A drill measures its own
restore and read-back time for its scope; `estimate_rto` extrapolates that to the
whole registry by the ratio of bytes and of objects (manifests plus blobs), taking
the larger ratio so that a drill dominated by per-object latency is not scaled by
bytes alone, nor a byte-heavy one by objects alone. The method is stated in words
in every report.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from drd.drill.plan import Volume
from drd.timeline import duration


@dataclass(frozen=True, slots=True)
class Targets:
    """The objectives a drill is judged against, in seconds."""

    rto_s: float
    rpo_s: float


@dataclass(frozen=True, slots=True)
class RtoEstimate:
    """The whole-registry RTO extrapolated from a drill, with the ratios and the method."""

    measured_s: float  # restore + read-back of the drill's scope
    value_s: float  # extrapolated to the whole registry
    scale: float  # the factor applied: max(byte ratio, object ratio), at least 1
    byte_ratio: float
    object_ratio: float
    method: str


@dataclass(frozen=True, slots=True)
class Judgement:
    """The verdict: passed only with no failure, RTO and RPO both within their targets."""

    passed: bool
    rto: RtoEstimate | None
    rto_target_s: float
    rpo_s: float | None
    rpo_target_s: float
    rpo_method: str
    reasons: tuple[str, ...]  # why it did not pass; empty when it did

    @property
    def rto_met(self) -> bool:
        """Whether the RTO estimate is within its target."""
        return self.rto is not None and self.rto.value_s <= self.rto_target_s

    @property
    def rpo_met(self) -> bool:
        """Whether the measured RPO is within its target."""
        return self.rpo_s is not None and self.rpo_s <= self.rpo_target_s

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        rto = self.rto
        return {
            "passed": self.passed,
            "reasons": list(self.reasons),
            "rto": {
                "target_s": self.rto_target_s,
                "estimate_s": None if rto is None else round(rto.value_s, 3),
                "measured_s": None if rto is None else round(rto.measured_s, 3),
                "scale": None if rto is None else round(rto.scale, 4),
                "byte_ratio": None if rto is None else round(rto.byte_ratio, 4),
                "object_ratio": None if rto is None else round(rto.object_ratio, 4),
                "met": self.rto_met,
                "method": "" if rto is None else rto.method,
            },
            "rpo": {
                "target_s": self.rpo_target_s,
                "measured_s": None if self.rpo_s is None else round(self.rpo_s, 3),
                "met": self.rpo_met,
                "method": self.rpo_method,
            },
        }


def size(n: int) -> str:
    """Bytes in binary units: ``512 B``, ``1.5 KiB``, ``3.2 GiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def _ratio(whole: int, part: int) -> float:
    if part <= 0:
        return 1.0 if whole <= 0 else float(whole)
    return whole / part


def estimate_rto(measured_s: float, scope: Volume, whole: Volume) -> RtoEstimate:
    """
    Extrapolate *measured_s* (restore + read-back of *scope*) to *whole*.

    ``estimate = measured * max(whole bytes / scope bytes, whole objects / scope objects)``,
    never below the measurement itself.
    """
    byte_ratio = _ratio(whole.bytes, scope.bytes)
    object_ratio = _ratio(whole.objects, scope.objects)
    scale = max(byte_ratio, object_ratio, 1.0)
    value = measured_s * scale
    if scale == 1.0:
        method = (
            f"measured: the drill restored and read back the whole snapshot "
            f"({whole.objects} objects, {size(whole.bytes)}) in {duration(measured_s)}"
        )
    else:
        method = (
            f"extrapolated: restore + read-back of the drill's scope ({scope.objects} objects, "
            f"{size(scope.bytes)}) took {duration(measured_s)}; the whole snapshot holds "
            f"{whole.objects} objects and {size(whole.bytes)} (x{object_ratio:.2f} by objects, "
            f"x{byte_ratio:.2f} by bytes); estimate = measured x {scale:.2f}, the larger ratio"
        )
    return RtoEstimate(measured_s, value, scale, byte_ratio, object_ratio, method)


def snapshot_rpo(newest_taken_at: dt.datetime | None, now: dt.datetime) -> tuple[float | None, str]:
    """The RPO of a snapshot-based recovery: the newest snapshot's age at *now*, and the method."""
    if newest_taken_at is None:
        return None, "no snapshot of the source exists: everything would be lost"
    age = max(0.0, (now - newest_taken_at).total_seconds())
    stamp = newest_taken_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return age, f"age of the newest snapshot (taken {stamp}) at the time of the drill"


def judge(
    *,
    rto: RtoEstimate | None,
    rpo_s: float | None,
    rpo_method: str,
    targets: Targets,
    failures: int,
    complete: bool = True,
    error: str = "",
) -> Judgement:
    """
    The verdict of one drill: every check passed, the drill ran to its end, and the
    RTO estimate and the RPO are within *targets*. Each unmet condition is a reason.
    """
    reasons: list[str] = []
    if error:
        reasons.append(f"the drill could not run to its end: {error}")
    elif not complete:
        reasons.append("the drill did not run to its end")
    if failures:
        reasons.append(f"{failures} check{'s' if failures != 1 else ''} failed")
    if rto is None:
        reasons.append("no restore time was measured")
    elif rto.value_s > targets.rto_s:
        reasons.append(
            f"RTO estimate {duration(rto.value_s)} exceeds the target {duration(targets.rto_s)}"
        )
    if rpo_s is None:
        reasons.append(f"RPO unknown: {rpo_method}")
    elif rpo_s > targets.rpo_s:
        reasons.append(f"RPO {duration(rpo_s)} exceeds the target {duration(targets.rpo_s)}")
    return Judgement(
        passed=not reasons,
        rto=rto,
        rto_target_s=targets.rto_s,
        rpo_s=rpo_s,
        rpo_target_s=targets.rpo_s,
        rpo_method=rpo_method,
        reasons=tuple(reasons),
    )


def replica_rpo(
    lag: tuple[float | None, str] | None, *, compared: bool, failing: int
) -> tuple[float | None, str]:
    """
    A replica drill's RPO and how it was found: the replication lag when the history
    knows it; else 0 when the replica held every source tag, unknown when it could not
    be compared or *failing* tags differ (nothing says since when).
    """
    if lag is not None and lag[0] is not None:
        return lag
    if not compared:
        return None, "unknown: the replica could not be compared"
    if failing:
        return None, (
            f"unknown: {failing} tag(s) are not at the replica as at the source, and "
            "no replication history says since when"
        )
    return 0.0, "the replica held every source tag when compared"
