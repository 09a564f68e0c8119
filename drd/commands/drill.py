"""`drd drill [--snapshot ID|latest] [--report-dir DIR] [--replica] [--sample N]`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from drd.app.active import load_active_settings
from drd.app.drills import drill_from_settings, drills_config, record_drill
from drd.app.history import open_history
from drd.app.outcome import Outcome, of_error
from drd.commands.output import emit, fail
from drd.commands.units import abbreviate
from drd.drill.render import render_text
from drd.drill.report import DrillReport
from drd.drill.runner import write_reports
from drd.progress import for_terminal, shown
from drd.resources import open_resources
from drd.snapshot.catalog import LATEST
from drd.timeline import process_age_s


def register(sub: Any, command: Any) -> None:
    """Add `drill`."""
    p = command("drill", drill)
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


async def drill(args: argparse.Namespace) -> Outcome:
    """Run one drill, write its reports, record it; OK (passed), FAILED or UNAVAILABLE."""
    # The configuration as it applies now: after a failover, snapshots of the new primary.
    settings = load_active_settings(args.config)
    drills = drills_config(settings)
    if args.sample is not None and args.sample < 0:
        return fail(args, "--sample must be 0 or more")
    report_dir = args.report_dir or drills.report_dir
    async with open_history(settings, "the drill") as state:
        tally = for_terminal(args)
        async with open_resources(settings) as res, shown(tally):
            report = await drill_from_settings(
                settings,
                res.registries,
                res.retry,
                snapshot=args.snapshot,
                replica=args.replica,
                sample=args.sample,
                state=state,
                progress=tally,
                # This process's start-up until now: interpreter, imports, settings, clients.
                startup_s=process_age_s(),
            )
        paths = await write_reports(report, report_dir)
        await record_drill(report, trigger="manual", state=state)
    document = {**report.to_json(), "reports": {k: str(v) for k, v in paths.items()}}
    emit(args, document, render(report, paths))
    return outcome(report)


def outcome(report: DrillReport) -> Outcome:
    """OK passed; UNAVAILABLE a registry or the store was unavailable; FAILED otherwise."""
    if report.error:
        return of_error(report.exception)
    return Outcome.OK if report.ok else Outcome.FAILED


def render(report: DrillReport, paths: dict[str, Path]) -> str:
    """The verdict, the numbers, the failures, and where the reports are."""
    # Failure reasons name digests in full for the reports and JSON; people read them short.
    lines = [abbreviate(render_text(report))]
    for kind in ("html", "md", "json"):
        if kind in paths:
            lines.append(f"  report ({kind}): {paths[kind]}")
    return "\n".join(lines)
