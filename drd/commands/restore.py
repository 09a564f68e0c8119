"""
`drd restore --snapshot ID|latest --to ENDPOINT [--repository GLOB] [--tag REGEX]
[--yes] [--allow-unsigned-snapshot]`, or `drd restore --snapshot ID|latest --settings DIR
[--force]` for the registry settings the snapshot recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from drd.app.history import open_history
from drd.app.outcome import Outcome
from drd.app.restore import restore_from_settings
from drd.app.settings_restore import restore_settings
from drd.app.snapshots import snapshots_config
from drd.commands.folding import fold_items
from drd.commands.output import emit, fail
from drd.commands.units import abbreviate, iec, short
from drd.config import load_settings
from drd.progress import for_terminal, shown
from drd.resources import open_resources
from drd.restore.plan import Selection
from drd.restore.runner import RestoreReport
from drd.snapshot.catalog import LATEST
from drd.snapshot.model import Snapshot
from drd.snapshot.settings import SettingsRestore


def register(sub: Any, command: Any) -> None:
    """Add `restore`."""
    p = command("restore", restore)
    p.add_argument("--snapshot", required=True, help=f"snapshot id or {LATEST!r}")
    into = p.add_mutually_exclusive_group(required=True)
    into.add_argument("--to", help="endpoint to restore into ([endpoints.NAME])")
    into.add_argument(
        "--settings",
        type=Path,
        metavar="DIR",
        help="write the snapshot's registry settings files under DIR (no registry needed)",
    )
    p.add_argument(
        "--force", action="store_true", help="with --settings: overwrite files already in DIR"
    )
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
    p.add_argument(
        "--all-tags",
        action="store_true",
        help="list signature, attestation, SBOM and referrers tags as their own lines"
        " (default: folded into their image's line; --json lists every tag)",
    )
    p.add_argument(
        "--yes",
        action="store_true",
        help="restore into an endpoint that is not the drill target without asking",
    )
    p.add_argument(
        "--allow-unsigned-snapshot",
        action="store_true",
        help="restore an index that is unsigned or whose signature does not verify (warns)",
    )


async def restore(args: argparse.Namespace) -> Outcome:
    """
    Restore one snapshot into one endpoint, recorded in the state database: OK, FAILED
    (something failed or the snapshot is not trusted) or USAGE (usage, or a write into
    production not confirmed).

    Before anything is written: the index's signature is checked (refused unless
    ``--allow-unsigned-snapshot``), ``latest`` is checked against this host's
    watermark (refused when older), and a restore into an endpoint that is not the
    drill target is confirmed on the terminal (or by ``--yes``).
    """
    settings = load_settings(args.config)
    snapshots_config(settings)
    if args.settings is not None:
        written = await restore_settings(
            settings,
            snapshot=args.snapshot,
            folder=args.settings,
            source=args.source,
            force=args.force,
            allow_unsigned=args.allow_unsigned_snapshot,
        )
        emit(args, written.to_json(), render_settings(written))
        return Outcome.OK if written.ok else Outcome.FAILED
    if args.force:
        return fail(args, "--force applies only with --settings")
    if args.to not in settings.endpoints:
        return fail(args, f"no endpoint named {args.to}")
    selection = Selection(
        repositories=tuple(args.repository) if args.repository else None, tag_pattern=args.tag
    )
    drill_target = settings.drills.target if settings.drills is not None else None
    production = args.to != drill_target and not args.dry_run
    if production and not args.yes and not sys.stdin.isatty():
        return fail(args, _unconfirmed(args.to, drill_target))

    async def confirm(snap: Snapshot) -> bool:
        if not production or args.yes:
            return True
        return await _confirmed(args.to, snap.id, drill_target)

    async with (
        open_history(settings, "the restore") as state,
        open_resources(settings) as res,
    ):
        tally = for_terminal(args)
        async with shown(tally):
            report = await restore_from_settings(
                settings,
                res,
                snapshot=args.snapshot,
                to=args.to,
                source=args.source,
                selection=selection,
                prefix=args.prefix,
                dry_run=args.dry_run,
                allow_unsigned=args.allow_unsigned_snapshot,
                confirm=confirm,
                state=state,
                progress=tally,
            )
    if report is None:
        return fail(args, f"restore into {args.to} not confirmed; nothing was written")
    emit(args, report.to_json(), render(report, all_tags=args.all_tags))
    return Outcome.OK if report.ok else Outcome.FAILED


def _unconfirmed(endpoint: str, drill_target: str | None) -> str:
    drill = f"the drill target {drill_target!r}" if drill_target else "a drill target"
    return (
        f"refusing to restore into {endpoint!r} without confirmation: it is not "
        f"{drill}, and there is no terminal to ask on. Pass --yes to restore into it "
        "from a script, or --dry-run to see the plan"
    )


async def _confirmed(endpoint: str, snapshot_id: str, drill_target: str | None) -> bool:
    """Ask on the terminal; only the endpoint's name typed back confirms."""
    drill = f"the drill target ({drill_target})" if drill_target else "a drill target"
    sys.stderr.write(
        f"Restore snapshot {snapshot_id} into {endpoint}? It is not {drill}: tags there "
        f"will be created or moved.\nType the endpoint name ({endpoint}) to continue: "
    )
    sys.stderr.flush()
    try:
        answer = await asyncio.to_thread(sys.stdin.readline)
    except (OSError, ValueError):
        return False
    return str(answer).strip() == endpoint


