"""
``python -m bench.cluster [--scale S] [--latency MS] [--nodes 1,2,3]``: the gain from more
nodes on a latency-bound link.

The ``many-tags`` corpus is pushed to a source registry; for each node count a fresh
target registry sits behind the fault proxy, which adds *latency* to every request (a
cross-region link), and a fresh PostgreSQL database holds the leases. That many nodes
(each its own clients, state connection and `LeaseGate`, all in this process: the work
is bound by the link's latency, not by CPU) run one pass of the same policy at once.
Prints one JSON line per node count: wall time, requests at the target, tag writes,
and the speed-up over one node.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from pathlib import Path

from bench.corpus import Corpus, Pusher
from drd.replicate.runner import run_policy
from drd.state.leases import LeaseGate
from drd.state.postgres import Connection, PostgresState
from tests.clients import RETRY, open_client, policy_for
from tests.faults import Fault, FaultProxy
from tests.postgres import local_postgres
from tests.servers import REGISTRY_BINARY, LocalRegistry


async def _pass(nodes: int, source: str, target: str, url: str, repos: list[str]) -> float:
    """Wall seconds for *nodes* concurrent passes sharing the leases in *url*."""
    async with contextlib.AsyncExitStack() as stack:
        runs = []
        for n in range(nodes):
            state = await stack.enter_async_context(
                await PostgresState.open(Connection(url, pool_size=2))
            )
            src = await stack.enter_async_context(open_client(source, "src"))
            dst = await stack.enter_async_context(open_client(target, "dst"))
            gate = LeaseGate(state, node=f"node-{n}", policy="bench", fresh=3600.0)
            policy = policy_for(*repos, name="bench", concurrency=4)
            runs.append(run_policy(policy, src, {"dst": dst}, RETRY, gate=gate))
        started = time.monotonic()
        reports = await asyncio.gather(*runs)
        elapsed = time.monotonic() - started
    if not all(r.ok for r in reports):
        raise SystemExit(json.dumps([r.to_json()["summary"] for r in reports]))
    return elapsed


async def _main(scale: float, latency: float, counts: list[int]) -> None:
    corpus = Corpus("many-tags", scale)
    with tempfile.TemporaryDirectory(prefix="drd-bench-cluster-") as tmp, local_postgres() as pg:
        work = Path(tmp)
        with LocalRegistry.start(REGISTRY_BINARY, work / "src") as source:
            async with Pusher(source.url) as pusher:
                await pusher.push(corpus.initial)
            single = 0.0
            for nodes in counts:
                with (
                    LocalRegistry.start(REGISTRY_BINARY, work / f"dst-{nodes}") as target,
                    FaultProxy(target.url) as proxy,
                ):
                    proxy.add(Fault.delay(latency))
                    url = pg.url(pg.create_database("bench"))
                    wall = await _pass(nodes, source.url, proxy.url, url, corpus.repos)
                    single = single or wall
                    puts = sum(
                        1
                        for s in proxy.requests("manifest_put")
                        if "/manifests/sha256:" not in s.path
                    )
                    print(
                        json.dumps(
                            {
                                "nodes": nodes,
                                "tags": len(corpus.tags),
                                "latency_ms": round(latency * 1000),
                                "wall_s": round(wall, 2),
                                "target_requests": len(proxy.requests()),
                                "tag_writes": puts,
                                "speedup": round(single / wall, 2),
                            }
                        ),
                        flush=True,
                    )


def main() -> int:
    """Parse the arguments, run, print."""
    parser = argparse.ArgumentParser(prog="python -m bench.cluster")
    parser.add_argument("--scale", type=float, default=0.2, help="of many-tags' 100 tags/repo")
    parser.add_argument("--latency", type=float, default=50.0, help="ms added per request")
    parser.add_argument("--nodes", default="1,2,3", help="node counts, comma-separated")
    args = parser.parse_args()
    counts = [int(n) for n in args.nodes.split(",")]
    asyncio.run(_main(args.scale, args.latency / 1000, counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
