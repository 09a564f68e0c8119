"""Scheduler: intervals, no self-overlap, triggers that coalesce, drain and cancel on stop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog

from drd.daemon.scheduler import Job, Scheduler, SchedulerSummary, Trigger

HOUR = timedelta(hours=1)


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll *condition* until it holds; fail the test after *within* seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def scheduler(jobs: list[Job], triggers: list[Trigger] | None = None, **kw: Any) -> Scheduler:
    kw.setdefault("drain", 1.0)
    kw.setdefault("tick", 0.005)
    return Scheduler(jobs, triggers or [], **kw)


async def test_a_job_runs_at_start_and_again_one_interval_later() -> None:
    """A job that never ran runs at once, then when the wall clock passes one interval."""
    clock = FakeClock()
    runs: list[datetime] = []

    async def work() -> None:
        runs.append(clock())

    sched = scheduler([Job("j", "test", HOUR, work)], clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(sched.run(stop))
    await until(lambda: len(runs) == 1)
    clock.advance(timedelta(minutes=59))
    await asyncio.sleep(0.05)
    assert len(runs) == 1
    clock.advance(timedelta(minutes=1))
    await until(lambda: len(runs) == 2)
    stop.set()
    assert SchedulerSummary(finished=2, failed=0, cancelled=0) == await task
    assert [datetime(2024, 5, 1, 9, 0, tzinfo=UTC), datetime(2024, 5, 1, 10, 0, tzinfo=UTC)] == runs


async def test_runs_missed_while_asleep_collapse_into_one() -> None:
    """A job last run three intervals ago (the machine slept) runs once now, not three times."""
    clock = FakeClock()
    runs: list[datetime] = []

    async def work() -> None:
        runs.append(clock())

    job = Job("j", "test", HOUR, work, last_run=clock() - 3 * HOUR)
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler([job], clock=clock).run(stop))
    await until(lambda: len(runs) == 1)
    await asyncio.sleep(0.05)
    stop.set()
    await task
    assert [clock()] == runs


async def test_a_recent_last_run_from_state_delays_the_first_run() -> None:
    """A job that ran 10 minutes ago (before a restart) waits the rest of its interval."""
    clock = FakeClock()
    runs: list[datetime] = []

    async def work() -> None:
        runs.append(clock())

    job = Job("j", "test", HOUR, work, last_run=clock() - timedelta(minutes=10))
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler([job], clock=clock).run(stop))
    await asyncio.sleep(0.05)
    assert runs == []
    clock.advance(timedelta(minutes=50))
    await until(lambda: len(runs) == 1)
    stop.set()
    await task


async def test_a_job_never_overlaps_itself() -> None:
    """A run longer than the interval delays the next run; two never run at once."""
    clock = FakeClock()
    running = 0
    most = 0
    runs = 0
    release = asyncio.Event()

    async def slow() -> None:
        nonlocal running, most, runs
        running += 1
        runs += 1
        most = max(most, running)
        await release.wait()
        running -= 1

    stop = asyncio.Event()
    sched = scheduler([Job("slow", "test", timedelta(seconds=1), slow)], clock=clock)
    task = asyncio.create_task(sched.run(stop))
    await until(lambda: runs == 1)
    clock.advance(5 * HOUR)  # many intervals pass during the first run
    await asyncio.sleep(0.05)
    assert (runs, most) == (1, 1)
    assert sched.running == ["slow"]
    release.set()
    await until(lambda: runs == 2)  # the next run starts only after the first ended
    stop.set()
    await task
    assert most == 1


async def test_stop_lets_a_run_in_progress_finish_within_the_drain() -> None:
    """After stop, a run that ends before the drain deadline finishes normally."""
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[bool] = []

    async def work() -> None:
        started.set()
        await release.wait()
        finished.append(True)

    stop = asyncio.Event()
    task = asyncio.create_task(scheduler([Job("j", "test", HOUR, work)], drain=5.0).run(stop))
    await started.wait()
    stop.set()
    await asyncio.sleep(0.05)
    assert not task.done()  # still draining
    release.set()
    assert SchedulerSummary(finished=1, failed=0, cancelled=0) == await task
    assert finished == [True]


async def test_runs_past_the_drain_deadline_are_cancelled_with_a_reason() -> None:
    """A run still going at the drain deadline is cancelled; the summary line counts it."""
    started = asyncio.Event()
    cancelled: list[str] = []

    async def stuck() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError as exc:
            cancelled.append(str(exc.args[0]) if exc.args else "")
            raise

    stop = asyncio.Event()
    sched = scheduler([Job("stuck", "test", HOUR, stuck)], drain=0.1)
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(sched.run(stop))
        await started.wait()
        began = time.monotonic()
        stop.set()
        summary = await task
    assert time.monotonic() - began < 2.0
    assert SchedulerSummary(finished=0, failed=0, cancelled=1) == summary
    assert cancelled == ["drain deadline of 0.1s passed"]
    stopped = [e for e in logs if e["event"] == "scheduler.stopped"]
    assert [(e["finished"], e["failed"], e["cancelled"]) for e in stopped] == [(0, 0, 1)]
    assert [e["job"] for e in logs if e["event"] == "scheduler.run_cancelled"] == ["stuck"]


async def test_nothing_new_starts_after_stop() -> None:
    """Once stop is set, due jobs and requested triggers do not start."""
    clock = FakeClock()
    runs: list[str] = []

    async def work() -> None:
        runs.append("job")

    async def on_demand(items: list[Any]) -> None:
        runs.append("trigger")

    sched = scheduler(
        [Job("j", "test", HOUR, work)], [Trigger("t", "push", on_demand, window=0.0)], clock=clock
    )
    stop = asyncio.Event()
    task = asyncio.create_task(sched.run(stop))
    await until(lambda: runs == ["job"])
    stop.set()
    await task
    clock.advance(10 * HOUR)
    assert sched.request("t", ["x"]) is False
    await asyncio.sleep(0.05)
    assert runs == ["job"]


async def test_a_burst_of_requests_is_one_run_with_every_item_once() -> None:
    """Requests inside the window are coalesced: one run, items deduplicated, in order."""
    batches: list[list[Any]] = []

    async def on_demand(items: list[Any]) -> None:
        batches.append(items)

    sched = scheduler([], [Trigger("push:p", "push", on_demand, window=0.2)])
    stop = asyncio.Event()
    task = asyncio.create_task(sched.run(stop))
    assert sched.request("push:p", [("r", "a"), ("r", "b")])
    assert sched.request("push:p", [("r", "a"), ("q", "c")])
    await asyncio.sleep(0.05)
    assert batches == []  # the window is still open
    await until(lambda: len(batches) == 1)
    await asyncio.sleep(0.3)
    stop.set()
    await task
    assert batches == [[("r", "a"), ("r", "b"), ("q", "c")]]
    assert sched.request("unknown", ["x"]) is False


async def test_requests_during_a_run_wait_for_the_next_run() -> None:
    """A trigger never overlaps itself: what arrives mid-run is the next run's batch."""
    batches: list[list[Any]] = []
    release = asyncio.Event()

    async def on_demand(items: list[Any]) -> None:
        batches.append(items)
        if len(batches) == 1:
            await release.wait()

    sched = scheduler([], [Trigger("t", "push", on_demand, window=0.01)])
    stop = asyncio.Event()
    task = asyncio.create_task(sched.run(stop))
    sched.request("t", ["first"])
    await until(lambda: len(batches) == 1)
    sched.request("t", ["second"])
    sched.request("t", ["third"])
    await asyncio.sleep(0.05)
    assert len(batches) == 1
    release.set()
    await until(lambda: len(batches) == 2)
    stop.set()
    await task
    assert batches == [["first"], ["second", "third"]]


