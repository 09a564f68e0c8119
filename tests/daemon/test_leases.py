"""
Units of work shared by the nodes of a cluster (drd.state.leases) against a real
PostgreSQL, and replication passes of two nodes at once against real registries.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from drd.config import Settings, load_settings
from drd.daemon.scheduler import Job
from drd.daemon.service import singleton
from drd.errors import LeaseLost
from drd.replicate.runner import run_policy
from drd.state import State
from drd.state.base import SINGLETONS
from drd.state.leases import LeaseGate, leave, orphaned, unclaimed
from drd.state.postgres import Connection, PostgresState
from tests.clients import RETRY, open_client, policy_for
from tests.faults import Fault, FaultProxy
from tests.images import make_image, push_image
from tests.servers import LocalRegistry


async def _open(url: str) -> PostgresState:
    return await PostgresState.open(Connection(url))


async def test_a_unit_is_held_by_one_node_until_its_lease_expires(postgres_url: str) -> None:
    """A second node cannot claim a held unit; after the TTL it can, with a newer token."""
    async with await _open(postgres_url) as state:
        a = LeaseGate(state, node="a", policy="p", ttl=1.0)
        b = LeaseGate(state, node="b", policy="p", ttl=1.0)
        first = await a.claim("team/app")
        refused = await b.claim("team/app")
        await asyncio.sleep(1.3)  # a stops renewing, as a killed node does
        taken = await b.claim("team/app")
    assert first is not None
    assert refused is None
    assert taken is not None
    assert taken > first


async def test_the_fence_refuses_a_node_whose_lease_was_taken(postgres_url: str) -> None:
    """Once another node holds the unit, the old holder's check raises LeaseLost."""
    async with await _open(postgres_url) as state:
        a = LeaseGate(state, node="a", policy="p", ttl=1.0)
        b = LeaseGate(state, node="b", policy="p", ttl=30.0)
        token = await a.claim("team/app")
        assert token is not None
        await a.check("team/app", token)  # held: passes
        await asyncio.sleep(1.3)
        with pytest.raises(LeaseLost, match="node a no longer holds p/team/app"):
            await a.check("team/app", token)  # expired, even before anyone took it
        assert await b.claim("team/app") is not None
        with pytest.raises(LeaseLost):
            await a.check("team/app", token)
        # A late release by the old holder does not free b's claim.
        await a.release("team/app", token, done=True)
        assert await LeaseGate(state, node="c", policy="p").claim("team/app") is None


async def test_the_heartbeat_keeps_a_lease_past_its_ttl(postgres_url: str) -> None:
    """While `running`, renewals every third of the TTL keep the unit this node's."""
    async with await _open(postgres_url) as state:
        a = LeaseGate(state, node="a", policy="p", ttl=0.9)
        b = LeaseGate(state, node="b", policy="p", ttl=0.9)
        async with a.running():
            token = await a.claim("team/app")
            assert token is not None
            await asyncio.sleep(2.0)  # more than two TTLs
            refused = await b.claim("team/app")
            await a.check("team/app", token)
    assert refused is None


async def test_a_unit_done_recently_is_not_taken_again(postgres_url: str) -> None:
    """Released as done, a unit is left alone for *fresh* seconds; released failed, it is not."""
    async with await _open(postgres_url) as state:
        a = LeaseGate(state, node="a", policy="p", fresh=300.0)
        b = LeaseGate(state, node="b", policy="p", fresh=300.0)
        now = LeaseGate(state, node="c", policy="p", fresh=0.0)
        done = await a.claim("done/repo")
        failed = await a.claim("failed/repo")
        assert done is not None
        assert failed is not None
        await a.release("done/repo", done, done=True)
        await a.release("failed/repo", failed, done=False)
        depth = await unclaimed(state)
        assert await b.claim("done/repo") is None
        assert await b.claim("failed/repo") is not None
        assert await now.claim("done/repo") is not None  # a push does not wait
    assert depth == 2


