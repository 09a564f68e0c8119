"""`drd replicate`: one pass of every (or the named) replication policy."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from drd.app.active import load_active_settings
from drd.app.history import open_history
from drd.app.outcome import Outcome
from drd.app.replication import replicate_once, replication_outcome, unknown_policies
from drd.commands.output import emit
from drd.replicate.cache import open_tag_cache
from drd.replicate.report import PolicyReport
from drd.resources import open_resources


def register(sub: Any, command: Any) -> None:
    """Add `replicate`."""
    rep = command("replicate", replicate)
    rep.add_argument("--policy", action="append", help="only this policy (repeatable)")
    rep.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    rep.add_argument(
        "--no-cache",
        action="store_true",
        help="ask every target for every tag, ignoring the known digests in the state directory",
    )


async def replicate(args: argparse.Namespace) -> Outcome:
    """
    Run the selected policies once, recorded in the state database; OK, FAILED (an
    item failed or was rejected) or UNAVAILABLE.
    """
    settings = load_active_settings(args.config)
    unknown = unknown_policies(settings, args.policy or [])
    if unknown:
        sys.stderr.write(f"drd: no replication policy named {', '.join(unknown)}\n")
        return Outcome.USAGE
    state_dir = settings.daemon.state_dir
    async with contextlib.AsyncExitStack() as stack:
        state = None
        if not args.dry_run:
            state = await stack.enter_async_context(open_history(settings, "the pass"))
        res = await stack.enter_async_context(open_resources(settings))
        cache = await stack.enter_async_context(
            open_tag_cache(None if args.no_cache else state_dir)
        )
        reports = await replicate_once(
            settings,
            res,
            names=args.policy or [],
            dry_run=args.dry_run,
            cache=cache,
            state=state,
        )
    emit(args, {"policies": [r.to_json() for r in reports]}, render(reports))
    return replication_outcome(reports)


def render(reports: list[PolicyReport]) -> str:
    """Human text: one block per policy, one line per item that is not merely skipped."""
    lines: list[str] = []
    for report in reports:
        s = report.summary()
        mode = " (dry run)" if report.dry_run else ""
        lines.append(
            f"policy {report.policy}{mode}: {s['copied']} copied, {s['skipped']} up to date, "
            f"{s['planned']} planned, {s['failed']} failed, {s['rejected']} rejected, "
            f"{s['drift']} drift, {s['bytes']} bytes in {s['duration_s']}s"
        )
        if report.error:
            lines.append(f"  error: {report.error}")
        for target, why in sorted(report.unreachable.items()):
            lines.append(f"  target {target} unreachable for the rest of the pass: {why}")
        lines += _render_deletions(report)
        for item in sorted(report.items, key=lambda i: (i.target, i.repository, i.tag)):
            if item.outcome == "skipped":
                continue
            moved = f" (moved from {item.moved_from[:19]})" if item.moved_from else ""
            reason = f": {item.reason}" if item.reason else ""
            lines.append(
                f"  {item.outcome:8} {item.target} {item.repository}:{item.tag} "
                f"{item.digest[:19]}{moved}{reason}"
            )
    return "\n".join(lines)


def _render_deletions(report: PolicyReport) -> list[str]:
    """One line per tag deleted (or, in a dry run, to delete), kept, or held by the brake."""
    lines: list[str] = []
    verb = "to delete" if report.dry_run else "deleted"
    for target, plan in sorted(report.deletions.items()):
        if plan.braked:
            lines.append(f"  brake    {plan.braked}")
        if plan.error:
            lines.append(f"  error    {target}: {plan.error}")
        done = plan.planned if report.dry_run and not plan.braked else plan.deleted
        for d in done:
            lines.append(f"  {verb:8} {target} {d.repository}:{d.tag} {str(d.digest)[:19]}")
        for d, other in plan.kept:
            lines.append(
                f"  kept     {target} {d.repository}:{d.tag} {str(d.digest)[:19]}: "
                f"{other} names the same digest"
            )
        if plan.snapshot:
            lines.append(
                f"  recorded in snapshot {plan.snapshot} (undo: drd restore --snapshot "
                f"{plan.snapshot} --source {plan.snapshot_source} --to {target})"
            )
    return lines
