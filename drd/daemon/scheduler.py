"""
Run jobs on their intervals and on demand; drain them when asked to stop.

A `Job` runs every interval (start to start, jittered, see `drd.schedule`); a
`Trigger` runs when something requests it, after a short window that gathers a
burst of requests into one run. Each job and each trigger is one sequential
loop, so neither ever overlaps itself, except a trigger marked *overlap*, whose
runs start as their requests come in (each run on distinct items, like the takeover of
a dead node's units). `Scheduler.run(stop)` returns once *stop* is set and every run
has finished or been cancelled at the drain deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from drd.schedule import next_run

__all__ = ["Job", "Scheduler", "SchedulerSummary", "Trigger"]

log = structlog.get_logger(__name__)

# The longest single sleep: the wall clock is re-read at least this often, so a
# machine that slept (the monotonic clock stops) notices a missed run promptly.
DEFAULT_TICK = 30.0


def utc_now() -> datetime:
    """The current wall-clock time, in UTC."""
    return datetime.now(UTC)


@dataclass
class Job:
    """A periodic job: *run* every *interval*; *last_run* (e.g. from state) seeds the first wait."""

    name: str
    kind: str
    interval: timedelta
    run: Callable[[], Awaitable[object]]
    last_run: datetime | None = None


@dataclass
class Trigger:
    """
    An on-demand job: requests gathered for *window* seconds, then one ``run(items)``.

    *items* are the distinct requested items, in the order they first arrived.
    Requests arriving while a run is in progress wait for the next run, unless
    *overlap*: then the next run starts one window after them, beside the first.
    """

    name: str
    kind: str
    run: Callable[[list[Any]], Awaitable[object]]
    window: float = 1.0
    overlap: bool = False


@dataclass(frozen=True)
class SchedulerSummary:
    """How the runs of one `Scheduler.run` ended."""

    finished: int
    failed: int
    cancelled: int


@dataclass
class _Counts:
    finished: int = 0
    failed: int = 0
    cancelled: int = 0
    running: Counter[str] = field(default_factory=Counter)  # runs in progress per name


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Wait until *event* is set or *seconds* pass, whichever is first."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(seconds, 0.0)):
            await event.wait()


class Scheduler:
    """
    Runs *jobs* on their intervals and *triggers* on request, until stopped.

    Args:
        drain: seconds runs in progress get to finish once stop is set; the rest
            are then cancelled.
        jitter: fraction of each interval by which a run may move (0..0.5).
        clock: the wall clock (UTC); tests pass a controllable one.
        tick: the longest single sleep before the clock is read again.
        observe: called with (kind, outcome) after every run; outcome is
            finished, failed or cancelled.
    """

    def __init__(
        self,
        jobs: Iterable[Job],
        triggers: Iterable[Trigger] = (),
        *,
        drain: float,
        jitter: float = 0.0,
        clock: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
        tick: float = DEFAULT_TICK,
        observe: Callable[[str, str], None] | None = None,
    ) -> None:
        self.jobs = list(jobs)
        self.triggers = {t.name: t for t in triggers}
        self._drain = drain
        self._jitter = jitter
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - spreading load, not security
        self._tick = tick
        self._observe = observe
        self._wakes = {name: asyncio.Event() for name in self.triggers}
        self._buffers: dict[str, dict[Hashable, None]] = {name: {} for name in self.triggers}
        self._counts = _Counts()
        self._stopping = False

    @property
    def running(self) -> list[str]:
        """Names of the jobs and triggers running right now."""
        return sorted(name for name, n in self._counts.running.items() if n > 0)

    def request(self, name: str, items: Iterable[Hashable]) -> bool:
        """
        Ask trigger *name* to run for *items*; False when stopping or unknown.

        Items already waiting are not added twice.
        """
        if self._stopping or name not in self.triggers:
            return False
        buffer = self._buffers[name]
        for item in items:
            buffer.setdefault(item, None)
        if buffer:
            self._wakes[name].set()
        return True

    async def run(self, stop: asyncio.Event) -> SchedulerSummary:
        """
        Run until *stop* is set; then start nothing new, drain, cancel the rest.

        Logs one summary line, ``scheduler.stopped``. Cancelling this coroutine
        cancels every run at once.
        """
        loops = [asyncio.create_task(self._periodic(job, stop), name=job.name) for job in self.jobs]
        loops += [
            asyncio.create_task(self._on_demand(trigger, stop), name=trigger.name)
            for trigger in self.triggers.values()
        ]
        started = time.monotonic()
        try:
            await stop.wait()
            self._stopping = True
            for wake in self._wakes.values():
                wake.set()
            if self.running:
                log.info("scheduler.draining", running=self.running, drain_s=self._drain)
            pending: set[asyncio.Task[None]] = set()
            if loops:
                _, pending = await asyncio.wait(loops, timeout=self._drain)
            for task in pending:
                task.cancel(msg=f"drain deadline of {self._drain}s passed")
            await asyncio.gather(*pending, return_exceptions=True)
        finally:
            for task in loops:
                task.cancel()
        counts = self._counts
        summary = SchedulerSummary(counts.finished, counts.failed, counts.cancelled)
        log.info(
            "scheduler.stopped",
            finished=summary.finished,
            failed=summary.failed,
            cancelled=summary.cancelled,
            uptime_s=round(time.monotonic() - started, 3),
        )
        return summary

    async def _periodic(self, job: Job, stop: asyncio.Event) -> None:
        last = job.last_run
        while True:
            due = next_run(job.interval, last, self._clock(), self._jitter, self._rng)
            if not await self._sleep_until(due, stop):
                return
            last = self._clock()
            await self._execute(job.name, job.kind, job.run)

    async def _sleep_until(self, due: datetime, stop: asyncio.Event) -> bool:
        """Sleep until *due* on the wall clock; False when *stop* was set first."""
        while not stop.is_set():
            delay = (due - self._clock()).total_seconds()
            if delay <= 0:
                return True
            await _wait(stop, min(delay, self._tick))
        return False

    async def _on_demand(self, trigger: Trigger, stop: asyncio.Event) -> None:
        wake = self._wakes[trigger.name]
        beside: set[asyncio.Task[None]] = set()  # the runs of an overlapping trigger
        try:
            while True:
                await wake.wait()
                if stop.is_set():
                    break
                # Gather the rest of the burst: one run for a push of ten tags, not ten runs.
                await _wait(stop, trigger.window)
                if stop.is_set():
                    break
                wake.clear()
                items = list(self._buffers[trigger.name])
                self._buffers[trigger.name] = {}
                if not items:
                    continue
                run = self._execute(
                    trigger.name, trigger.kind, functools.partial(trigger.run, items)
                )
                if not trigger.overlap:
                    await run
                    continue
                task = asyncio.create_task(run, name=trigger.name)
                beside.add(task)
                task.add_done_callback(beside.discard)
            if beside:  # drained like any run: the drain deadline cancels this loop
                await asyncio.gather(*beside, return_exceptions=True)
        finally:
            for task in beside:
                task.cancel()
            if beside:
                await asyncio.gather(*beside, return_exceptions=True)

    async def _execute(self, name: str, kind: str, fn: Callable[[], Awaitable[object]]) -> None:
        counts = self._counts
        counts.running[name] += 1
        outcome = "finished"
        try:
            await fn()
        except asyncio.CancelledError as exc:
            outcome = "cancelled"
            reason = str(exc.args[0]) if exc.args else "cancelled"
            log.warning("scheduler.run_cancelled", job=name, reason=reason)
            raise
        except Exception:
            # A bug in one job must not stop the others: log it with its traceback, go on.
            outcome = "failed"
            log.exception("scheduler.run_crashed", job=name)
        finally:
            counts.running[name] -= 1
            setattr(counts, outcome, getattr(counts, outcome) + 1)
            if self._observe is not None:
                self._observe(kind, outcome)
