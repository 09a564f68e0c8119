"""`drd replicate`: one pass of every (or the named) replication policy."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from drd.commands.output import emit
from drd.errors import RegistryUnavailable, StorageUnavailable

if TYPE_CHECKING:
    from drd.replicate.report import PolicyReport


def register(sub: Any, command: Any) -> None:
    """Add `replicate`."""
    rep = command("replicate", "one replication pass", replicate)
    rep.add_argument("--policy", action="append", help="only this policy (repeatable)")
    rep.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    rep.add_argument(
        "--no-cache",
        action="store_true",
        help="ask every target for every tag, ignoring the known digests in the state directory",
    )


async def replicate(args: argparse.Namespace) -> int:
    """Run the selected policies once; exit 0, 1 (an item failed) or 69 (unavailable)."""
    # Imported on use, not at module level: start-up time of every CLI run.
    from drd.failover.active import load_active_settings
    from drd.replicate.cache import open_tag_cache
    from drd.replicate.runner import run_policy
    from drd.resources import (
        deletion_recorder,
        open_resources,
        policy_from_config,
        verifier_for,
    )

    settings = load_active_settings(args.config)
    names = set(args.policy or [])
    unknown = names - {rep.name for rep in settings.replication}
    if unknown:
        sys.stderr.write(f"drd: no replication policy named {', '.join(sorted(unknown))}\n")
        return 2
    reports: list[PolicyReport] = []
    state_dir = None if args.no_cache else settings.daemon.state_dir
    async with open_resources(settings) as res, open_tag_cache(state_dir) as cache:
        recorder = deletion_recorder(settings.snapshots, res.retry)
        for rep in settings.replication:
            if names and rep.name not in names:
                continue
            targets = {name: res.registries[name] for name in rep.targets}
            reports.append(
                await run_policy(
                    policy_from_config(rep),
                    res.registries[rep.source],
                    targets,
                    res.retry,
                    verifier=verifier_for(settings, rep),
                    dry_run=args.dry_run,
                    cache=cache,
                    recorder=recorder,
                )
            )
    emit(args, {"policies": [r.to_json() for r in reports]}, render(reports))
    return exit_code(reports)


def exit_code(reports: list[PolicyReport]) -> int:
    """
    0 all good; 69 a pass could not reach a registry, or a target was unreachable for the
    rest of a pass; 1 an item failed or was rejected.
    """
    unavailable = (RegistryUnavailable.__name__, StorageUnavailable.__name__, "RateLimited")
    if any(r.error.startswith(unavailable) or r.unreachable for r in reports):
        return 69
    return 0 if all(r.ok for r in reports) else 1


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
