"""RetryPolicy over tenacity: what is retryable, how long to wait, and who hears of it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog
import tenacity

from drd.errors import RateLimited, TransientError

log = structlog.get_logger(__name__)

T = TypeVar("T")

RetryHook = Callable[[str, tenacity.RetryCallState], None]


def _ignore(op: str, state: tenacity.RetryCallState) -> None:
    """The default hook: retries are only logged."""


@dataclass(frozen=True)
class RetryPolicy:
    """
    How one request is retried: only `TransientError`, bounded by attempts and total time.

    A `RateLimited` error's ``retry_after`` is honoured (capped by ``wait_max_rate_limit``);
    every other wait is exponential with jitter.
    """

    attempts: int = 5
    budget_s: float = 60.0
    wait_initial: float = 0.2
    wait_max: float = 10.0
    wait_max_rate_limit: float = 60.0
    on_retry: RetryHook = _ignore

    @classmethod
    def no_wait(cls, attempts: int = 2) -> RetryPolicy:
        """For tests: retry at once, never sleep through a backoff."""
        return cls(attempts=attempts, budget_s=30.0, wait_initial=0.0, wait_max=0.0)

    def for_op(self, op: str) -> tenacity.AsyncRetrying:
        """An AsyncRetrying for one request named *op* (e.g. ``registry.get_manifest``)."""
        return tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception_type(TransientError),
            stop=tenacity.stop_after_attempt(self.attempts)
            | tenacity.stop_after_delay(self.budget_s),
            wait=self._wait,
            before_sleep=lambda state: self._before_sleep(op, state),
            reraise=True,
        )

    async def call(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        """
        ``await fn()``, retried per this policy as the request named *op*.

        The first attempt runs bare: a no-op pass sends thousands of requests that never
        fail, and building tenacity's machinery for each cost more CPU than the request.
        Only a `TransientError` pays for it; the failure counts as the first attempt.
        """
        try:
            return await fn()
        except TransientError as exc:
            first: TransientError | None = exc
        async for attempt in self.for_op(op):
            with attempt:
                if first is not None:
                    failed, first = first, None
                    raise failed
                return await fn()
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self.wait_max_rate_limit)
        backoff = tenacity.wait_random_exponential(multiplier=self.wait_initial, max=self.wait_max)
        return float(backoff(state)) if self.wait_initial > 0 else 0.0

    def _before_sleep(self, op: str, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "retry.scheduled",
            op=op,
            attempt=state.attempt_number,
            wait_s=round(wait, 3),
            error=type(exc).__name__,
            detail=str(exc)[:200],
        )
        self.on_retry(op, state)
