"""
``python -m bench.claims [--workers N] [--seconds S] [--repositories R]``: how many units
of work a PostgreSQL state database hands out per second, as a cluster's nodes use it.

A throwaway PostgreSQL (tests/postgres.py) is started; *workers* concurrent loops, each
with its own connection pool and node name, go round *repositories* units: claim (the
``SKIP LOCKED`` claim), one fence check (a tag write), release as done. Prints one JSON
line: cycles per second (one cycle = one repository in a pass with one changed tag), the
statements per cycle and the rows and bytes of the leases table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from drd.state.leases import LeaseGate
from drd.state.postgres import Connection, PostgresState
from tests.postgres import local_postgres


async def _worker(url: str, node: str, names: list[str], deadline: float, done: list[int]) -> None:
    async with await PostgresState.open(Connection(url, pool_size=1)) as state:
        gate = LeaseGate(state, node=node, policy="bench", ttl=30.0, fresh=0.0)
        count = 0
        while time.monotonic() < deadline:
            for name in names:
                token = await gate.claim(name)
                if token is None:
                    continue
                await gate.check(name, token)
                await gate.release(name, token, done=True)
                count += 1
                if time.monotonic() >= deadline:
                    break
        done.append(count)


async def _measure(url: str, workers: int, seconds: float, repositories: int) -> dict[str, object]:
    names = [f"team-{i % 100}/app-{i}" for i in range(repositories)]
    async with await PostgresState.open(Connection(url)) as state:  # schema first
        pass
    done: list[int] = []
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    await asyncio.gather(
        *(
            _worker(url, f"node-{w}", names[w::workers] or names, deadline, done)
            for w in range(workers)
        )
    )
    elapsed = time.monotonic() - started
    async with await PostgresState.open(Connection(url)) as state, state.transaction() as cur:
        await cur.execute(
            "SELECT count(*) AS n, pg_total_relation_size('leases') AS bytes FROM leases"
        )
        row = await cur.fetchone()
    assert row is not None
    return {
        "workers": workers,
        "seconds": round(elapsed, 2),
        "cycles": sum(done),
        "cycles_per_s": round(sum(done) / elapsed, 1),
        "statements_per_cycle": 4,  # insert-if-absent + claim, fence, release
        "lease_rows": row["n"],
        "lease_bytes_per_row": round(row["bytes"] / max(1, row["n"])),
    }


def main() -> int:
    """Run the measurement and print its JSON line."""
    parser = argparse.ArgumentParser(prog="python -m bench.claims")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repositories", type=int, default=20_000)
    args = parser.parse_args()
    with local_postgres() as server:
        url = server.url(server.create_database("bench"))
        result = asyncio.run(_measure(url, args.workers, args.seconds, args.repositories))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
