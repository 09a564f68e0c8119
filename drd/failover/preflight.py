"""
Failover pre-flight: is the standby ready to become the primary? Pure: no I/O, no clock.

Four findings, each listed with its evidence:

1. **replica lag** within ``[drills] rpo`` (from the daemon's replication history,
   or, without one, a replica the comparison found complete);
2. **completeness**: every tag of every policy copying to the standby is there with
   the source's digest, and every manifest and blob below it is there too (the
   `drd.scrub.check` walk: a HEAD on the top manifest does not prove an image pulls);
3. **signatures**: every release tag that should verify does verify at the standby;
4. **last drill**: the last drill passed and is younger than ``[failover] max_drill_age``.

A failed finding blocks the switch unless the operator forces it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from drd.replica.check import TagCheck
from drd.timeline import duration

# Evidence lines listed per finding; the rest are counted.
MAX_DETAILS = 20


@dataclass(frozen=True, slots=True)
class Finding:
    """One pre-flight check: its name, whether it passed, a summary and the evidence."""

    check: str
    ok: bool
    summary: str
    details: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "check": self.check,
            "ok": self.ok,
            "summary": self.summary,
            "details": list(self.details),
        }


@dataclass(frozen=True, slots=True)
class LastDrill:
    """The last recorded drill: when it finished and how (``ok``, ``failed``, ``error``)."""

    finished_at: float
    outcome: str
    error: str = ""


@dataclass(frozen=True)
class Preflight:
    """Every finding for a switch from *source* to *to*."""

    to: str
    source: str
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        """Every finding passed."""
        return all(f.ok for f in self.findings)

    def failed(self) -> list[Finding]:
        """The findings that did not pass."""
        return [f for f in self.findings if not f.ok]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "to": self.to,
            "from": self.source,
            "ok": self.ok,
            "findings": [f.to_json() for f in self.findings],
        }


def _listed(lines: Sequence[str]) -> tuple[str, ...]:
    shown = list(lines[:MAX_DETAILS])
    if len(lines) > MAX_DETAILS:
        shown.append(f"... and {len(lines) - MAX_DETAILS} more")
    return tuple(shown)


def lag_finding(
    lag_s: float | None, lag_method: str, rpo_s: float, checks: Sequence[TagCheck], compared: bool
) -> Finding:
    """Replica lag within the RPO; without history, a complete comparison means no lag."""
    if lag_s is not None:
        ok = lag_s <= rpo_s
        verb = "within" if ok else "over"
        return Finding(
            "replica lag",
            ok,
            f"lag {duration(lag_s)}, {verb} the RPO of {duration(rpo_s)}",
            (lag_method,),
        )
    missing = [c for c in checks if c.failing]
    if compared and not missing:
        return Finding(
            "replica lag",
            True,
            "no replication history; the standby held every source tag when compared",
            ("lag taken as 0 at the time of the comparison",),
        )
    return Finding(
        "replica lag",
        False,
        "unknown: no replication history, and the standby is not complete",
        ("run the daemon (or `drd replicate`) until the standby catches up",),
    )


def completeness_finding(
    checks: Sequence[TagCheck], policies: Sequence[str], compared: bool, error: str = ""
) -> Finding:
    """Every selected source tag at the standby with the source's digest."""
    if not policies:
        return Finding("completeness", False, "no replication policy copies to this endpoint")
    if not compared:
        return Finding(
            "completeness",
            False,
            f"the standby could not be compared with its source: {error}",
            ("with the source gone, check `drd status` for the last clean replication pass",),
        )
    # "incomplete": the tag is right but a manifest or blob under it is not there whole.
    bad = [c for c in checks if c.status in ("missing", "differs", "incomplete")]
    excluded = [c for c in checks if c.status == "excluded"]
    release = [c for c in checks if not c.attached and c.status != "excluded"]
    summary = (
        f"{len(release) - sum(not c.attached for c in bad)} of {len(release)} release tags "
        f"and {sum(c.attached for c in checks) - sum(c.attached for c in bad)} of "
        f"{sum(c.attached for c in checks)} attached tags in place"
        f" ({', '.join(policies)})"
    )
    details = [
        f"{c.repository}:{c.tag} {c.status}: source {c.source_digest}"
        + (f", standby {c.replica_digest}" if c.replica_digest else "")
        + (f" ({c.reason})" if c.status == "incomplete" else "")
        for c in bad
    ]
    if excluded:
        details.append(
            f"{len(excluded)} source tag(s) not expected: they do not verify at the source"
        )
    return Finding("completeness", not bad, summary, _listed(details))


def signatures_finding(checks: Sequence[TagCheck], compared: bool) -> Finding:
    """Every release tag's signature verifies at the standby."""
    if not compared:
        return Finding("signatures", False, "not checked: the standby could not be compared")
    release = [c for c in checks if not c.attached]
    verified = sum(c.status == "ok" and c.reason == "verified" for c in release)
    unsigned = sum(c.status == "ok" and c.reason == "unsigned" for c in release)
    failed = [c for c in release if c.status == "unverified"]
    details = [f"{c.repository}:{c.tag} {c.source_digest}: {c.reason}" for c in failed]
    summary = f"{verified} verified, {unsigned} unsigned, {len(failed)} failed at the standby"
    if not any(c.reason in ("verified", "unsigned") for c in release) and not failed:
        summary = "no trust policy applies: signatures were not checked"
    return Finding("signatures", not failed, summary, _listed(details))


def drill_finding(last: LastDrill | None, max_age_s: float, now: float) -> Finding:
    """The last drill passed and is recent enough."""
    if last is None:
        return Finding(
            "last drill", False, "no drill has been recorded", ("run `drd drill` first",)
        )
    age = max(0.0, now - last.finished_at)
    recent = age <= max_age_s
    passed = last.outcome == "ok"
    summary = (
        f"last drill {'passed' if passed else last.outcome} {duration(age)} ago "
        f"(max age {duration(max_age_s)})"
    )
    details = (last.error,) if last.error and not passed else ()
    return Finding("last drill", passed and recent, summary, details)


def preflight(
    *,
    to: str,
    source: str,
    policies: Sequence[str],
    checks: Sequence[TagCheck],
    compared: bool,
    compare_error: str = "",
    lag_s: float | None,
    lag_method: str,
    rpo_s: float,
    last_drill: LastDrill | None,
    max_drill_age_s: float,
    now: float,
) -> Preflight:
    """Every finding for switching from *source* to *to*, in a fixed order."""
    return Preflight(
        to=to,
        source=source,
        findings=(
            lag_finding(lag_s, lag_method, rpo_s, checks, compared),
            completeness_finding(checks, policies, compared, compare_error),
            signatures_finding(checks, compared),
            drill_finding(last_drill, max_drill_age_s, now),
        ),
    )


def pins(tags: Sequence[tuple[str, str, str]], host: str) -> dict[str, str]:
    """``repo:tag -> host/repo@digest`` for each (repository, tag, digest), sorted."""
    return {f"{repo}:{tag}": f"{host}/{repo}@{digest}" for repo, tag, digest in sorted(tags)}