async def test_units_are_per_policy(postgres_url: str) -> None:
    """The same repository under two policies is two units."""
    async with await _open(postgres_url) as state:
        one = await LeaseGate(state, node="a", policy="p1").claim("team/app")
        two = await LeaseGate(state, node="b", policy="p2").claim("team/app")
    assert (one is not None, two is not None) == (True, True)


async def test_orphaned_units_are_those_claimed_whose_lease_ran_out_unreleased(
    postgres_url: str,
) -> None:
    """
    A unit whose holder stopped renewing is orphaned once its lease runs out, per policy;
    units released (done or failed), held unexpired, freed by a node's leave, or of a
    singleton job are not. Claimed again, it is no longer orphaned.
    """
    async with await _open(postgres_url) as state:
        dead = LeaseGate(state, node="dead", policy="p", ttl=1.0)
        other = LeaseGate(state, node="dead", policy="q", ttl=1.0)
        live = LeaseGate(state, node="live", policy="p", ttl=60.0)
        gone = LeaseGate(state, node="gone", policy="p", ttl=1.0)
        job = LeaseGate(state, node="dead", policy=SINGLETONS, ttl=1.0)
        for repository in ("team/b", "team/a"):
            assert await dead.claim(repository) is not None
        assert await other.claim("team/a") is not None
        assert await job.claim("snapshot") is not None
        assert await live.claim("team/held") is not None
        for repository, done in (("team/done", True), ("team/failed", False)):
            token = await dead.claim(repository)
            assert token is not None
            await dead.release(repository, token, done=done)
        assert await gone.claim("team/left") is not None
        await leave(state, "gone")
        before = await orphaned(state)
        await asyncio.sleep(1.3)  # the dead node's leases run out
        found = await orphaned(state)
        taken = await LeaseGate(state, node="live", policy="p", ttl=60.0).claim("team/a")
        after = await orphaned(state)
    assert before == {}
    assert found == {"p": ["team/a", "team/b"], "q": ["team/a"]}
    assert taken is not None
    assert after == {"p": ["team/b"], "q": ["team/a"]}


def _tag_puts(proxy: FaultProxy) -> Counter[str]:
    """Manifest PUTs by tag (not by digest) per repository, as the target saw them."""
    counts: Counter[str] = Counter()
    for seen in proxy.requests("manifest_put"):
        match = re.fullmatch(r"/v2/(.+)/manifests/([^/]+)", seen.path)
        assert match is not None
        if not match.group(2).startswith("sha256:"):
            counts[match.group(1)] += 1
    return counts


