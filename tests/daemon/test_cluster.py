"""
Several `drd run` processes on one PostgreSQL, against real registries: every repository
copied, none by two nodes; a SIGKILLed node's units finished by the others; `drd status`
lists the nodes. The target sits behind the fault proxy, which counts tag writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import signal
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from drd.oci.digest import Digest
from tests.clients import open_client
from tests.daemon.process import (
    Daemon,
    daemon_env,
    render_config,
    run_drd,
    running_daemon,
    wait_for,
)
from tests.faults import Fault, FaultProxy
from tests.images import make_image, push_image
from tests.postgres import local_postgres
from tests.servers import LocalRegistry, free_port

TTL_S = 2


def _tag_puts(proxy: FaultProxy) -> Counter[str]:
    """Manifest PUTs by tag (not by digest) per repository, as the target saw them."""
    counts: Counter[str] = Counter()
    for seen in proxy.requests("manifest_put"):
        match = re.fullmatch(r"/v2/(.+)/manifests/([^/]+)", seen.path)
        if match is not None and not match.group(2).startswith("sha256:"):
            counts[match.group(1)] += 1
    return counts


def _config(
    tmp_path: Path,
    source: str,
    target: str,
    repos: list[str],
    url: str,
    *,
    interval: str = "3s",
    daemon: dict[str, object] | None = None,
) -> Path:
    """One config every node shares; listen, node name and state_dir come from each env."""
    path = tmp_path / "drd.toml"
    path.write_text(
        render_config(
            {"src": {"url": source}, "dst": {"url": target}},
            [
                {
                    "name": "p",
                    "source": "src",
                    "targets": ["dst"],
                    "repositories": repos,
                    "interval": interval,
                    "concurrency": 2,
                }
            ],
            {"jitter": 0.0, **(daemon or {})},
            extra=f'[state]\nurl = "{url}"\nlease_ttl = "{TTL_S}s"\n',
        )
    )
    return path


@contextlib.contextmanager
def _node(
    config: Path, tmp_path: Path, name: str, extra_env: dict[str, str] | None = None
) -> Iterator[Daemon]:
    work = tmp_path / name
    work.mkdir()
    port = free_port()
    env = daemon_env(work / "home")
    env |= {
        "DRD_DAEMON__LISTEN": f"127.0.0.1:{port}",
        "DRD_DAEMON__NODE": name,
        "DRD_DAEMON__STATE_DIR": str(work / "state"),
        **(extra_env or {}),
    }
    with running_daemon(config, work, port, env, stop=signal.SIGTERM) as daemon:
        yield daemon


async def _landed(target: LocalRegistry, repos: list[str], digests: dict[str, Digest]) -> bool:
    async with open_client(target) as dst:
        for name in repos:
            found = await dst.head_manifest(name, "v1")
            if found is None or found.digest != digests[name]:
                return False
    return True


async def _push(source: LocalRegistry, repos: list[str]) -> dict[str, Digest]:
    return {
        name: await push_image(source, name, make_image(name, layers=2), "v1") for name in repos
    }


def _post_push(node: Daemon, token: str, repository: str, tag: str, *, timeout: float = 10) -> int:
    """Send *node* the registry's notification of a push of *repository*:*tag*."""
    event = {
        "id": "e1",
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + "c" * 64,
            "repository": repository,
            "tag": tag,
        },
    }
    request = urllib.request.Request(  # noqa: S310 - loopback URL
        f"{node.url}/webhook",
        data=json.dumps({"events": [event]}).encode(),
        headers={
            "Content-Type": "application/vnd.docker.distribution.events.v1+json",
            "Authorization": f"Bearer {token}",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
        return int(resp.status)


def _tag_puts_of(proxy: FaultProxy, repository: str, tag: str) -> int:
    return proxy.calls("manifest_put", path=rf"^/v2/{re.escape(repository)}/manifests/{tag}$")


def _status(config: Path, tmp_path: Path) -> dict[str, object]:
    result = run_drd("status", "--config", str(config), "--json", env=daemon_env(tmp_path / "s"))
    assert result.returncode == 0, result.stderr.decode()
    document: dict[str, object] = json.loads(result.stdout)
    return document


@pytest.mark.parametrize("nodes", [2, 3])
async def test_nodes_share_the_work_and_copy_each_repository_once(
    nodes: int,
    tmp_path: Path,
    postgres_url: str,
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
) -> None:
    """
    N nodes on one config and one database: every repository arrives with the source's
    digest, each tag written once at the target; `drd status --json` lists the N nodes.
    """
    repos = [f"{repo}/r{i}" for i in range(8)]
    digests = await _push(source_registry, repos)
    with FaultProxy(target_registry.url) as proxy, contextlib.ExitStack() as stack:
        # Slow enough that the first pass is still going when the last node starts.
        proxy.add(Fault.delay(1.0 * nodes), kinds="tags_list")
        proxy.add(Fault.delay(0.5), kinds="upload_put")
        config = _config(tmp_path, source_registry.url, proxy.url, repos, postgres_url)
        daemons = [stack.enter_context(_node(config, tmp_path, f"n{i}")) for i in range(nodes)]
        for _ in range(300):
            if await _landed(target_registry, repos, digests):
                break
            await asyncio.sleep(0.1)
        status = _status(config, tmp_path)
        await asyncio.sleep(4)  # at least one more pass on every node
        puts = _tag_puts(proxy)
        assert all(d.alive() for d in daemons)
        unclaimed = [d.sample("drd_cluster_unclaimed_units") for d in daemons]
        held = [d.sample("drd_node_leases", node=f"n{i}") for i, d in enumerate(daemons)]
    assert await _landed(target_registry, repos, digests)
    assert puts == dict.fromkeys(repos, 1)
    ids = sorted(node["id"] for node in status["nodes"])  # type: ignore[attr-defined]
    assert ids == [f"n{i}" for i in range(nodes)]
    assert all(value is not None and 0 <= value <= len(repos) for value in unclaimed)
    assert all(value is not None for value in held)


async def test_a_killed_nodes_units_are_finished_by_another(
    tmp_path: Path,
    postgres_url: str,
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
) -> None:
    """
    SIGKILL one of two nodes mid-copy; the other, whose next scheduled pass is an hour
    away, takes its units over once their leases run out (the orphan watch): every tag
    lands with the source's digest, none written twice, and the last of the dead node's
    units is claimed within a few TTLs of the kill (the bound is one TTL and one look,
    a third of it), long before any pass. The times are printed for the log.
    """
    repos = [f"{repo}/r{i}" for i in range(6)]
    digests = await _push(source_registry, repos)
    with FaultProxy(target_registry.url) as proxy:
        proxy.add(Fault.delay(3.0), kinds="upload_put")  # a unit lasts past the second's start
        config = _config(
            tmp_path, source_registry.url, proxy.url, repos, postgres_url, interval="1h"
        )
        with _node(config, tmp_path, "first") as first:
            wait_for(lambda: proxy.calls("upload_put") >= 1, 30, "the first node to copy")
            with _node(config, tmp_path, "second") as second:
                held = _held(postgres_url, "first")
                first.proc.kill()
                killed = time.time()
                first.proc.wait(timeout=10)
                landed = None
                for _ in range(600):
                    if await _landed(target_registry, repos, digests):
                        landed = time.time()
                        break
                    await asyncio.sleep(0.1)
                assert second.alive()
                claimed = [
                    _at(e) for e in second.events("lease.claimed") if e["repository"] in held
                ]
        puts = _tag_puts(proxy)
    assert held
    assert landed is not None
    taken = [t for t in claimed if t > killed]
    print(  # the takeover time, for the test log
        f"takeover (lease_ttl {TTL_S}s): SIGKILL of 'first' holding {len(held)} units;"
        f" last claimed by 'second' after {max(taken) - killed:.2f}s;"
        f" every tag landed after {landed - killed:.2f}s"
    )
    assert len(taken) >= len(held)
    assert max(taken) - killed <= 3 * TTL_S  # generous: the watch took them, not a pass
    assert puts == dict.fromkeys(repos, 1)


def _held(url: str, node: str) -> set[str]:
    """The repositories *node* holds an unexpired lease on, as PostgreSQL says."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT repository FROM leases WHERE owner = %s AND expires_at > drd_now()", (node,)
        ).fetchall()
    return {row[0] for row in rows}


def _at(event: dict[str, object]) -> float:
    """When a log line was written (its ISO 8601 timestamp), as epoch seconds."""
    return datetime.fromisoformat(str(event["timestamp"])).timestamp()


async def test_a_webhook_to_a_node_killed_mid_copy_is_taken_by_another(
    tmp_path: Path,
    postgres_url: str,
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
) -> None:
    """
    Node a gets the webhook of a push and is SIGKILLed while copying it (its own way to
    the target stalls); node b, which heard of no push and runs no pass for an hour,
    takes the queued push once a's lease has run out: v2 lands with the source's digest,
    written once, by b (per-node metrics say so under node="b").
    """
    digests = await _push(source_registry, [repo])
    token = "tok-" + "9" * 32
    (tmp_path / "webhook.token").write_text(token + "\n")
    with FaultProxy(target_registry.url) as via_a, FaultProxy(target_registry.url) as via_b:
        config = _config(
            tmp_path,
            source_registry.url,
            via_b.url,
            [repo],
            postgres_url,
            interval="1h",
            daemon={"webhook_token_file": str(tmp_path / "webhook.token")},
        )
        with (
            _node(config, tmp_path, "a", {"DRD_ENDPOINTS__DST__URL": via_a.url}) as a,
            _node(config, tmp_path, "b") as b,
        ):
            for _ in range(300):
                if await _landed(target_registry, [repo], digests):
                    break
                await asyncio.sleep(0.1)
            wait_for(lambda: a.events("replicate.run_finished"), 30, "a's first pass")
            via_a.wait_idle()
            v2 = await push_image(source_registry, repo, make_image(f"{repo}-v2"), "v2")
            seen_by_a = via_a.calls()
            via_a.add(Fault.delay(8.0))  # a's copy stalls at its first target request
            assert _post_push(a, token, repo, "v2") == 202
            wait_for(lambda: via_a.calls() > seen_by_a, 30, "a to start copying v2")
            a.proc.kill()
            a.proc.wait(timeout=10)
            async with open_client(target_registry) as dst:
                for _ in range(300):
                    found = await dst.head_manifest(repo, "v2")
                    if found is not None:
                        break
                    await asyncio.sleep(0.1)
            via_b.wait_idle()
            assert b.alive(), b.describe()
            wait_for(
                lambda: b.sample("drd_replication_runs_total", node="b", trigger="push"),
                10,
                "b's push run on /metrics",
            )
            push_runs = [e for e in b.events("replicate.run_finished") if e.get("job") == "push:p"]
        via_a.wait_idle(timeout=20)
    assert found is not None
    assert found.digest == v2
    assert (_tag_puts_of(via_a, repo, "v2"), _tag_puts_of(via_b, repo, "v2")) == (0, 1)
    assert _tag_puts(via_a) + _tag_puts(via_b) == {repo: 2}  # v1 and v2, each once
    assert [e["copied"] for e in push_runs] == [1]


OUTAGE_S = 30.0


def _outage_lines(node: Daemon, since: float, until: float) -> Counter[str]:
    """Warning and error log lines per event written between *since* and *until*."""
    counts: Counter[str] = Counter()
    for line in node.logs():
        at = datetime.fromisoformat(line.get("timestamp", "1970-01-01T00:00:00+00:00"))
        if line.get("level") in ("warning", "error") and since <= at.timestamp() <= until:
            counts[line["event"]] += 1
    return counts


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_postgresql_down_for_30s_under_two_nodes_loses_and_duplicates_nothing(
    tmp_path: Path, source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """
    PostgreSQL stops for 30 s under two nodes passing every 3 s: both keep running (one
    start each, no crash), /readyz says not ready on both, errors are logged at the
    schedule's pace (no retry storm), a webhook is refused 503 (not lost as a 202); tags
    pushed meanwhile are copied once the database is back, each written exactly once.
    """
    repos = [f"{repo}/r{i}" for i in range(2)]
    digests = await _push(source_registry, repos)
    token = "tok-" + "7" * 32
    (tmp_path / "webhook.token").write_text(token + "\n")
    with local_postgres() as server, FaultProxy(target_registry.url) as proxy:
        url = server.url(server.create_database())
        config = _config(
            tmp_path,
            source_registry.url,
            proxy.url,
            repos,
            url,
            daemon={"webhook_token_file": str(tmp_path / "webhook.token")},
        )
        with _node(config, tmp_path, "a") as a, _node(config, tmp_path, "b") as b:
            nodes = (a, b)
            for node in nodes:
                wait_for(node.ready, 30, "the node to be ready")
            for _ in range(300):
                if await _landed(target_registry, repos, digests):
                    break
                await asyncio.sleep(0.1)
            proxy.wait_idle()
            stopped = time.time()
            server.stop()
            for node in nodes:
                wait_for(lambda n=node: not n.ready(), 30, "/readyz to say not ready")
            during = {
                name: await push_image(source_registry, name, make_image(f"{name}-v2"), "v2")
                for name in repos
            }
            with pytest.raises(urllib.error.HTTPError) as refused:
                # The 503 comes once writing the push to the database has failed, up to
                # its connect timeout (10 s) and more on a loaded machine: wait 30 s.
                _post_push(a, token, repos[0], "v2", timeout=30)
            await asyncio.sleep(max(0.0, stopped + OUTAGE_S - time.time()))
            alive = [node.alive() for node in nodes]
            back = time.time()
            server.start()
            for node in nodes:
                wait_for(node.ready, 60, "/readyz to be ready again")
            async with open_client(target_registry) as dst:
                for _ in range(600):
                    found = {name: await dst.head_manifest(name, "v2") for name in repos}
                    if all(found.values()):
                        break
                    await asyncio.sleep(0.1)
            await asyncio.sleep(4)  # at least one more pass on every node after the copies
            proxy.wait_idle()
            assert all(node.alive() for node in nodes), a.describe() + b.describe()
            starts = [len(node.events("daemon.started")) for node in nodes]
            crashed = [node.events("scheduler.run_crashed") for node in nodes]
            unreachable = [len(node.events("state.unreachable")) for node in nodes]
            storms = [_outage_lines(node, stopped, back) for node in nodes]
        puts = _tag_puts(proxy)
    assert alive == [True, True]
    assert starts == [1, 1]
    assert crashed == [[], []]
    assert unreachable == [1, 1]  # said once per node, not once per attempt
    # Every failing attempt is a scheduled one: a pass every 3 s at most, not a retry loop.
    passes = int(OUTAGE_S / 3) + 2
    assert all(max(counts.values(), default=0) <= passes for counts in storms), storms
    refused.value.close()
    assert refused.value.code == 503
    assert {name: found[name] and found[name].digest for name in repos} == during
    assert puts == dict.fromkeys(repos, 2)  # v1 before, v2 after: each written once


async def test_a_paused_node_whose_lease_expired_writes_no_tag(
    tmp_path: Path,
    postgres_url: str,
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
) -> None:
    """
    SIGSTOP a node mid-copy until its lease has expired and another node has copied the
    repository; after SIGCONT the paused node's fence refuses: the tag is written once.
    """
    digests = await _push(source_registry, [repo])
    with FaultProxy(target_registry.url) as proxy:
        proxy.add(Fault.delay(1.0), kinds="upload_put")
        config = _config(tmp_path, source_registry.url, proxy.url, [repo], postgres_url)
        with _node(config, tmp_path, "paused") as paused:
            wait_for(lambda: proxy.calls("upload_put") >= 1, 30, "the first node to copy")
            paused.send(signal.SIGSTOP)
            try:
                with _node(config, tmp_path, "other"):
                    for _ in range(300):
                        if await _landed(target_registry, [repo], digests):
                            break
                        await asyncio.sleep(0.1)
                    copied_by_other = await _landed(target_registry, [repo], digests)
            finally:
                paused.send(signal.SIGCONT)
            wait_for(lambda: paused.events("replicate.run_finished"), 30, "the paused pass to end")
            [finished] = paused.events("replicate.run_finished")[:1]
        proxy.wait_idle()
        puts = _tag_puts(proxy)
    assert copied_by_other
    assert puts == {repo: 1}
    assert finished["failed"] == 1


async def test_scheduled_snapshots_are_taken_once_per_interval_cluster_wide(
    tmp_path: Path, postgres_url: str, source_registry: LocalRegistry, repo: str
) -> None:
    """
    Two nodes with a 3 s snapshot interval: every snapshot in the store was taken by one
    node (runs logged == snapshots stored), never two closer than 0.8 of the interval.
    """
    await _push(source_registry, [repo])
    store = (tmp_path / "snapshots").as_uri()
    config = _config(tmp_path, source_registry.url, source_registry.url, [repo], postgres_url)
    config.write_text(
        config.read_text() + f'\n[snapshots]\nsource = "src"\nstore = "{store}"\ninterval = "3s"\n'
    )
    with _node(config, tmp_path, "a") as a, _node(config, tmp_path, "b") as b:
        await asyncio.sleep(10)
    # Read once both have stopped: a snapshot under way at SIGTERM is drained, then stored.
    runs = a.events("snapshot.run_finished") + b.events("snapshot.run_finished")
    listed = run_drd(
        "snapshot", "list", "--config", str(config), "--json", env=daemon_env(tmp_path)
    )
    assert listed.returncode == 0, listed.stderr.decode()
    entries = json.loads(listed.stdout)["snapshots"]
    ids = [entry["id"] for entry in entries]
    taken = [datetime.fromisoformat(entry["taken_at"]) for entry in entries]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(taken)]
    assert len(ids) >= 3
    assert len(runs) == len(ids)
    assert min(gaps) >= 0.8 * 3, gaps
