"""`drd replicate`: one pass of every (or the named) replication policy."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Sequence
from typing import Any

from drd.app.active import load_active_settings
from drd.app.history import open_history
from drd.app.outcome import Outcome
from drd.app.replication import replicate_once, replication_outcome, unknown_policies
from drd.commands.folding import fold_items
from drd.commands.output import emit, fail
from drd.commands.units import iec
from drd.progress import for_terminal, shown
from drd.replicate.cache import open_tag_cache
from drd.replicate.report import ItemResult, PolicyReport
from drd.resources import open_resources


def register(sub: Any, command: Any) -> None:
    """Add `replicate`."""
    rep = command("replicate", replicate)
    rep.add_argument("--policy", action="append", help="only this policy (repeatable)")
    rep.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan, with what the trust policy would reject and why; change nothing",
    )
    rep.add_argument(
        "--all-tags",
        action="store_true",
        help="list signature, attestation, SBOM and referrers tags as their own lines"
        " (default: folded into their image's line; --json lists every tag)",
    )
    rep.add_argument(
        "--no-cache",
        action="store_true",
        help="ask every target for every tag, ignoring the known digests in the state directory",
    )
    # Appended, not set: the command table may give every command an epilog of its own.
    rep.epilog = (rep.epilog + "\n\n" if rep.epilog else "") + (
        "A pass whose only problems are tags the trust policy rejected exits 3, not 1: "
        "the pass succeeded and lists them (with --dry-run: would reject them). "
        "Treat 3 as success or failure as your CI needs."
    )


async def replicate(args: argparse.Namespace) -> Outcome:
    """
    Run the selected policies once, recorded in the state database; OK, REJECTED (the
    trust policy refused items, nothing failed), FAILED (an item failed) or UNAVAILABLE.
    """
    settings = load_active_settings(args.config)
    unknown = unknown_policies(settings, args.policy or [])
    if unknown:
        return fail(args, f"no replication policy named {', '.join(unknown)}")
    state_dir = settings.daemon.state_dir
    async with contextlib.AsyncExitStack() as stack:
        state = None
        if not args.dry_run:
            state = await stack.enter_async_context(open_history(settings, "the pass"))
        res = await stack.enter_async_context(open_resources(settings))
        cache = await stack.enter_async_context(
            open_tag_cache(None if args.no_cache else state_dir)
        )
        tally = for_terminal(args)
        async with shown(tally):
            reports = await replicate_once(
                settings,
                res,
                names=args.policy or [],
                dry_run=args.dry_run,
                cache=cache,
                state=state,
                progress=tally,
            )
    emit(
        args,
        {"policies": [r.to_json() for r in reports]},
        render(reports, all_tags=args.all_tags),
    )
    return replication_outcome(reports)


def render(reports: list[PolicyReport], *, all_tags: bool = False) -> str:
    """
    Human text: one block per policy. An unreachable target is one line, first; items
    that ended the same way for the same reason at one target are one line with a count;
    merely skipped items are left out. Signature, attestation, SBOM and referrers tags
    are folded into their image's line (*all_tags*: listed as their own lines).
    """
    lines: list[str] = []
    for report in reports:
        s = report.summary()
        mode = " (dry run)" if report.dry_run else ""
        lines.append(
            f"policy {report.policy}{mode}: {s['copied']} copied, {s['skipped']} skipped, "
            f"{s['planned']} planned, {s['failed']} failed, {s['rejected']} rejected, "
            f"{s['drift']} drift, {iec(s['bytes'])} in {s['duration_s']}s"
        )
        for target, why in sorted(report.unreachable.items()):
            lines.append(f"  {_unreachable_line(report, target, why)}")
        if report.error:
            lines.append(f"  error: {report.error}")
        listed = [
            i
            for i in report.items
            if not (i.target in report.unreachable and i.outcome == "failed")
        ]
        lines += _render_deletions(report)
        lines += [f"  {line}" for line in item_lines(listed, all_tags=all_tags)]
    return "\n".join(lines)


def _unreachable_line(report: PolicyReport, target: str, why: str) -> str:
    """``target dr unreachable: <why>; nothing copied to it`` (or how much was)."""
    copied = sum(1 for i in report.items if i.target == target and i.outcome == "copied")
    missed = sum(1 for i in report.items if i.target == target and i.outcome == "failed")
    done = "nothing copied to it" if not copied else f"{copied} copied to it before that"
    left = f", {missed} not copied" if missed else ""
    return f"target {target} unreachable: {why}; {done}{left}"


# Items with the same outcome and reason at one target become one line beyond this many.
GROUP_OVER = 3


def item_lines(items: Sequence[ItemResult], *, all_tags: bool = False) -> list[str]:
    """
    One line per item that was not merely skipped, in (target, repository, tag) order,
    attached tags folded into their image's line unless *all_tags*; failed and rejected
    lines sharing a target and a reason collapse into one line with their count and the
    first few names once there are more than `GROUP_OVER`.
    """
    folded = [
        line
        for line in fold_items(
            items,
            scope=lambda i: (i.target, i.repository),
            ending=lambda i: (i.outcome, i.reason),
            all_tags=all_tags,
        )
        if line.ending.outcome != "skipped"
    ]
    groups: dict[tuple[str, str, str], list[ItemResult]] = {}
    for line in folded:
        end = line.ending
        if end.outcome in ("failed", "rejected"):
            groups.setdefault((end.outcome, end.target, end.reason), []).append(line.item)
    lines: list[tuple[tuple[str, str, str], str]] = []
    for line in folded:
        item, end = line.item, line.ending
        if len(groups.get((end.outcome, end.target, end.reason), [])) > GROUP_OVER:
            continue
        # A line of attached items alone shows the image's digest: their own move is theirs.
        moved = (
            f" (moved from {item.moved_from[:19]})" if item.moved_from and not line.alone else ""
        )
        reason = f": {end.reason}" if end.reason else ""
        lines.append(
            (
                (item.target, item.repository, item.tag),
                f"{end.outcome:8} {item.target} {item.repository}:{item.tag} "
                f"{item.digest[:19]}{moved}{line.note()}{reason}",
            )
        )
    for (outcome, target, reason), group in groups.items():
        if len(group) <= GROUP_OVER:
            continue
        first = sorted(group, key=lambda i: (i.repository, i.tag))
        names = ", ".join(f"{i.repository}:{i.tag}" for i in first[:GROUP_OVER])
        lines.append(
            (
                (target, first[0].repository, first[0].tag),
                f"{outcome:8} {target} {len(group)} items ({names}, ...): {reason}",
            )
        )
    return [text for _, text in sorted(lines)]


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
