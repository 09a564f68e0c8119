"""The failover pre-flight judgement, without any server: findings from facts."""

from __future__ import annotations

import pytest

from drd.failover.preflight import LastDrill, pins, preflight
from drd.replica.check import TagCheck

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
NOW = 1_000_000.0


def check(tag: str, status: str, reason: str = "", *, attached: bool = False) -> TagCheck:
    replica = "" if status == "missing" else (B if status == "differs" else A)
    return TagCheck("prod", "team/app", tag, A, replica, status, reason, attached)  # type: ignore[arg-type]


def run(checks: list[TagCheck], **overrides: object) -> dict[str, tuple[bool, str]]:
    options: dict[str, object] = {
        "to": "dr",
        "source": "primary",
        "policies": ["prod"],
        "checks": checks,
        "compared": True,
        "lag_s": 30.0,
        "lag_method": "history",
        "rpo_s": 3600.0,
        "last_drill": LastDrill(NOW - 600, "ok"),
        "max_drill_age_s": 86400.0,
        "now": NOW,
    }
    options.update(overrides)
    result = preflight(**options)  # type: ignore[arg-type]
    return {f.check: (f.ok, f.summary) for f in result.findings}


GOOD = [check("v1", "ok", "verified"), check("sha256-x.sig", "ok", attached=True)]


def test_a_ready_standby_passes_every_finding() -> None:
    """Lag within RPO, everything in place and verified, a recent passing drill."""
    findings = run(GOOD)

    assert all(ok for ok, _ in findings.values()), findings
    assert list(findings) == ["replica lag", "completeness", "signatures", "last drill"]
    assert findings["signatures"][1] == "1 verified, 0 unsigned, 0 failed at the standby"


@pytest.mark.parametrize(
    ("checks", "overrides", "failing"),
    [
        pytest.param(GOOD, {"lag_s": 7200.0}, {"replica lag"}, id="lag-over-rpo"),
        pytest.param([*GOOD, check("v2", "missing")], {}, {"completeness"}, id="missing-tag"),
        pytest.param([*GOOD, check("v2", "differs")], {}, {"completeness"}, id="moved-tag"),
        pytest.param(
            [check("v1", "unverified", "no-signature: gone")], {}, {"signatures"}, id="signature"
        ),
        pytest.param(GOOD, {"last_drill": None}, {"last drill"}, id="no-drill"),
        pytest.param(
            GOOD, {"last_drill": LastDrill(NOW - 10, "failed")}, {"last drill"}, id="failed-drill"
        ),
        pytest.param(
            GOOD, {"last_drill": LastDrill(NOW - 90000, "ok")}, {"last drill"}, id="old-drill"
        ),
        pytest.param(
            [*GOOD, check("v2", "missing")],
            {"lag_s": None},
            {"replica lag", "completeness"},
            id="no-history-incomplete",
        ),
        pytest.param(
            [],
            {"compared": False, "compare_error": "RegistryUnavailable: gone"},
            {"completeness", "signatures"},
            id="source-unreachable",
        ),
        pytest.param([], {"policies": []}, {"completeness"}, id="no-policy"),
    ],
)
def test_each_problem_fails_its_own_finding(
    checks: list[TagCheck], overrides: dict[str, object], failing: set[str]
) -> None:
    """Exactly the findings the problem concerns fail."""
    findings = run(checks, **overrides)

    assert {name for name, (ok, _) in findings.items() if not ok} == failing


def test_without_history_a_complete_standby_counts_as_no_lag() -> None:
    """No replication history: the comparison itself is the evidence."""
    findings = run(GOOD, lag_s=None)
    assert findings["replica lag"][0]
    assert "no replication history" in findings["replica lag"][1]


def test_excluded_tags_are_not_expected_at_the_standby() -> None:
    """A source tag a trusted policy never copies does not count as missing."""
    findings = run([*GOOD, check("unsigned", "excluded", "not verified at the source")])
    assert findings["completeness"] == (
        True,
        "1 of 1 release tags and 1 of 1 attached tags in place (prod)",
    )


def test_pins_name_the_standby_host_and_the_digest() -> None:
    """Each repo:tag pins host/repo@digest, in a stable order."""
    assert pins([("b/app", "v2", B), ("a/app", "v1", A)], "dr.example:5000") == {
        "a/app:v1": f"dr.example:5000/a/app@{A}",
        "b/app:v2": f"dr.example:5000/b/app@{B}",
    }
