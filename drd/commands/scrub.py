"""`drd scrub ENDPOINT [--repository GLOB] [--deep]`."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from drd.commands.output import emit

if TYPE_CHECKING:
    from drd.scrub.runner import ScrubReport

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(sub: Any, command: Any) -> None:
    """Add `scrub`."""
    p = command("scrub", "check every tag's manifests and blobs are whole at an endpoint", scrub)
    p.add_argument("endpoint", help="the endpoint to check ([endpoints.NAME])")
    p.add_argument(
        "--repository",
        action="append",
        default=None,
        help="only repositories matching this glob (repeatable; ** crosses /)",
    )
    p.add_argument(
        "--deep", action="store_true", help="download and re-hash every blob, not only HEAD it"
    )


async def scrub(args: argparse.Namespace) -> int:
    """Walk every tag's closure at one endpoint; exit 0 (whole), 1 (damage found) or 2."""
    # Imported on use, not at module level: start-up time of every CLI run.
    from drd.config import load_settings
    from drd.replicate.filters import RepoFilter
    from drd.resources import open_resources
    from drd.scrub.runner import scrub_registry

    settings = load_settings(args.config)
    if args.endpoint not in settings.endpoints:
        sys.stderr.write(f"drd: no endpoint named {args.endpoint}\n")
        return EXIT_USAGE
    wanted = RepoFilter(tuple(args.repository)) if args.repository else None
    async with open_resources(settings) as res:
        report = await scrub_registry(res.registries[args.endpoint], wanted, deep=args.deep)
    emit(args, report.to_json(), render(report))
    return EXIT_OK if report.ok else EXIT_FAILED


def render(report: ScrubReport) -> str:
    """One summary line, then one line per damaged object."""
    mode = "deep " if report.deep else ""
    verdict = "whole" if report.ok else f"{len(report.damage)} damaged object(s)"
    lines = [
        f"{mode}scrub of {report.endpoint}: {report.repositories} repositories, "
        f"{report.tags} tags, {report.manifests} manifests, {report.blobs} blobs: {verdict}"
    ]
    for d in report.damage:
        tags = f" (tags {', '.join(d.tags)})" if d.tags else ""
        lines.append(f"  {d.kind:16} {d.repository}@{d.digest}{tags}: {d.detail}")
    for repo, why in sorted(report.errors.items()):
        lines.append(f"  not walked       {repo}: {why}")
    return "\n".join(lines)
