"""RetryPolicy.call: the bare first attempt counts as an attempt; only TransientError retries."""

from __future__ import annotations

import pytest

from drd.errors import InvalidManifest, RegistryUnavailable
from drd.retry import RetryPolicy


async def test_a_lasting_failure_costs_exactly_the_attempts_and_each_retry_is_heard() -> None:
    heard: list[tuple[str, int]] = []
    policy = RetryPolicy(
        attempts=4,
        budget_s=30.0,
        wait_initial=0.0,
        wait_max=0.0,
        on_retry=lambda op, state: heard.append((op, state.attempt_number)),
    )
    calls = 0

    async def down() -> str:
        nonlocal calls
        calls += 1
        raise RegistryUnavailable(f"down ({calls})")

    with pytest.raises(RegistryUnavailable, match=r"down \(4\)"):
        await policy.call("registry.ping", down)
    assert calls == 4
    assert heard == [("registry.ping", 1), ("registry.ping", 2), ("registry.ping", 3)]


async def test_one_failure_then_success_returns_the_value() -> None:
    calls = 0

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RegistryUnavailable("once")
        return 42

    assert await RetryPolicy.no_wait(attempts=2).call("op", flaky) == 42
    assert calls == 2


async def test_a_permanent_error_is_not_retried() -> None:
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise InvalidManifest("bad bytes")

    with pytest.raises(InvalidManifest, match="bad bytes"):
        await RetryPolicy.no_wait(attempts=5).call("op", broken)
    assert calls == 1
