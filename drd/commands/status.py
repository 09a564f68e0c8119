"""`drd status`: what the daemon's state database says, while it runs or after."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from drd.app.outcome import Outcome
from drd.app.state import read_state_document
from drd.commands.output import emit, fail
from drd.commands.units import abbreviate
from drd.config import load_settings
from drd.errors import StateCorrupt, StateError
from drd.state import read_status


def register(sub: Any, command: Any) -> None:
    """Add `status`."""
    status_ = command("status", status)
    status_.add_argument(
        "--state-dir", type=Path, default=None, help="read this state directory, not the config's"
    )
    status_.add_argument("--runs", type=int, default=20, help="how many recent runs to show")


async def status(args: argparse.Namespace) -> Outcome:
    """Print the state document; exit 0, or 1 when there is no readable state database."""
    now = time.time()
    try:
        if args.state_dir is not None:
            found = await asyncio.to_thread(read_status, args.state_dir, now, runs=args.runs)
            document = {**found, "nodes": []}
        else:
            settings = load_settings(args.config)
            document = await read_state_document(settings, now, runs=args.runs)
    except StateCorrupt as exc:
        return fail(
            args,
            f"cannot read the daemon's state: {exc}",
            Outcome.FAILED,
            hint="the file is left as it is; `drd run` moves it aside and starts afresh",
        )
    except (FileNotFoundError, StateError) as exc:
        return fail(args, f"cannot read the daemon's state: {exc}", Outcome.FAILED)
    emit(args, document, render(document))
    return Outcome.OK


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def render(document: dict[str, Any]) -> str:
    """Human text: replication per policy and target, jobs, recent runs."""
    lines = [f"state: {document['state_db']} at {document['now']}", "replication:"]
    for rep in document["replication"]:
        lines.append(
            f"  {rep['policy']} -> {rep['target']}: lag {_age(rep['lag_s'])}, "
            f"last success {rep['last_success'] or 'never'}, "
            f"{rep['pending']} pending, {rep['drift']} drift"
        )
    if not document["replication"]:
        lines.append("  (no replication policy has run)")
    if document.get("nodes") or "leaders" in document:
        lines.append("nodes:")
        for node in document["nodes"]:
            lines.append(
                f"  {node['id']} on {node['host']} (drd {node['version']}): last heartbeat "
                f"{node['last_heartbeat']}, {node['leases']} leases"
            )
        leaders = ", ".join(f"{job} on {node}" for job, node in document["leaders"].items())
        lines.append(f"  running singletons: {leaders or 'none'}")
        lines.append(
            f"  unclaimed units: {document['unclaimed']}"
            f" (of which queued pushes: {document.get('queued', 0)})"
        )
    lines.append("jobs:")
    for job in document["jobs"]:
        error = f" ({abbreviate(job['last_error'])[:120]})" if job["last_error"] else ""
        lines.append(
            f"  {job['job']}: last run {job['last_finished'] or 'never'} "
            f"{job['last_outcome'] or ''}{error}, last success {job['last_success'] or 'never'}"
        )
    lines.append("recent runs:")
    for run in document["runs"]:
        counts = ", ".join(
            f"{k} {v}"
            for k, v in run["summary"].items()
            if k in ("copied", "failed", "rejected", "drift") and v
        )
        lines.append(
            f"  {run['started_at']} {run['job']} ({run['trigger']}) {run['outcome']} "
            f"in {run['duration_s']}s{': ' + counts if counts else ''}"
        )
    return "\n".join(lines)
