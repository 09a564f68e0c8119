"""
The daemon's pass, in process: ``python -m bench.inprocess CONFIG PASSES``.

Loads the configuration and opens the endpoints and the known-tags cache once, as
the daemon does per configuration generation, then runs every replication policy
PASSES times in a row, as its scheduler does, timing each pass from inside the
process (start-up, config loading and connection set-up excluded, as they are from
every pass but a daemon's first). Like the daemon, each pass is recorded in the state
database of ``daemon.state_dir`` (what `drd status` reads), and that is timed too.
Prints ``{"passes_s": [...], "reports": [...]}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from drd import logs
from drd.config import load_settings
from drd.replicate.cache import open_tag_cache
from drd.replicate.runner import run_policy
from drd.resources import open_resources, policy_from_config, verifier_for
from drd.state import RunRecord, State


async def passes(config: Path, count: int) -> dict[str, Any]:
    """Run every policy *count* times over one set of open clients; time each pass."""
    settings = load_settings(config)
    walls: list[float] = []
    summaries: list[list[dict[str, Any]]] = []
    async with (
        open_resources(settings) as res,
        open_tag_cache(settings.daemon.state_dir) as cache,
        await State.open(settings.daemon.state_dir) as state,
    ):
        for rep in settings.replication:
            await state.register_policy(rep.name, rep.targets, time.time())
            await state.register_job(f"replicate:{rep.name}", "replicate", time.time())
        for _ in range(count):
            started = time.perf_counter()
            reports = []
            for rep in settings.replication:
                begun = time.time()
                report = await run_policy(
                    policy_from_config(rep),
                    res.registries[rep.source],
                    {name: res.registries[name] for name in rep.targets},
                    res.retry,
                    verifier=verifier_for(settings, rep),
                    cache=cache,
                )
                # What the daemon's scheduled job records after each full pass.
                finished = time.time()
                await state.record_replication(
                    report, full=True, started_at=begun, finished_at=finished
                )
                outcome = "ok" if report.ok else ("error" if report.error else "failed")
                record = RunRecord(
                    f"replicate:{rep.name}",
                    "replicate",
                    "schedule",
                    begun,
                    finished,
                    outcome,
                    report.summary(),
                    report.problem,
                )
                await state.record_run(record)
                reports.append(report)
            walls.append(round(time.perf_counter() - started, 4))
            summaries.append([r.summary() for r in reports])
    return {"passes_s": walls, "reports": summaries}


def main(argv: list[str]) -> int:
    """``python -m bench.inprocess CONFIG PASSES``."""
    logs.configure(level="info")  # as `drd run` does: to stderr, stdout stays JSON
    result = asyncio.run(passes(Path(argv[0]), int(argv[1])))
    sys.stdout.write(json.dumps(result) + "\n")
    failed = any(s.get("failed") for run in result["reports"] for s in run)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