async def test_an_overlapping_trigger_starts_a_run_beside_one_in_progress() -> None:
    """
    With overlap, what arrives mid-run starts its own run at once (the takeover of units
    found later); stop drains both, and `running` names the trigger while either runs.
    """
    batches: list[list[Any]] = []
    release = asyncio.Event()

    async def on_demand(items: list[Any]) -> None:
        batches.append(items)
        await release.wait()

    sched = scheduler([], [Trigger("t", "takeover", on_demand, window=0.01, overlap=True)])
    stop = asyncio.Event()
    task = asyncio.create_task(sched.run(stop))
    sched.request("t", ["first"])
    await until(lambda: len(batches) == 1)
    sched.request("t", ["second"])
    await until(lambda: len(batches) == 2)  # the first run is still going
    assert sched.running == ["t"]
    stop.set()
    await asyncio.sleep(0.05)
    assert not task.done()  # draining both runs
    release.set()
    assert SchedulerSummary(finished=2, failed=0, cancelled=0) == await task
    assert batches == [["first"], ["second"]]
    assert sched.running == []


async def test_overlapping_runs_past_the_drain_deadline_are_cancelled() -> None:
    """Every run of an overlapping trigger still going at the drain deadline is cancelled."""
    started: list[Any] = []

    async def stuck(items: list[Any]) -> None:
        started.extend(items)
        await asyncio.Event().wait()

    sched = scheduler([], [Trigger("t", "takeover", stuck, window=0.0, overlap=True)], drain=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(sched.run(stop))
    sched.request("t", ["a"])
    await until(lambda: started == ["a"])
    sched.request("t", ["b"])
    await until(lambda: started == ["a", "b"])
    stop.set()
    assert SchedulerSummary(finished=0, failed=0, cancelled=2) == await task


async def test_a_crashing_job_is_logged_and_the_others_go_on() -> None:
    """An unexpected exception in one run is logged with its traceback; scheduling continues."""
    clock = FakeClock()
    calls = 0
    outcomes: list[tuple[str, str]] = []

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("bug in a job")

    sched = scheduler(
        [Job("flaky", "test", HOUR, flaky)],
        clock=clock,
        observe=lambda kind, outcome: outcomes.append((kind, outcome)),
    )
    stop = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(sched.run(stop))
        await until(lambda: calls == 1)
        clock.advance(HOUR)
        await until(lambda: calls == 2)
        stop.set()
        summary = await task
    assert SchedulerSummary(finished=1, failed=1, cancelled=0) == summary
    assert outcomes == [("test", "failed"), ("test", "finished")]
    crash = [e for e in logs if e["event"] == "scheduler.run_crashed"]
    assert [e["job"] for e in crash] == ["flaky"]
    assert crash[0]["exc_info"] is True


async def test_cancelling_run_cancels_every_run_at_once() -> None:
    """Cancelling the scheduler itself (a forced exit) cancels runs without a drain."""
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = asyncio.create_task(
        scheduler([Job("s", "test", HOUR, stuck)], drain=60).run(asyncio.Event())
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(cancelled.wait(), 1.0)
