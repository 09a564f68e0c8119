"""`drd failover --to ENDPOINT [--dry-run] [--force]` and `drd failback [--dry-run] [--force]`."""

from __future__ import annotations

import argparse
from typing import Any

from drd.app.failover import run_failback, run_failover
from drd.app.outcome import Outcome
from drd.app.state import describe, open_state
from drd.commands.output import emit, fail
from drd.commands.units import abbreviate
from drd.config import load_settings
from drd.errors import Busy, FailoverRefused, StateError
from drd.failover.runner import FailoverReport
from drd.resources import open_resources
from drd.state import StateStore


def register(sub: Any, command: Any) -> None:
    """Add `failover` and `failback`."""
    over = command("failover", failover)
    over.add_argument("--to", required=True, help="the standby endpoint ([endpoints.NAME])")
    back = command("failback", failback)
    for p in (over, back):
        p.add_argument("--dry-run", action="store_true", help="run the pre-flight only")
        p.add_argument(
            "--force", action="store_true", help="switch even when the pre-flight fails (recorded)"
        )


async def failover(args: argparse.Namespace) -> Outcome:
    """
    Fail over to ``--to``; exit 0 (switched or ready), 1 (refused, hooks failed), 2, or
    75 (another failover or failback holds the cluster-wide lock).
    """
    return await _run(args, args.to)


async def failback(args: argparse.Namespace) -> Outcome:
    """Fail back to the configured primary; exit codes as for failover."""
    return await _run(args, None)


async def _run(args: argparse.Namespace, to: str | None) -> Outcome:
    settings = load_settings(args.config)
    state: StateStore | None
    try:
        state = await open_state(settings)
    except (OSError, StateError) as exc:
        return fail(args, f"cannot open the state in {describe(settings)}: {exc}", Outcome.FAILED)
    try:
        async with open_resources(settings) as res:
            if to is None:
                report = await run_failback(
                    settings, res.registries, dry_run=args.dry_run, force=args.force, state=state
                )
            else:
                report = await run_failover(
                    settings,
                    res.registries,
                    to=to,
                    dry_run=args.dry_run,
                    force=args.force,
                    state=state,
                )
    except FailoverRefused as exc:
        return fail(args, str(exc))
    except Busy as exc:
        return fail(args, str(exc), Outcome.BUSY)
    finally:
        await state.close()
    # The findings' evidence names digests in full for JSON; people read them short.
    emit(args, report.to_json(), abbreviate(report.render()))
    return outcome(report)


def outcome(report: FailoverReport) -> Outcome:
    """OK when the switch (or, dry, the pre-flight) succeeded; FAILED otherwise."""
    return Outcome.OK if report.ok else Outcome.FAILED