def render(report: RestoreReport, *, all_tags: bool = False) -> str:
    """
    Human text: one summary line, then one line per tag that is not already right, with
    signature, attestation, SBOM and referrers tags folded into their image's line
    (*all_tags*: listed as their own lines).
    """
    s = report.summary()
    mode = " (dry run)" if report.dry_run else ""
    lines = [
        f"restore of snapshot {report.snapshot} into {report.target}{mode}: "
        f"{s['restored']} restored, {s['moved']} moved back, {s['unchanged']} unchanged, "
        f"{s['planned']} planned, {s['failed']} failed; {s['manifests_pushed']} manifests, "
        f"{s['blobs_from_store'] + s['blobs_from_endpoints']} blobs uploaded "
        f"({iec(s['bytes_uploaded'])}), {s['blobs_mounted']} mounted in {s['duration_s']}s"
    ]
    for line in fold_items(
        report.items,
        scope=lambda i: i.repository,
        ending=lambda i: (i.outcome, i.action, i.reason),
        all_tags=all_tags,
    ):
        item, end = line.item, line.ending
        if end.outcome == "unchanged":
            continue
        moved = f" (from {short(item.moved_from)})" if item.moved_from and not line.alone else ""
        reason = f": {abbreviate(end.reason)}" if end.reason else ""
        label = end.action if end.outcome == "planned" else end.outcome
        lines.append(
            f"  {label:9} {item.repository}:{item.tag} {short(item.digest)}{moved}"
            f"{line.note()}{reason}"
        )
    for where, reason in sorted(report.failures.items()):
        lines.append(f"  failed    {abbreviate(where)}: {abbreviate(reason)}")
    return "\n".join(lines)


def render_settings(report: SettingsRestore) -> str:
    """Human text for `restore --settings`: what was written, refused and left to the operator."""
    lines = [
        f"settings of snapshot {report.snapshot} into {report.folder}: "
        f"{len(report.written)} written, {len(report.existing)} already there, "
        f"{len(report.secrets)} secrets not in the snapshot"
    ]
    lines += [f"  wrote     {r.path} ({r.mode:04o}, {r.size} bytes)" for r in report.written]
    lines += [
        f"  exists    {r.path}: not overwritten, nothing was written (--force overwrites)"
        for r in report.existing
    ]
    lines += [
        f"  secret    {r.path}: recorded by digest only; restore it from where secrets are "
        f"kept ({short(r.digest)}, {r.mode:04o})"
        for r in report.secrets
    ]
    return "\n".join(lines)
