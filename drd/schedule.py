"""When a periodic job runs next. Pure: no clock, no I/O; the caller passes *now*."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

__all__ = ["MAX_JITTER", "next_run"]

# A jitter above half the interval would let two consecutive runs nearly touch.
MAX_JITTER = 0.5


def next_run(
    interval: timedelta,
    last_run: datetime | None,
    now: datetime,
    jitter: float = 0.0,
    rng: random.Random | None = None,
) -> datetime:
    """
    The instant the next run of a job with *interval* should start.

    A job that never ran is due *now*. Otherwise it is due one interval after
    *last_run* (start to start), stretched or shrunk by a random fraction of at
    most *jitter* of the interval, so that daemons started together drift apart.
    A due time already in the past is *now*: runs missed while the process was
    stopped or the machine slept collapse into one run, they are not stacked.

    Raises:
        ValueError: *interval* is not positive or *jitter* is outside 0..0.5.
    """
    if interval <= timedelta(0):
        raise ValueError("interval must be positive")
    if not 0.0 <= jitter <= MAX_JITTER:
        raise ValueError(f"jitter must be between 0 and {MAX_JITTER}")
    if last_run is None:
        return now
    spread = (rng or random.Random()).uniform(-jitter, jitter) if jitter else 0.0  # noqa: S311 - spreading load, not security
    due = last_run + interval * (1.0 + spread)
    return max(due, now)
