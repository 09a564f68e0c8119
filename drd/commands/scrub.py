"""`drd scrub ENDPOINT [--repository GLOB] [--deep]`."""

from __future__ import annotations

import argparse
import time
from typing import Any

from drd.app.history import open_history
from drd.app.outcome import Outcome, run_word
from drd.commands.output import emit, fail
from drd.commands.units import abbreviate, short
from drd.config import load_settings
from drd.resources import open_resources
from drd.scrub.runner import ScrubReport, scrub_registry
from drd.selection.filters import RepoFilter
from drd.state import RunRecord


def register(sub: Any, command: Any) -> None:
    """Add `scrub`."""
    p = command("scrub", scrub)
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


async def scrub(args: argparse.Namespace) -> Outcome:
    """Walk every tag's closure at one endpoint: OK (whole), FAILED (damage found) or USAGE."""
    settings = load_settings(args.config)
    if args.endpoint not in settings.endpoints:
        return fail(args, f"no endpoint named {args.endpoint}")
    wanted = RepoFilter(tuple(args.repository)) if args.repository else None
    started = time.time()
    async with open_history(settings, "the scrub") as state, open_resources(settings) as res:
        report = await scrub_registry(res.registries[args.endpoint], wanted, deep=args.deep)
        if state is not None:
            await state.record_run(_run(report, started))
    emit(args, report.to_json(), render(report))
    return Outcome.OK if report.ok else Outcome.FAILED


def _run(report: ScrubReport, started: float) -> RunRecord:
    """The run `drd status` lists: job ``scrub:<endpoint>``, its counts and damage."""
    summary = {
        k: v for k, v in report.to_json().items() if k not in ("damage", "errors", "endpoint")
    }
    summary["damaged"] = len(report.damage)
    summary["not_walked"] = len(report.errors)
    problems = [f"{d.repository}@{d.digest}: {d.detail}" for d in report.damage]
    problems += [f"{repo}: {why}" for repo, why in sorted(report.errors.items())]
    return RunRecord(
        f"scrub:{report.endpoint}",
        "scrub",
        "manual",
        started,
        time.time(),
        run_word(report.ok, False),
        summary,
        "; ".join(problems)[:1000],
    )


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
        lines.append(
            f"  {d.kind:16} {d.repository}@{short(d.digest)}{tags}: {abbreviate(d.detail)}"
        )
    for repo, why in sorted(report.errors.items()):
        lines.append(f"  not walked       {repo}: {abbreviate(why)}")
    return "\n".join(lines)