async def test_two_nodes_copy_every_repository_once(
    postgres_url: str, source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """
    Two passes of one policy at once, on two nodes sharing PostgreSQL: every repository
    arrives, each by exactly one node (one tag PUT per repository at the target).
    """
    repos = [f"{repo}/r{i}" for i in range(8)]
    for name in repos:
        await push_image(source_registry, name, make_image(name), "v1")
    with FaultProxy(target_registry.url) as proxy:
        # Slow writes a little, so both passes are in flight together.
        proxy.add(Fault.delay(0.05), kinds="manifest_put")
        async with (
            await _open(postgres_url) as state_a,
            await _open(postgres_url) as state_b,
            open_client(source_registry, "src") as src_a,
            open_client(source_registry, "src") as src_b,
            open_client(proxy.url, "dst") as dst_a,
            open_client(proxy.url, "dst") as dst_b,
        ):
            policy = policy_for(*repos, name="p")
            gate_a = LeaseGate(state_a, node="a", policy="p", fresh=60.0)
            gate_b = LeaseGate(state_b, node="b", policy="p", fresh=60.0)
            first, second = await asyncio.gather(
                run_policy(policy, src_a, {"dst": dst_a}, RETRY, gate=gate_a),
                run_policy(policy, src_b, {"dst": dst_b}, RETRY, gate=gate_b),
            )
        puts = _tag_puts(proxy)
    assert first.ok, first.to_json()
    assert second.ok, second.to_json()
    assert first.count("copied") + second.count("copied") == len(repos)
    assert first.elsewhere + second.elsewhere == len(repos)
    assert puts == dict.fromkeys(repos, 1)
    async with open_client(target_registry) as dst:
        for name in repos:
            assert await dst.head_manifest(name, "v1") is not None, name


async def test_a_node_that_lost_its_lease_does_not_write_the_tag(
    postgres_url: str, source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """
    The lease runs out while the copy is under way (the node stalls past its TTL): the
    fence before the tag write refuses, the item fails as LeaseLost, no tag appears.
    """
    await push_image(source_registry, repo, make_image(repo), "v1")
    with FaultProxy(target_registry.url) as proxy:
        # The last blob upload stalls longer than the lease lives; no heartbeat runs.
        proxy.add(Fault.delay(1.5), kinds="upload_put")
        async with (
            await _open(postgres_url) as state,
            open_client(source_registry, "src") as src,
            open_client(proxy.url, "dst") as dst,
        ):
            gate = LeaseGate(state, node="a", policy="p", ttl=1.0)
            report = await run_policy(
                policy_for(repo, name="p"), src, {"dst": dst}, RETRY, gate=gate
            )
        tag_puts = proxy.calls("manifest_put", path=r"/manifests/v1$")
    [item] = report.items
    assert (item.outcome, item.error) == ("failed", "LeaseLost")
    assert tag_puts == 0
    async with open_client(target_registry) as dst:
        assert await dst.head_manifest(repo, "v1") is None


# --- singleton jobs -----------------------------------------------------------------------


def _cluster_settings(tmp_path: Path, url: str, node: str) -> Settings:
    path = tmp_path / f"{node}.toml"
    path.write_text(
        'version = 1\n[endpoints.src]\nurl = "http://127.0.0.1:1"\n'
        f'[daemon]\nnode = "{node}"\nstate_dir = "{tmp_path / node}"\n'
        f'[state]\nurl = "{url}"\nlease_ttl = "1s"\n'
    )
    return load_settings(path)


def _counting_job(runs: list[str], node: str, seconds: float = 0.3) -> Job:
    async def run() -> None:
        runs.append(node)
        await asyncio.sleep(seconds)

    return Job("snapshot", "snapshot", timedelta(minutes=1), run)


async def test_a_singleton_job_runs_on_one_node(tmp_path: Path, postgres_url: str) -> None:
    """Three nodes fire the same job together: it runs once; fired again soon, not at all."""
    runs: list[str] = []
    states = [await _open(postgres_url) for _ in range(3)]
    try:
        jobs = [
            singleton(_cluster_settings(tmp_path, postgres_url, n), s, _counting_job(runs, n))
            for n, s in zip("abc", states, strict=True)
        ]
        await asyncio.gather(*(job.run() for job in jobs))
        await asyncio.gather(*(job.run() for job in jobs))
    finally:
        for state in states:
            await state.close()
    assert len(runs) == 1


async def test_a_dead_holders_job_is_taken_over_once(tmp_path: Path, postgres_url: str) -> None:
    """
    The node running the job dies (no release, no heartbeat): another node waiting on it
    runs the job after one lease TTL, and only once.
    """
    runs: list[str] = []
    async with await _open(postgres_url) as state_a, await _open(postgres_url) as state_b:
        dead = LeaseGate(state_a, node="a", policy=SINGLETONS, ttl=1.0)
        assert await dead.claim("snapshot") is not None  # a took it, then was killed
        job = singleton(
            _cluster_settings(tmp_path, postgres_url, "b"), state_b, _counting_job(runs, "b", 0)
        )
        await job.run()
        await job.run()
    assert runs == ["b"]


async def test_with_sqlite_a_job_is_left_as_it_is(tmp_path: Path) -> None:
    """One node: the job is not wrapped."""
    path = tmp_path / "drd.toml"
    path.write_text('version = 1\n[endpoints.src]\nurl = "http://127.0.0.1:1"\n')
    job = _counting_job([], "a")
    async with await State.open(tmp_path) as state:
        assert singleton(load_settings(path), state, job) is job
