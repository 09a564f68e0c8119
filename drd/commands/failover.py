"""`drd failover --to ENDPOINT [--dry-run] [--force]` and `drd failback [--dry-run] [--force]`."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from drd.commands.output import emit

if TYPE_CHECKING:
    from drd.failover.runner import FailoverReport

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(sub: Any, command: Any) -> None:
    """Add `failover` and `failback`."""
    over = command("failover", "make a standby the primary, after pre-flight checks", failover)
    over.add_argument("--to", required=True, help="the standby endpoint ([endpoints.NAME])")
    back = command(
        "failback", "return to the configured primary, after pre-flight checks", failback
    )
    for p in (over, back):
        p.add_argument("--dry-run", action="store_true", help="run the pre-flight only")
        p.add_argument(
            "--force", action="store_true", help="switch even when the pre-flight fails (recorded)"
        )


async def failover(args: argparse.Namespace) -> int:
    """Fail over to ``--to``; exit 0 (switched or ready), 1 (refused, hooks failed), 2."""
    return await _run(args, args.to)


async def failback(args: argparse.Namespace) -> int:
    """Fail back to the configured primary; exit codes as for failover."""
    return await _run(args, None)


async def _run(args: argparse.Namespace, to: str | None) -> int:
    # Imported on use, not at module level: start-up time of every CLI run.
    from drd.config import load_settings
    from drd.errors import StateError
    from drd.failover.runner import FailoverRefused, run_failback, run_failover
    from drd.resources import open_resources
    from drd.state import State

    settings = load_settings(args.config)
    state: State | None
    try:
        state = await State.open(settings.daemon.state_dir)
    except (OSError, StateError) as exc:
        sys.stderr.write(f"drd: cannot open the state in {settings.daemon.state_dir}: {exc}\n")
        return EXIT_FAILED
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
        sys.stderr.write(f"drd: {exc}\n")
        return EXIT_USAGE
    finally:
        await state.close()
    emit(args, report.to_json(), report.render())
    return exit_code(report)


def exit_code(report: FailoverReport) -> int:
    """0 when the switch (or, dry, the pre-flight) succeeded; 1 otherwise."""
    return EXIT_OK if report.ok else EXIT_FAILED
