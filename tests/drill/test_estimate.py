"""The RTO model and the worst-case RPO: pure functions, table tests."""

from __future__ import annotations

import datetime as dt

import pytest

from drd.drill.estimate import DrillTimes, model_rto, waves, worst_gap
from drd.drill.judge import Targets, estimate_rto, judge, with_worst_rpo
from drd.drill.plan import Volume

T0 = dt.datetime(2024, 5, 1, 9, 0, tzinfo=dt.UTC)


def at(minutes: float) -> dt.datetime:
    """*minutes* after T0."""
    return T0 + dt.timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("objects", "concurrency", "expected"),
    [(0, 8, 1), (1, 8, 1), (8, 8, 1), (9, 8, 2), (35, 8, 5), (5, 0, 5), (5, 1, 5)],
)
def test_waves_are_rounds_of_concurrent_requests(
    objects: int, concurrency: int, expected: int
) -> None:
    """Objects run *concurrency* at a time; an empty scope still costs one round."""
    assert waves(objects, concurrency) == expected


@pytest.mark.parametrize(
    ("times", "scope", "whole", "fixed", "scale", "value"),
    [
        pytest.param(
            DrillTimes(0.5, 0.1, 0.3, 0.1),
            Volume(1, 2, 7, 7, 1_000),
            Volume(1, 2, 7, 7, 1_000),
            0.6,
            1.0,
            1.0,
            id="whole-snapshot-drilled: fixed + measured",
        ),
        pytest.param(
            DrillTimes(0.5, 0.1, 0.3, 0.1),
            Volume(1, 2, 8, 8, 1_000),
            Volume(1, 8, 20, 20, 2_000),
            0.6,
            2.5,
            1.6,
            id="object-heavy: waves 5/2, fixed costs not scaled",
        ),
        pytest.param(
            DrillTimes(0.5, 0.1, 3.0, 1.0),
            Volume(1, 2, 2, 2, 10_000_000),
            Volume(1, 4, 4, 4, 40_000_000),
            0.6,
            4.0,
            16.6,
            id="byte-heavy: bytes x4 beat one wave",
        ),
        pytest.param(
            DrillTimes(0.5, 0.1, 0.3, 0.1),
            Volume(1, 1, 2, 2, 100),
            Volume(1, 3, 3, 3, 150),
            0.6,
            1.5,
            1.2,
            id="parallelism: 6 objects are one wave like 4, bytes x1.5",
        ),
        pytest.param(
            DrillTimes(None, 0.2, 1.0, 1.0),
            Volume(),
            Volume(),
            0.2,
            1.0,
            2.2,
            id="start-up not measured, empty snapshot",
        ),
        pytest.param(
            DrillTimes(0.5, 0.1, 1.0, 0.0),
            Volume(1, 1, 10, 10, 100),
            Volume(),
            0.6,
            1.0,
            1.6,
            id="never scaled below the measurement",
        ),
    ],
)
def test_the_rto_model_pays_fixed_costs_once_and_scales_the_rest(
    times: DrillTimes, scope: Volume, whole: Volume, fixed: float, scale: float, value: float
) -> None:
    """estimate = start-up + load + (restore + read-back) x max(waves, bytes, 1)."""
    model = model_rto(times, scope, whole)

    assert model.fixed_s == pytest.approx(fixed)
    assert model.scale == pytest.approx(scale)
    assert model.value_s == pytest.approx(value)
    estimate = estimate_rto(times, scope, whole)
    assert estimate.value_s == pytest.approx(value)
    assert estimate.fixed_s == pytest.approx(fixed)
    assert estimate.startup_s == times.startup_s


def test_the_estimate_grows_with_the_whole_and_never_undercuts_the_fixed_costs() -> None:
    """Monotone in objects and bytes; a bigger registry never gets a smaller estimate."""
    times = DrillTimes(0.4, 0.1, 0.5, 0.2)
    scope = Volume(1, 2, 4, 4, 4_000)
    previous = 0.0
    for n in range(1, 200, 7):
        value = model_rto(times, scope, Volume(1, n, n, n, n * 1_000)).value_s
        assert value >= previous
        assert value >= 0.5 + 0.7
        previous = value


