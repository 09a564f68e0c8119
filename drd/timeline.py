"""
A run's clock and name: `utc_now`, `new_run_id`, the timed `Phase`s of a `Timeline`,
and `duration` (a short human rendering of seconds). Shared by drills and failover.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def utc_now() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


def new_run_id() -> str:
    """A fresh drill id: 12 lower-case hex characters."""
    return uuid.uuid4().hex[:12]


@dataclass
class Step:
    """A phase in progress: callers set ``ok`` and ``detail`` before it ends."""

    ok: bool = True
    detail: str = ""


class Timeline:
    """Times phases against one monotonic start."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.phases: list[Phase] = []

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[Step]:
        step = Step()
        start = time.monotonic()
        try:
            yield step
        except BaseException:
            step.ok = False
            raise
        finally:
            end = time.monotonic()
            self.phases.append(Phase(name, start - self.t0, end - start, step.ok, step.detail))

    def total(self, *names: str) -> float:
        """The summed duration of the named phases."""
        return sum(p.duration_s for p in self.phases if p.name in names)


@dataclass(frozen=True, slots=True)
class Phase:
    """One timed step of a drill; *started_s* is the offset from the drill's start."""

    name: str
    started_s: float
    duration_s: float
    ok: bool = True
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "name": self.name,
            "started_s": round(self.started_s, 3),
            "duration_s": round(self.duration_s, 3),
            "ok": self.ok,
            "detail": self.detail,
        }


def duration(seconds: float | None) -> str:
    """A short human duration: ``850ms``, ``42.0s``, ``12m05s``, ``3h12m``, ``3d04h``."""
    if seconds is None:
        return "unknown"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def process_age_s() -> float | None:
    """
    How long ago this process started (interpreter start-up included), from the kernel's
    record of it; None where that is not readable (not Linux). Resolution: one clock tick.

    Read here rather than with a process library: two small files, one field each.
    """
    try:
        stat = Path("/proc/self/stat").read_text(encoding="ascii")
        uptime = float(Path("/proc/uptime").read_text(encoding="ascii").split()[0])
        # Fields after the command name (in parentheses, which may hold spaces); starttime is 22nd.
        started_ticks = int(stat.rpartition(")")[2].split()[19])
        age = uptime - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return max(age, 0.0)
