"""
The orphan watch: a dead node's units are taken over within about one lease TTL.

In a cluster every live node looks, every third of ``[state] lease_ttl``, for units whose
holder stopped renewing before it released them (`drd.state.leases.orphaned`: the node
died, or lost PostgreSQL for longer than the TTL). For each policy with some, it asks
for a pass of that policy limited to those repositories: the trigger
``takeover:<policy>``, whose runs may overlap (units found a poll later do not wait for
the first pass to end). The pass claims them through the usual `LeaseGate`, so two
survivors never take the same unit and the fence before every tag write stays. Without
the watch a unit waited for a survivor's next scheduled pass: up to TTL + interval.

`Takeovers` is what one node has asked for: a unit is asked for once while its pass
runs, and after a pass that could not claim it (its source unreachable) not again for
one TTL, not at every poll. With SQLite (one node) there is no watch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from drd.errors import StateError

__all__ = ["Takeovers", "watch_orphans"]


@dataclass
class Takeovers:
    """The orphaned units (policy, repository) this node asked to take over, and when next."""

    busy: set[tuple[str, str]] = field(default_factory=set)
    not_before: dict[tuple[str, str], float] = field(default_factory=dict)

    def wanted(self, policy: str, repositories: Iterable[str], now: float) -> list[str]:
        """Of *repositories* found orphaned in *policy*, those to ask for now (then busy)."""
        self.not_before = {key: at for key, at in self.not_before.items() if at > now}
        asked = []
        for repository in repositories:
            key = (policy, repository)
            if key in self.busy or key in self.not_before:
                continue
            self.busy.add(key)
            asked.append(repository)
        return asked

    def over(self, policy: str, repositories: Iterable[str], now: float, retry_in: float) -> None:
        """The pass taking *repositories* over ended: ask again no sooner than *retry_in*."""
        for repository in repositories:
            key = (policy, repository)
            self.busy.discard(key)
            if retry_in > 0:
                self.not_before[key] = now + retry_in


async def watch_orphans(
    find: Callable[[], Awaitable[dict[str, list[str]]]],
    take: Callable[[str, list[str]], None],
    stop: asyncio.Event,
    *,
    period: float,
    longest: float,
) -> None:
    """
    Until *stop*: every *period* seconds *find* the orphaned units per policy and hand
    each policy's to *take*. While the state cannot be reached the period doubles up to
    *longest* (the heartbeat reports the outage; this says nothing more).
    """
    delay = period
    while not stop.is_set():
        try:
            found = await find()
        except StateError:
            delay = min(delay * 2, longest)
        else:
            delay = period
            for policy, repositories in found.items():
                take(policy, repositories)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stop.wait()
