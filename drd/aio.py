"""Async helpers every use case shares: `run_all` (a task group that raises drd's own error),
`InFlight` (at most one copy per key at a time), `KeyedLocks`, `exception_leaves`,
`alongside` (a background task for the duration of a block)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable, Iterable, Sequence
from typing import Any


class InFlight:
    """Share in-flight work by key: a blob shared by many images is fetched once."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Task[Any]] = {}

    async def once(self, key: Hashable, work: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """Run *work* unless a task for *key* is already running; await its outcome."""
        if (task := self._running.get(key)) is None:
            task = asyncio.create_task(work())
            self._running[key] = task
            task.add_done_callback(lambda done: self._settle(key, done))
        # One waiter giving up must not cancel the others' copy.
        return await asyncio.shield(task)

    def _settle(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        self._running.pop(key, None)
        # Retrieved here, not only by waiters: when every waiter was cancelled, asyncio
        # would otherwise log "Task exception was never retrieved".
        if not task.cancelled():
            task.exception()

    async def aclose(self) -> None:
        """Cancel copies still running at shutdown: shielded tasks have no other owner."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class KeyedLocks:
    """One asyncio.Lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        """Hold the lock for *key* for the duration of the block."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    @contextlib.asynccontextmanager
    async def hold_all(self, keys: Sequence[Hashable]) -> AsyncIterator[None]:
        """Hold every lock of *keys*; callers pass them sorted, so no two wait on each other."""
        async with contextlib.AsyncExitStack() as stack:
            for key in keys:
                await stack.enter_async_context(self.hold(key))
            yield


def exception_leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions in *group*, nested groups flattened, in order."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(exception_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


async def run_all(coros: Iterable[Coroutine[Any, Any, None]]) -> None:
    """
    Run *coros* in one task group; on failure, cancel the rest and raise the first error
    itself, not an ExceptionGroup, so callers and the CLI see drd's own error types.
    """
    try:
        async with asyncio.TaskGroup() as group:
            for coro in coros:
                group.create_task(coro)
    except BaseExceptionGroup as group_error:
        raise _first(group_error) from None


def _first(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


@contextlib.asynccontextmanager
async def alongside(work: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run *work* as a task while the block runs; cancel it, and wait for it, at the end."""
    task = asyncio.create_task(work)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
