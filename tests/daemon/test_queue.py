"""
The shared push queue (drd.app.queue over the ``queue`` table): the same tests against
SQLite and PostgreSQL, its forward migration on an older SQLite file, and `settle`.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from drd.app.queue import PushQueue, settle
from drd.errors import StateError
from drd.replicate.report import PolicyReport
from drd.state import State
from drd.state.base import QueuedPush
from drd.state.leases import cluster, unclaimed
from drd.state.postgres import Connection, PostgresState
from tests.daemon.test_state import Backend


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend(tmp_path)
    return Backend(tmp_path, request.getfixturevalue("postgres_url"))


def pairs(entries: list[QueuedPush]) -> list[tuple[str, str]]:
    return [(e.repository, e.tag) for e in entries]


async def test_identical_waiting_pushes_are_queued_once(backend: Backend) -> None:
    """The same tag announced twice (two webhooks, two nodes) waits once; another tag apart."""
    async with await backend.open() as state:
        await state.enqueue("p", [("team/app", "v1"), ("team/app", "v1")], 1.0)
        await state.enqueue("p", [("team/app", "v1"), ("team/app", "v2")], 2.0)
        await state.enqueue("other", [("team/app", "v1")], 2.0)
        depth = await state.queue_depth()
        taken = await state.claim_queued("p", "a", ttl=30, limit=10)
        # A push of v1 while a node works on v1: it may have read the old digest, so it waits.
        await state.enqueue("p", [("team/app", "v1")], 3.0)
        after = await state.queue_depth()
    assert depth == {"other": 1, "p": 2}
    assert pairs(taken) == [("team/app", "v1"), ("team/app", "v2")]
    assert after == {"other": 1, "p": 1}


async def test_two_nodes_take_different_entries(backend: Backend) -> None:
    """Nodes taking at once never get the same entry; together they get every one."""
    async with await backend.open() as state:
        await state.enqueue("p", [(f"r{i}", "v1") for i in range(20)], 1.0)
        a, b = await asyncio.gather(
            state.claim_queued("p", "a", ttl=30, limit=12),
            state.claim_queued("p", "b", ttl=30, limit=12),
        )
        none_left = await state.claim_queued("p", "c", ttl=30, limit=12)
        depth = await state.queue_depth()
    assert not {e.id for e in a} & {e.id for e in b}
    assert sorted(pairs(a) + pairs(b)) == sorted((f"r{i}", "v1") for i in range(20))
    assert none_left == []
    assert depth == {}


async def test_a_dead_nodes_entries_are_taken_by_another_after_the_ttl(backend: Backend) -> None:
    """
    A node that stops renewing loses its entries after the TTL: another node takes them
    with a new token, and the old holder can neither renew nor finish them any more.
    """
    async with await backend.open() as state:
        await state.enqueue("p", [("team/app", "v1")], 1.0)
        [held] = await state.claim_queued("p", "dead", ttl=0.5, limit=10)
        before = await state.claim_queued("p", "b", ttl=30, limit=10)
        await asyncio.sleep(0.8)
        assert await state.queue_depth() == {"p": 1}  # unclaimed again: the queue depth
        [taken] = await state.claim_queued("p", "b", ttl=30, limit=10)
        renewed = await state.renew_queued("dead", [held], 30)
        await state.finish_queued("dead", [held], done=True)
        still = await state.renew_queued("b", [taken], 30)
        await state.finish_queued("b", [taken], done=True)
        left = await state.queue_depth()
    assert before == []
    assert (taken.id, taken.repository, taken.tag) == (held.id, "team/app", "v1")
    assert taken.token > held.token
    assert renewed == 0
    assert still == 1
    assert left == {}


async def test_entries_put_back_are_due_again_after_their_delay(backend: Backend) -> None:
    """Put back with a delay: counted as waiting at once, takeable only after the delay."""
    async with await backend.open() as state:
        await state.enqueue("p", [("team/app", "v1")], 1.0)
        entries = await state.claim_queued("p", "a", ttl=30, limit=10)
        await state.finish_queued("a", entries, done=False, retry_in=0.6)
        waiting, due = await state.queue_depth(), await state.queue_depth(due=True)
        early = await state.claim_queued("p", "b", ttl=30, limit=10)
        await asyncio.sleep(0.8)
        late = await state.claim_queued("p", "b", ttl=30, limit=10)
    assert (waiting, due) == ({"p": 1}, {})
    assert early == []
    assert pairs(late) == [("team/app", "v1")]


async def test_entries_put_back_beside_a_waiting_push_of_the_same_tag_merge(
    backend: Backend,
) -> None:
    """A held entry put back while the same tag waits again: one entry, not two."""
    async with await backend.open() as state:
        await state.enqueue("p", [("team/app", "v1")], 1.0)
        held = await state.claim_queued("p", "a", ttl=30, limit=10)
        await state.enqueue("p", [("team/app", "v1")], 2.0)
        await state.finish_queued("a", held, done=False)
        depth = await state.queue_depth()
        again = await state.claim_queued("p", "b", ttl=30, limit=10)
    assert depth == {"p": 1}
    assert pairs(again) == [("team/app", "v1")]


async def test_a_node_starting_again_puts_back_what_its_past_life_held(backend: Backend) -> None:
    """free_queued: the entries a node held are due at once, for any node."""
    async with await backend.open() as state:
        await state.enqueue("p", [("a", "v1"), ("b", "v1")], 1.0)
        await state.claim_queued("p", "n1", ttl=30, limit=10)
        await state.free_queued("n1")
        taken = await state.claim_queued("p", "n2", ttl=30, limit=10)
    assert pairs(taken) == [("a", "v1"), ("b", "v1")]


async def test_queued_pushes_survive_a_restart(backend: Backend) -> None:
    """Entries are in the database: a state opened again still holds them."""
    async with await backend.open() as state:
        await state.enqueue("p", [("team/app", "v1")], 1.0)
    async with await backend.open() as state:
        taken = await state.claim_queued("p", "a", ttl=30, limit=10)
    assert pairs(taken) == [("team/app", "v1")]


async def test_status_counts_queued_pushes_in_the_unclaimed_work(postgres_url: str) -> None:
    """`drd status` and drd_cluster_unclaimed_units count waiting pushes; held ones not."""
    async with await PostgresState.open(Connection(postgres_url)) as state:
        await state.enqueue("p", [("a", "v1"), ("b", "v1"), ("c", "v1")], 1.0)
        await state.claim_queued("p", "n1", ttl=30, limit=1)
        found = await cluster(state, ttl=30)
        depth = await unclaimed(state)
    assert (found["unclaimed"], found["queued"], depth) == (2, 2, 2)


# ---------------------------------------------------------------------- SQLite migration

_SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('schema', '1');
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL);
"""


