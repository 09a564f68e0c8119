"""`drd drill [--snapshot ID|latest] [--report-dir DIR] [--replica] [--sample N]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drd.commands.output import emit
from drd.commands.snapshot import LATEST

if TYPE_CHECKING:
    from drd.drill.report import DrillReport
    from drd.state import State

EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE = 0, 1, 69
_UNAVAILABLE = ("RegistryUnavailable", "StorageUnavailable", "RateLimited")


def register(sub: Any, command: Any) -> None:
    """Add `drill`."""
    p = command("drill", "rehearse a restore (or check a replica) against RTO/RPO", drill)
    p.add_argument("--snapshot", default=LATEST, help=f"snapshot id or {LATEST!r} (the default)")
    p.add_argument(
        "--report-dir", type=Path, default=None, help="write the reports here, not [drills]'s"
    )
    p.add_argument(
        "--replica",
        action="store_true",
        help="check [drills] replica in place instead of restoring a snapshot",
    )
    p.add_argument(
        "--sample", type=int, default=None, help="restore N seeded tags (0: all); default [drills]"
    )


async def _open_state(state_dir: Path) -> State | None:
    # Imported on use, not at module level: start-up time of every CLI run.
    from drd.errors import StateError
    from drd.state import State

    try:
        return await State.open(state_dir)
    except (OSError, StateError) as exc:
        sys.stderr.write(f"drd: the drill is not recorded in {state_dir}: {exc}\n")
        return None


async def drill(args: argparse.Namespace) -> int:
    """Run one drill, write its reports; exit 0 (passed), 1 (failed or missed) or 69."""
    from drd.drill.runner import drill_from_settings, drills_config, record_drill, write_reports
    from drd.failover.active import load_active_settings
    from drd.resources import open_resources

    # The configuration as it applies now: after a failover, snapshots of the new primary.
    settings = load_active_settings(args.config)
    drills = drills_config(settings)
    if args.sample is not None and args.sample < 0:
        sys.stderr.write("drd: --sample must be 0 or more\n")
        return 2
    report_dir = args.report_dir or drills.report_dir
    state = await _open_state(settings.daemon.state_dir)
    try:
        async with open_resources(settings) as res:
            report = await drill_from_settings(
                settings,
                res.registries,
                res.retry,
                snapshot=args.snapshot,
                replica=args.replica,
                sample=args.sample,
                state=state,
            )
        paths = await write_reports(report, report_dir)
        await record_drill(report, trigger="manual", state=state)
    finally:
        if state is not None:
            await state.close()
    document = {**report.to_json(), "reports": {k: str(v) for k, v in paths.items()}}
    emit(args, document, render(report, paths))
    return exit_code(report)


def exit_code(report: DrillReport) -> int:
    """0 passed; 69 a registry or the store was unavailable; 1 anything failed or missed."""
    if report.error.startswith(_UNAVAILABLE):
        return EXIT_UNAVAILABLE
    return EXIT_OK if report.ok else EXIT_FAILED


def render(report: DrillReport, paths: dict[str, Path]) -> str:
    """The verdict, the numbers, the failures, and where the reports are."""
    from drd.drill.report import render_text

    lines = [render_text(report)]
    for kind in ("html", "md", "json"):
        if kind in paths:
            lines.append(f"  report ({kind}): {paths[kind]}")
    return "\n".join(lines)