def test_the_method_names_every_part() -> None:
    """The report says what was fixed, what was scaled and by how much."""
    times = DrillTimes(0.45, 0.1, 0.3, 0.1)
    estimate = estimate_rto(times, Volume(1, 2, 8, 8, 1_000), Volume(1, 8, 20, 20, 2_000))
    assert "start-up 450ms" in estimate.method
    assert "loading the snapshot 100ms" in estimate.method
    assert "x2.50 in waves of 8 requests" in estimate.method
    assert "x2.00 in bytes" in estimate.method
    unmeasured = estimate_rto(DrillTimes(None, 0.1, 0.3, 0.1), Volume(), Volume())
    assert "start-up not measured" in unmeasured.method


@pytest.mark.parametrize(
    ("points", "since", "now", "seconds", "start", "end"),
    [
        pytest.param([], None, at(10), None, None, None, id="nothing-protected"),
        pytest.param([at(0)], None, at(10), 600.0, at(0), at(10), id="open-gap-only"),
        pytest.param([at(0), at(60), at(65)], None, at(70), 3600.0, at(0), at(60), id="middle-gap"),
        pytest.param(
            [at(0), at(60), at(65)], at(62), at(70), 300.0, at(60), at(65), id="old-gap-outside"
        ),
        pytest.param(
            [at(0), at(60), at(65)], at(30), at(70), 3600.0, at(0), at(60), id="straddling-counts"
        ),
        pytest.param(
            [at(65), at(0), at(60), at(60)], None, at(200), 8100.0, at(65), at(200), id="unsorted"
        ),
        pytest.param([at(0), at(90)], None, at(10), 600.0, at(0), at(10), id="future-ignored"),
    ],
)
def test_the_worst_case_rpo_is_the_longest_gap_in_the_window(
    points: list[dt.datetime],
    since: dt.datetime | None,
    now: dt.datetime,
    seconds: float | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
) -> None:
    """Gaps between protection points and the open one to now; those ending in the window."""
    gap = worst_gap(points, since=since, now=now)

    if seconds is None:
        assert gap is None
        return
    assert gap is not None
    assert (gap.seconds, gap.start, gap.end) == (seconds, start, end)


@pytest.mark.parametrize(
    ("worst_minutes", "passed", "met"),
    [(30.0, True, True), (61.0, False, False)],
)
def test_a_worst_case_gap_over_the_target_fails_the_drill(
    worst_minutes: float, passed: bool, met: bool
) -> None:
    """The newest snapshot is 5 minutes old, but an hour-long gap in the window still fails."""
    judged = judge(
        rto=estimate_rto(DrillTimes(0.1, 0.1, 1.0, 1.0), Volume(), Volume()),
        rpo_s=300.0,
        rpo_method="age",
        targets=Targets(rto_s=60.0, rpo_s=3600.0),
        failures=0,
    )
    gap = worst_gap([at(0), at(worst_minutes)], since=None, now=at(worst_minutes + 5))
    with_worst = with_worst_rpo(judged, gap, "longest gap")

    assert (with_worst.passed, with_worst.rpo_met) == (passed, met)
    rpo = with_worst.to_json()["rpo"]
    assert rpo["worst_s"] == worst_minutes * 60
    assert rpo["worst_from"] == "2024-05-01T09:00:00.000000Z"
    assert rpo["worst_method"] == "longest gap"
    if not passed:
        assert any("worst-case RPO 1h01m exceeds the target 1h00m" in r for r in with_worst.reasons)
    unknown = with_worst_rpo(judged, None, "unknown: no successful snapshot is recorded")
    assert unknown.passed
    assert unknown.to_json()["rpo"]["worst_s"] is None
