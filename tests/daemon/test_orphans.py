"""The orphan watch (drd.daemon.orphans): what it asks for, when, and how it backs off."""

from __future__ import annotations

import asyncio
import itertools

from drd.daemon.orphans import Takeovers, watch_orphans
from drd.errors import StateError


def test_a_unit_is_asked_for_once_while_its_takeover_runs() -> None:
    takeovers = Takeovers()
    assert takeovers.wanted("p", ["a", "b"], now=0.0) == ["a", "b"]
    assert takeovers.wanted("p", ["a", "b", "c"], now=1.0) == ["c"]  # a and b are busy
    assert takeovers.wanted("q", ["a"], now=1.0) == ["a"]  # another policy, another unit
    takeovers.over("p", ["a", "b"], now=2.0, retry_in=0.0)
    assert takeovers.wanted("p", ["a", "b"], now=2.0) == ["a", "b"]


def test_a_unit_its_pass_could_not_claim_waits_before_it_is_asked_for_again() -> None:
    takeovers = Takeovers()
    assert takeovers.wanted("p", ["a"], now=0.0) == ["a"]
    takeovers.over("p", ["a"], now=1.0, retry_in=10.0)
    assert takeovers.wanted("p", ["a"], now=5.0) == []
    assert takeovers.wanted("p", ["a"], now=11.5) == ["a"]
    assert takeovers.not_before == {}


async def test_the_watch_hands_over_what_it_finds_and_backs_off_while_the_state_is_away() -> None:
    answers: list[dict[str, list[str]] | StateError] = [
        {"p": ["a"]},
        StateError("down"),
        StateError("down"),
        {"p": ["b"], "q": ["c"]},
    ]
    asked_at: list[float] = []
    taken: list[tuple[str, list[str]]] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def find() -> dict[str, list[str]]:
        asked_at.append(loop.time())
        answer = answers.pop(0)
        if not answers:
            stop.set()
        if isinstance(answer, StateError):
            raise answer
        return answer

    await asyncio.wait_for(
        watch_orphans(find, lambda p, r: taken.append((p, r)), stop, period=0.05, longest=0.15),
        timeout=5,
    )
    assert taken == [("p", ["a"]), ("p", ["b"]), ("q", ["c"])]
    gaps = [b - a for a, b in itertools.pairwise(asked_at)]
    assert gaps[1] >= 0.099  # doubled after the first failure
    assert gaps[2] >= 0.149  # then capped at *longest*