async def test_an_older_sqlite_file_gets_the_queue_by_a_forward_step(tmp_path: Path) -> None:
    """A state.db at schema 1 (no queue) is brought to 2 when opened; nothing else changes."""
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA_1)
        db.execute("INSERT INTO runs (job) VALUES ('kept')")
    db.close()
    async with await State.open(tmp_path) as state:
        migrated = state.migrated
        await state.enqueue("p", [("team/app", "v1")], 1.0)
        depth = await state.queue_depth()
    async with await State.open(tmp_path) as state:
        again = state.migrated
    with sqlite3.connect(path) as db:
        version = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        kept = db.execute("SELECT job FROM runs").fetchall()
    db.close()
    assert migrated == [2]
    assert again == []
    assert depth == {"p": 1}
    assert version == ("2",)
    assert kept == [("kept",)]


async def test_a_newer_sqlite_file_is_refused_unchanged(tmp_path: Path) -> None:
    """A state.db written by a newer drd is not opened (nor touched) by this one."""
    async with await State.open(tmp_path):
        pass
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    db.close()
    with pytest.raises(StateError, match=r"schema version 99, newer than this drd knows"):
        await State.open(tmp_path)
    with sqlite3.connect(path) as db:
        version = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    db.close()
    assert version == ("99",)


# ---------------------------------------------------------------------- settle


def _entry(i: int, repository: str) -> QueuedPush:
    return QueuedPush(id=i, policy="p", repository=repository, tag="v1", token=i)


ENTRIES = [_entry(1, "a"), _entry(2, "b")]


def test_a_cancelled_pass_puts_every_entry_back_due_at_once() -> None:
    settled = settle(ENTRIES, None, ttl=30, cancelled=True)
    assert (settled.done, settled.again, settled.retry_in) == ([], ENTRIES, 0.0)


def test_a_pass_that_raised_puts_every_entry_back_due_after_one_ttl() -> None:
    settled = settle(ENTRIES, None, ttl=30)
    assert (settled.done, settled.again, settled.retry_in) == ([], ENTRIES, 30)


def test_a_pass_that_could_not_reach_the_source_retries_after_one_ttl() -> None:
    report = PolicyReport("p", "src", error="source unreachable")
    settled = settle(ENTRIES, report, ttl=30)
    assert (settled.done, settled.again, settled.retry_in) == ([], ENTRIES, 30)


def test_entries_of_a_repository_another_node_held_go_back_the_rest_are_done() -> None:
    report = PolicyReport("p", "src", elsewhere=1, elsewhere_repositories=["b"])
    settled = settle(ENTRIES, report, ttl=30)
    assert settled.done == [ENTRIES[0]]
    assert settled.again == [ENTRIES[1]]
    assert settled.retry_in == 10


async def test_held_entries_are_renewed_while_their_pass_runs(backend: Backend) -> None:
    """PushQueue.held renews every third of the TTL: a pass longer than the TTL keeps them."""
    async with await backend.open() as state:
        queue = PushQueue(state, "a", ttl=0.6)
        await state.enqueue("p", [("team/app", "v1")], 1.0)
        entries = await queue.take("p")
        async with queue.held(entries):
            await asyncio.sleep(1.2)
            stolen = await state.claim_queued("p", "b", ttl=30, limit=10)
        await asyncio.sleep(0.9)
        taken = await state.claim_queued("p", "b", ttl=30, limit=10)
    assert stolen == []
    assert pairs(taken) == [("team/app", "v1")]
