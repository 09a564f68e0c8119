"""
The RTO a drill predicts, and the worst-case RPO over a window. Pure: no I/O, no clock.

**RTO** is what an operator would wait for after a loss: start ``drd restore`` for the
whole snapshot (interpreter, imports, settings, clients), load the snapshot, restore
every object, then verify it. A drill measures each of those parts of its own run:

- *fixed* costs, paid once whatever the size: the process start-up up to the moment
  the drill begins (measured by the ``drd drill`` process of itself) and loading the
  snapshot (index, document, signature);
- *variable* costs, the restore and the read-back of the drill's scope, made of a
  per-object part (requests, run ``concurrency`` at a time, so they grow with the
  number of *waves* of requests, not the number of objects) and a per-byte part.

One drill is one point: it cannot tell how much of its variable time was per-object
and how much per-byte. The estimate therefore scales the variable time by the larger
of the two growths (waves, bytes), which bounds the true cost from above for any
split between them, and adds the fixed costs once, unscaled. Scaling the fixed costs
too (the old method) under-estimated small drills' start-up while over-scaling
nothing; leaving them out under-estimated every restore by the start-up.

**Worst-case RPO** is the longest time in a window during which a loss would have
lost more than the newest protection point: the longest gap between consecutive
successful snapshots (or replication passes), including the open gap from the newest
to now, counted where it overlaps the window.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass

from drd.drill.plan import Volume
from drd.timeline import duration


@dataclass(frozen=True, slots=True)
class DrillTimes:
    """The measured parts of a drill that the RTO estimate is built from, in seconds."""

    startup_s: float | None  # process start until the drill began; None: not measured
    load_s: float  # loading the snapshot
    restore_s: float  # restoring the drill's scope
    readback_s: float  # pulling, re-hashing, comparing and verifying it
    concurrency: int = 8  # requests in flight at once


@dataclass(frozen=True, slots=True)
class RtoModel:
    """The estimate's parts: fixed costs once, variable costs scaled."""

    fixed_s: float  # start-up + loading the snapshot
    variable_s: float  # restore + read-back of the scope, as measured
    scale: float  # max(wave ratio, byte ratio, 1)
    wave_ratio: float
    byte_ratio: float
    object_ratio: float  # shown for reference; the waves carry the parallelism
    startup_measured: bool

    @property
    def value_s(self) -> float:
        """The estimate: fixed + variable x scale."""
        return self.fixed_s + self.variable_s * self.scale


def size(n: int) -> str:
    """Bytes in binary units: ``512 B``, ``1.5 KiB``, ``3.2 GiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def waves(objects: int, concurrency: int) -> int:
    """Rounds of at most *concurrency* requests needed for *objects*; at least 1."""
    return max(1, math.ceil(max(objects, 0) / max(concurrency, 1)))


def _ratio(whole: int, part: int) -> float:
    if part <= 0:
        return 1.0 if whole <= 0 else float(whole)
    return whole / part


def model_rto(times: DrillTimes, scope: Volume, whole: Volume) -> RtoModel:
    """The RTO model of restoring and verifying *whole* from a drill of *scope*."""
    wave_ratio = waves(whole.objects, times.concurrency) / waves(scope.objects, times.concurrency)
    byte_ratio = _ratio(whole.bytes, scope.bytes)
    return RtoModel(
        fixed_s=max(times.startup_s or 0.0, 0.0) + max(times.load_s, 0.0),
        variable_s=max(times.restore_s, 0.0) + max(times.readback_s, 0.0),
        scale=max(wave_ratio, byte_ratio, 1.0),
        wave_ratio=wave_ratio,
        byte_ratio=byte_ratio,
        object_ratio=_ratio(whole.objects, scope.objects),
        startup_measured=times.startup_s is not None,
    )


def describe(model: RtoModel, times: DrillTimes, scope: Volume, whole: Volume) -> str:
    """The method in words, with the numbers, for every report."""
    startup = (
        f"start-up {duration(times.startup_s)}"
        if times.startup_s is not None
        else "start-up not measured (an in-process drill; a fresh `drd restore` also pays it)"
    )
    load = f"loading the snapshot {duration(times.load_s)}"
    fixed = f"fixed {duration(model.fixed_s)} ({startup}, {load})"
    if model.scale == 1.0:
        variable = (
            f"restore + read-back of the whole snapshot ({whole.objects} objects, "
            f"{size(whole.bytes)}) measured at {duration(model.variable_s)}"
        )
    else:
        variable = (
            f"restore + read-back of the drill's scope ({scope.objects} objects, "
            f"{size(scope.bytes)}) took {duration(model.variable_s)}; the whole snapshot holds "
            f"{whole.objects} objects and {size(whole.bytes)} (x{model.wave_ratio:.2f} in waves "
            f"of {times.concurrency} requests, x{model.byte_ratio:.2f} in bytes); scaled by "
            f"the larger, x{model.scale:.2f}"
        )
    return f"estimate = fixed + variable: {fixed}; {variable}"


@dataclass(frozen=True, slots=True)
class WorstGap:
    """The longest time without a new protection point in a window, and where it lay."""

    seconds: float
    start: dt.datetime  # the protection point the gap began at (or the window's start)
    end: dt.datetime  # the next one, or now for the open gap
    points: int  # protection points in the history considered


def worst_gap(
    points: Iterable[dt.datetime], *, since: dt.datetime | None, now: dt.datetime
) -> WorstGap | None:
    """
    The longest gap between consecutive *points* (successful snapshots or replication
    passes), including the open one from the newest point to *now*, among the gaps that
    end after *since* (all gaps when None). A gap that began before *since* counts in
    full: the data of that whole time was exposed within the window.

    None when there is no point at all (nothing is protected: the RPO is unbounded).
    """
    times = sorted({p for p in points if p <= now})
    if not times:
        return None
    ends = [*times[1:], now]
    best: WorstGap | None = None
    for start, end in zip(times, ends, strict=True):
        if since is not None and end <= since:
            continue
        gap = (end - start).total_seconds()
        if best is None or gap > best.seconds:
            best = WorstGap(gap, start, end, len(times))
    if best is None:  # pragma: no cover - the open gap always ends at now >= since
        best = WorstGap((now - times[-1]).total_seconds(), times[-1], now, len(times))
    return best
