"""`drd restore --snapshot ID|latest --to ENDPOINT [--repository GLOB] [--tag REGEX]`."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from drd.commands.output import emit
from drd.commands.snapshot import LATEST, index_key_for, snapshots_config

if TYPE_CHECKING:
    from drd.restore.runner import RestoreReport

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(sub: Any, command: Any) -> None:
    """Add `restore`."""
    p = command("restore", "recreate repositories and tags from a snapshot", restore)
    p.add_argument("--snapshot", required=True, help=f"snapshot id or {LATEST!r}")
    p.add_argument("--to", required=True, help="endpoint to restore into ([endpoints.NAME])")
    p.add_argument(
        "--repository",
        action="append",
        default=None,
        help="only repositories matching this glob (repeatable; ** crosses /)",
    )
    p.add_argument("--tag", default=None, help="only tags matching this regex (re.search)")
    p.add_argument(
        "--prefix", default="", help="restore under this repository prefix, e.g. 'restored/'"
    )
    p.add_argument(
        "--source", default=None, help="snapshots of this endpoint (default: [snapshots].source)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")


async def restore(args: argparse.Namespace) -> int:
    """Restore one snapshot into one endpoint; exit 0, 1 (something failed) or 2 (usage)."""
    # Imported on use, not at module level: start-up time of every CLI run.
    from drd.config import load_settings
    from drd.resources import open_resources
    from drd.restore.plan import Selection
    from drd.restore.runner import restore_snapshot
    from drd.snapshot.catalog import load_snapshot
    from drd.snapshot.store import open_store

    settings = load_settings(args.config)
    config = snapshots_config(settings)
    if args.to not in settings.endpoints:
        sys.stderr.write(f"drd: no endpoint named {args.to}\n")
        return EXIT_USAGE
    source = args.source or config.source
    selection = Selection(
        repositories=tuple(args.repository) if args.repository else None, tag_pattern=args.tag
    )
    async with open_resources(settings) as res, open_store(config, res.retry) as store:
        snap = await load_snapshot(store, source, args.snapshot, verify_key=index_key_for(config))
        report = await restore_snapshot(
            store,
            snap,
            res.registries[args.to],
            sources=res.registries,
            selection=selection,
            repository_prefix=args.prefix,
            dry_run=args.dry_run,
            retry=res.retry,
        )
    emit(args, report.to_json(), render(report))
    return EXIT_OK if report.ok else EXIT_FAILED


def render(report: RestoreReport) -> str:
    """Human text: one summary line, then one line per tag that is not already right."""
    s = report.summary()
    mode = " (dry run)" if report.dry_run else ""
    lines = [
        f"restore of snapshot {report.snapshot} into {report.target}{mode}: "
        f"{s['restored']} restored, {s['moved']} moved back, {s['unchanged']} unchanged, "
        f"{s['planned']} planned, {s['failed']} failed; {s['manifests_pushed']} manifests, "
        f"{s['blobs_from_store'] + s['blobs_from_endpoints']} blobs uploaded "
        f"({s['bytes_uploaded']} bytes), {s['blobs_mounted']} mounted in {s['duration_s']}s"
    ]
    for item in report.items:
        if item.outcome == "unchanged" or (item.outcome == "planned" and item.action == "keep"):
            continue
        moved = f" (from {item.moved_from})" if item.moved_from else ""
        reason = f": {item.reason}" if item.reason else ""
        label = item.action if item.outcome == "planned" else item.outcome
        lines.append(f"  {label:9} {item.repository}:{item.tag} {item.digest}{moved}{reason}")
    for where, reason in sorted(report.failures.items()):
        lines.append(f"  failed    {where}: {reason}")
    return "\n".join(lines)
