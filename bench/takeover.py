"""
``python -m bench.takeover [--runs N] [--ttl S] [--interval S] [--scale S] [--latency MS]``:
how long a cluster takes to resume the units of a node that was SIGKILLed mid-copy.

The ``many-tags`` corpus is pushed to a source registry; per run a fresh target registry
sits behind the fault proxy, which adds *latency* to every request (a cross-region link),
and a fresh PostgreSQL database holds the leases. Two ``drd run`` processes share one
config (lease TTL *ttl*, heartbeat a third of it, pass *interval*: an hour by default, so
that only the orphan watch, not a later pass, can take the units over; both nodes start
their first pass together). Once the first holds units and tags are being written, it
gets SIGKILL; PostgreSQL is then polled every 50 ms:
a unit the dead node held is *claimed* when its fencing token changes (another node took
it) and *done* when it is released as done. Prints one JSON line per run: seconds from
the SIGKILL to the last of the dead node's units claimed and done, and to every tag of
the corpus written at the target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import tempfile
import time
from pathlib import Path

import psycopg

from bench.corpus import Corpus, Pusher
from tests.daemon.process import daemon_env, render_config, running_daemon, wait_for
from tests.faults import Fault, FaultProxy
from tests.postgres import LocalPostgres, local_postgres
from tests.servers import REGISTRY_BINARY, LocalRegistry, free_port

POLL_S = 0.05


def _units(url: str, node: str) -> dict[str, int]:
    """The units *node* holds unexpired: repository → fencing token."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT repository, token FROM leases WHERE owner = %s AND expires_at > drd_now()",
            (node,),
        ).fetchall()
    return {row[0]: int(row[1]) for row in rows}


def _watch(url: str, held: dict[str, int], killed: float, deadline: float) -> dict[str, float]:
    """Poll until every unit in *held* is claimed elsewhere and done: the seconds of each."""
    claimed: dict[str, float] = {}
    done: dict[str, float] = {}
    finished: set[str] = set()
    with psycopg.connect(url, autocommit=True) as conn:
        while len(done) + len(finished) < len(held) and time.monotonic() < deadline:
            rows = conn.execute(
                "SELECT repository, token, owner, done_at FROM leases WHERE repository = ANY(%s)",
                (list(held),),
            ).fetchall()
            now = time.time() - killed
            for repository, token, owner, done_at in rows:
                if int(token) == held[repository] and owner is None and done_at is not None:
                    finished.add(repository)  # the killed node finished it just before
                elif int(token) != held[repository]:
                    claimed.setdefault(repository, now)
                    if owner is None and done_at is not None:
                        done.setdefault(repository, now)
            time.sleep(POLL_S)
    left = set(held) - set(done) - finished
    if left or not done:
        raise SystemExit(f"units not taken over before the deadline: {sorted(left or held)}")
    return {"claimed_s": max(claimed.values()), "done_s": max(done.values())}


def _config(
    work: Path, source: str, target: str, repos: list[str], url: str, args: argparse.Namespace
) -> Path:
    path = work / "drd.toml"
    path.write_text(
        render_config(
            {"src": {"url": source}, "dst": {"url": target}},
            [
                {
                    "name": "p",
                    "source": "src",
                    "targets": ["dst"],
                    "repositories": repos,
                    "interval": f"{args.interval:g}s",
                }
            ],
            {"jitter": 0.0},
            extra=f'[state]\nurl = "{url}"\nlease_ttl = "{args.ttl:g}s"\n',
        ).replace('log_level = "debug"', 'log_level = "info"')
    )
    return path


def _run(
    n: int,
    work: Path,
    pg: LocalPostgres,
    source: LocalRegistry,
    corpus: Corpus,
    args: argparse.Namespace,
) -> dict[str, object]:
    """One run: two nodes, SIGKILL the first mid-copy, time the second's takeover."""
    wanted = len(corpus.tags)
    with (
        LocalRegistry.start(REGISTRY_BINARY, work / f"dst-{n}") as target,
        FaultProxy(target.url) as proxy,
    ):
        proxy.add(Fault.delay(args.latency / 1000))
        url = pg.url(pg.create_database("takeover"))
        config = _config(work, source.url, proxy.url, corpus.repos, url, args)

        def tag_writes() -> int:
            return sum(
                1 for s in proxy.requests("manifest_put") if "/manifests/sha256:" not in s.path
            )

        nodes = []
        for name in ("a", "b"):
            home = work / f"run{n}-{name}"
            home.mkdir()
            port = free_port()
            env = daemon_env(home) | {
                "DRD_DAEMON__LISTEN": f"127.0.0.1:{port}",
                "DRD_DAEMON__NODE": name,
                "DRD_DAEMON__STATE_DIR": str(home / "state"),
            }
            nodes.append(running_daemon(config, home, port, env, stop=signal.SIGTERM))
        with nodes[0] as a, nodes[1]:
            wait_for(lambda: tag_writes() >= 5 and _units(url, "a"), 120, "node a mid-copy")
            held = _units(url, "a")
            a.proc.kill()
            killed = time.time()
            a.proc.wait(timeout=10)
            deadline = time.monotonic() + 10 * args.ttl + 300
            times = _watch(url, held, killed, deadline)
            wait_for(lambda: tag_writes() >= wanted, 300, "every tag at the target", every=POLL_S)
            landed = time.time() - killed
        duplicates = tag_writes() - wanted
    return {
        "run": n,
        "lease_ttl_s": args.ttl,
        "heartbeat_s": round(args.ttl / 3, 2),
        "interval_s": args.interval,
        "latency_ms": args.latency,
        "units_held_by_killed": len(held),
        "last_claimed_s": round(times["claimed_s"], 2),
        "last_done_s": round(times["done_s"], 2),
        "all_tags_s": round(landed, 2),
        "duplicate_tag_writes": duplicates,
    }


async def _push(source: LocalRegistry, corpus: Corpus) -> None:
    async with Pusher(source.url) as pusher:
        await pusher.push(corpus.initial)


def main() -> int:
    """Parse the arguments, run, print one JSON line per run."""
    parser = argparse.ArgumentParser(prog="python -m bench.takeover")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ttl", type=float, default=10.0, help="[state] lease_ttl, seconds")
    parser.add_argument(
        "--interval", type=float, default=3600.0, help="pass interval, seconds (takeover: none)"
    )
    parser.add_argument("--scale", type=float, default=0.2, help="of many-tags' 100 tags/repo")
    parser.add_argument("--latency", type=float, default=50.0, help="ms added per request")
    args = parser.parse_args()
    corpus = Corpus("many-tags", args.scale)
    with tempfile.TemporaryDirectory(prefix="drd-bench-takeover-") as tmp, local_postgres() as pg:
        work = Path(tmp)
        with LocalRegistry.start(REGISTRY_BINARY, work / "src") as source:
            asyncio.run(_push(source, corpus))
            for n in range(1, args.runs + 1):
                print(json.dumps(_run(n, work, pg, source, corpus, args)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
