"""next_run: start-to-start intervals, jitter bounds, missed runs collapsed. Pure."""

# ruff: noqa: S311 - seeded generators spread schedules; nothing here is secret

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from drd.schedule import next_run

NOW = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("last_run", "expected"),
    [
        pytest.param(None, NOW, id="never-ran-runs-now"),
        pytest.param(NOW - timedelta(minutes=20), NOW + timedelta(minutes=40), id="one-interval"),
        pytest.param(NOW - HOUR, NOW, id="due-exactly-now"),
        pytest.param(NOW - 3 * HOUR, NOW, id="missed-three-runs-one-run-now"),
        pytest.param(NOW - timedelta(days=30), NOW, id="slept-for-a-month"),
    ],
)
def test_next_run_without_jitter(last_run: datetime | None, expected: datetime) -> None:
    """A job runs one interval after its last start; anything overdue runs once, now."""
    assert expected == next_run(HOUR, last_run, NOW)


def test_jitter_stays_within_its_fraction_of_the_interval() -> None:
    """With jitter j, the next run lands within ±j of one interval after the last one."""
    rng = random.Random(7)
    last = NOW
    dues = [next_run(HOUR, last, NOW, 0.1, rng) for _ in range(500)]
    offsets = [(due - last) / HOUR for due in dues]
    assert all(0.9 <= offset <= 1.1 for offset in offsets)
    assert len({round(o, 3) for o in offsets}) > 50  # it does spread


def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    """The same seed gives the same schedule."""
    first = [next_run(HOUR, NOW, NOW, 0.2, random.Random(3)) for _ in range(3)]
    second = [next_run(HOUR, NOW, NOW, 0.2, random.Random(3)) for _ in range(3)]
    assert first == second


def test_jitter_never_moves_an_overdue_run_into_the_past() -> None:
    """An overdue run is due now, whatever the jitter draws."""
    rng = random.Random(1)
    assert all(next_run(HOUR, NOW - 2 * HOUR, NOW, 0.5, rng) == NOW for _ in range(100))


@pytest.mark.parametrize(
    ("interval", "jitter", "message"),
    [
        pytest.param(timedelta(0), 0.0, "interval must be positive", id="zero-interval"),
        pytest.param(-HOUR, 0.0, "interval must be positive", id="negative-interval"),
        pytest.param(HOUR, 0.6, "jitter must be between 0 and 0.5", id="jitter-too-large"),
        pytest.param(HOUR, -0.1, "jitter must be between 0 and 0.5", id="negative-jitter"),
    ],
)
def test_invalid_arguments_are_refused(interval: timedelta, jitter: float, message: str) -> None:
    """A non-positive interval or a jitter outside 0..0.5 is a ValueError saying which."""
    with pytest.raises(ValueError, match=message):
        next_run(interval, NOW, NOW, jitter)
