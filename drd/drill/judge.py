"""
Judge a drill against its RTO and RPO targets. Pure: no I/O, no clock.

RPO is how much would be lost right now: the age of the newest snapshot (a
restore drill), or the replication lag of the replica (a replica drill). The
worst-case RPO (`with_worst_rpo`) is the longest such exposure in the judged window;
both are judged against the target.

RTO is how long getting the registry back would take: an operator starting
``drd restore`` for everything and verifying it. `estimate_rto` builds it from the
drill's measured phases with the model of `drd.drill.estimate` (fixed costs once,
restore and read-back scaled by the larger of the growth in request waves and in
bytes). The method is stated in words in every report.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

from drd.drill.estimate import DrillTimes, WorstGap, describe, model_rto, size
from drd.drill.plan import Volume
from drd.timeline import duration

__all__ = [
    "Judgement",
    "RtoEstimate",
    "Targets",
    "estimate_rto",
    "judge",
    "replica_rpo",
    "size",
    "snapshot_rpo",
    "with_worst_rpo",
]


@dataclass(frozen=True, slots=True)
class Targets:
    """The objectives a drill is judged against, in seconds."""

    rto_s: float
    rpo_s: float


@dataclass(frozen=True, slots=True)
class RtoEstimate:
    """The whole-registry RTO extrapolated from a drill, with the ratios and the method."""

    measured_s: float  # restore + read-back of the drill's scope
    value_s: float  # fixed costs + the variable part scaled to the whole registry
    scale: float  # the factor applied to the variable part, at least 1
    byte_ratio: float
    object_ratio: float
    method: str
    fixed_s: float = 0.0  # start-up + loading the snapshot, paid once
    startup_s: float | None = None  # process start-up, when measured
    wave_ratio: float = 1.0  # growth in rounds of concurrent requests


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
    worst_rpo: WorstGap | None = None  # the longest exposure in the judged window
    worst_rpo_method: str = ""  # how it was found, or why it is unknown

    @property
    def rto_met(self) -> bool:
        """Whether the RTO estimate is within its target."""
        return self.rto is not None and self.rto.value_s <= self.rto_target_s

    @property
    def newest_rpo_met(self) -> bool:
        """Whether the RPO measured now (newest snapshot's age, or the lag) is within target."""
        return self.rpo_s is not None and self.rpo_s <= self.rpo_target_s

    @property
    def worst_rpo_met(self) -> bool:
        """Whether the worst case in the window, when known, is within the RPO target."""
        return self.worst_rpo is None or self.worst_rpo.seconds <= self.rpo_target_s

    @property
    def rpo_met(self) -> bool:
        """Whether the measured RPO and the worst case, when known, are within the target."""
        return self.newest_rpo_met and self.worst_rpo_met

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        rto, worst = self.rto, self.worst_rpo
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
                "wave_ratio": None if rto is None else round(rto.wave_ratio, 4),
                "fixed_s": None if rto is None else round(rto.fixed_s, 3),
                "startup_s": (
                    None if rto is None or rto.startup_s is None else round(rto.startup_s, 3)
                ),
                "met": self.rto_met,
                "method": "" if rto is None else rto.method,
            },
            "rpo": {
                "target_s": self.rpo_target_s,
                "measured_s": None if self.rpo_s is None else round(self.rpo_s, 3),
                "met": self.rpo_met,
                "method": self.rpo_method,
                "worst_met": self.worst_rpo_met,
                "worst_s": None if worst is None else round(worst.seconds, 3),
                "worst_from": None if worst is None else _iso(worst.start),
                "worst_to": None if worst is None else _iso(worst.end),
                "worst_method": self.worst_rpo_method,
            },
        }


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def estimate_rto(times: DrillTimes, scope: Volume, whole: Volume) -> RtoEstimate:
    """
    The RTO of restoring and verifying *whole*, from a drill of *scope* that took *times*:
    ``fixed + (restore + read-back) x max(wave ratio, byte ratio, 1)``.
    """
    model = model_rto(times, scope, whole)
    return RtoEstimate(
        measured_s=model.variable_s,
        value_s=model.value_s,
        scale=model.scale,
        byte_ratio=model.byte_ratio,
        object_ratio=model.object_ratio,
        method=describe(model, times, scope, whole),
        fixed_s=model.fixed_s,
        startup_s=times.startup_s,
        wave_ratio=model.wave_ratio,
    )


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


def with_worst_rpo(judgement: Judgement, worst: WorstGap | None, method: str) -> Judgement:
    """
    *judgement* with the worst-case RPO of the judged window added and judged: a gap
    longer than the RPO target fails the drill, as a newest snapshot that old would.
    """
    reasons = list(judgement.reasons)
    if worst is not None and worst.seconds > judgement.rpo_target_s:
        reasons.append(
            f"worst-case RPO {duration(worst.seconds)} exceeds the target "
            f"{duration(judgement.rpo_target_s)}: {method}"
        )
    return dataclasses.replace(
        judgement,
        passed=not reasons,
        reasons=tuple(reasons),
        worst_rpo=worst,
        worst_rpo_method=method,
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
