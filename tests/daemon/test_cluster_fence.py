"""
Propagated deletions in a cluster, against real registries and the throwaway PostgreSQL:
a node keeps its lease on a repository until its deletions there are over and checks it
right before each manifest DELETE, so a node paused past its lease deletes nothing more,
and two nodes delete each removed tag exactly once. The target sits behind the fault
proxy, which counts the DELETEs.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from drd.oci.digest import Digest
from tests.clients import open_client
from tests.daemon.process import Daemon, daemon_env, render_config, running_daemon, wait_for
from tests.faults import Fault, FaultProxy
from tests.images import delete_tag, list_tags, make_image, push_image
from tests.servers import LocalRegistry, free_port

TTL_S = 2


def _config(tmp_path: Path, source: str, target: str, repos: list[str], url: str) -> Path:
    """Two nodes' shared config: propagate_deletions, a folder store, a 2 s lease TTL."""
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
                    "interval": "3s",
                    "propagate_deletions": True,
                    "max_deletions": 100,
                    "max_deletion_percent": 100.0,
                }
            ],
            {"jitter": 0.0},
            extra=(
                f'[state]\nurl = "{url}"\nlease_ttl = "{TTL_S}s"\n\n'
                f'[snapshots]\nsource = "src"\nstore = "{(tmp_path / "snaps").as_uri()}"\n'
                'interval = "24h"\n'
            ),
        )
    )
    return path


@contextlib.contextmanager
def _node(config: Path, tmp_path: Path, name: str) -> Iterator[Daemon]:
    work = tmp_path / name
    work.mkdir()
    port = free_port()
    env = daemon_env(work / "home") | {
        "DRD_DAEMON__LISTEN": f"127.0.0.1:{port}",
        "DRD_DAEMON__NODE": name,
        "DRD_DAEMON__STATE_DIR": str(work / "state"),
    }
    with running_daemon(config, work, port, env, stop=signal.SIGTERM) as daemon:
        yield daemon


async def _seed(
    source: LocalRegistry, target: LocalRegistry, repo: str, gone: list[str]
) -> dict[str, Digest]:
    """v1 and each tag of *gone* at both registries, then *gone* removed at the source."""
    digests = {}
    for tag in ["v1", *gone]:
        image = make_image(f"{repo}-{tag}")
        digests[tag] = await push_image(source, repo, image, tag)
        assert await push_image(target, repo, image, tag) == digests[tag]
    for tag in gone:
        await delete_tag(source, repo, tag)
    return digests


def _deletes(proxy: FaultProxy) -> Counter[str]:
    """Manifest DELETEs per ``repository@digest`` as the target saw them."""
    counts: Counter[str] = Counter()
    for seen in proxy.requests("manifest_delete"):
        match = re.fullmatch(r"/v2/(.+)/manifests/(sha256:[0-9a-f]{64})", seen.path)
        assert match is not None, seen.path
        counts[f"{match.group(1)}@{match.group(2)}"] += 1
    return counts


async def _v1_kept(target: LocalRegistry, repos: list[str], digests: dict[str, Digest]) -> None:
    async with open_client(target) as dst:
        for name in repos:
            found = await dst.head_manifest(name, "v1")
            assert found is not None
            assert found.digest == digests[f"{name}:v1"]


async def test_a_paused_node_whose_lease_expired_deletes_nothing_more(
    tmp_path: Path,
    postgres_url: str,
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
) -> None:
    """
    Two tags gone at the source. The first node's first DELETE is held at the proxy and
    the node is SIGSTOPped; once its lease expired, a second node deletes the other tag.
    After SIGCONT the first node's fence refuses its second DELETE: each digest is
    deleted once, the first node logs one deletion and the refusal.
    """
    seeded = await _seed(source_registry, target_registry, repo, ["old1", "old2"])
    doomed = {f"{repo}@{seeded[tag]}" for tag in ("old1", "old2")}
    with FaultProxy(target_registry.url) as proxy:
        proxy.add(Fault.delay(1.0), kinds="manifest_delete", times=1)
        config = _config(tmp_path, source_registry.url, proxy.url, [repo], postgres_url)
        with _node(config, tmp_path, "paused") as paused:
            wait_for(lambda: proxy.calls("manifest_delete") >= 1, 60, "the first DELETE")
            paused.send(signal.SIGSTOP)
            try:
                proxy.wait_idle()  # the DELETE already sent lands: the window no fence closes
                with _node(config, tmp_path, "other") as other:
                    wait_for(lambda: proxy.calls("manifest_delete") >= 2, 60, "the other node")
                    proxy.wait_idle()
                    # Logged once the DELETE's answer is back, which may follow the proxy's.
                    wait_for(lambda: other.events("replicate.deleted"), 30, "the other's log")
                    by_other = other.events("replicate.deleted")
            finally:
                paused.send(signal.SIGCONT)
            wait_for(lambda: paused.events("replicate.run_finished"), 30, "the paused pass to end")
            await asyncio.sleep(1)  # time for a DELETE the fence would have let through
            by_paused = paused.events("replicate.deleted")
            fenced = paused.events("replicate.deletion_fenced")
        proxy.wait_idle()
        deletes = _deletes(proxy)
    assert deletes == dict.fromkeys(doomed, 1)
    assert len(by_paused) == 1
    assert len(by_other) == 1
    assert {by_paused[0]["tag"], by_other[0]["tag"]} == {"old1", "old2"}
    assert len(fenced) == 1
    assert "no longer holds" in fenced[0]["error"]
    assert await list_tags(target_registry, repo) == ["v1"]


async def test_two_nodes_delete_each_removed_tag_exactly_once(
    tmp_path: Path,
    postgres_url: str,
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
) -> None:
    """
    Four repositories, each with a tag gone at the source, two nodes: every removed tag
    is deleted at the target by one DELETE, and every kept tag stays at its digest.
    """
    repos = [f"{repo}/r{i}" for i in range(4)]
    digests: dict[str, Digest] = {}
    for name in repos:
        seeded = await _seed(source_registry, target_registry, name, ["old"])
        digests |= {f"{name}:{tag}": digest for tag, digest in seeded.items()}
    with FaultProxy(target_registry.url) as proxy:
        proxy.add(Fault.delay(0.3), kinds="manifest_delete")
        config = _config(tmp_path, source_registry.url, proxy.url, repos, postgres_url)
        with _node(config, tmp_path, "a") as a, _node(config, tmp_path, "b") as b:
            wait_for(lambda: proxy.calls("manifest_delete") >= len(repos), 60, "the deletions")
            await asyncio.sleep(4)  # at least one more pass on each node
            proxy.wait_idle()
            deleted = a.events("replicate.deleted") + b.events("replicate.deleted")
        deletes = _deletes(proxy)
    assert deletes == {f"{name}@{digests[f'{name}:old']}": 1 for name in repos}
    assert sorted(e["repository"] for e in deleted) == repos
    for name in repos:
        assert await list_tags(target_registry, name) == ["v1"]
    await _v1_kept(target_registry, repos, digests)
