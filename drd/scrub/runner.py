"""
`scrub_registry`: check every tag's closure in the selected repositories of one registry.

Reads only. Repositories are walked concurrently, the tags of one repository one
after another (each object is checked once per repository, whichever tag reaches
it first).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from drd.aio import run_all
from drd.errors import DrdError, TransientError
from drd.oci.digest import Digest
from drd.registry.client import RegistryClient
from drd.scrub.check import ClosureCheck, Damage, check_closure
from drd.selection.filters import RepoFilter

log = structlog.get_logger(__name__)


@dataclass
class ScrubReport:
    """One scrub: what was walked and every damaged object found."""

    endpoint: str
    deep: bool
    repositories: int = 0
    tags: int = 0
    manifests: int = 0
    blobs: int = 0
    bytes_hashed: int = 0
    damage: list[Damage] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # repository -> why it was not walked
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        """Every closure whole, every repository walked."""
        return not self.damage and not self.errors

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "endpoint": self.endpoint,
            "deep": self.deep,
            "ok": self.ok,
            "repositories": self.repositories,
            "tags": self.tags,
            "manifests": self.manifests,
            "blobs": self.blobs,
            "bytes_hashed": self.bytes_hashed,
            "damage": [d.to_json() for d in self.damage],
            "errors": dict(sorted(self.errors.items())),
            "duration_s": round(self.duration_s, 3),
        }


async def scrub_repository(
    client: RegistryClient, repo: str, *, deep: bool = False, concurrency: int = 8
) -> tuple[ClosureCheck, dict[str, Digest]]:
    """
    Walk every tag of *repo*: the check (objects seen, damage) and the tags walked.

    Registry outages (`TransientError`) raise; a tag gone since the listing is skipped.
    """
    check = ClosureCheck(repo, deep=deep)
    limit = asyncio.Semaphore(max(concurrency, 1))
    tags: dict[str, Digest] = {}
    for tag in sorted(await client.list_tags(repo)):
        desc = await client.head_manifest(repo, tag)
        digest = desc.digest if desc is not None else None
        if digest is None:
            try:
                digest = (await client.get_manifest(repo, tag)).digest
            except TransientError:
                raise
            except DrdError:
                continue  # deleted meanwhile, or unreadable: nothing names a digest to walk
        tags[tag] = digest
        await check_closure(client, check, digest, limit=limit)
    return check, tags


async def scrub_registry(
    client: RegistryClient,
    repositories: RepoFilter | None = None,
    *,
    deep: bool = False,
    concurrency: int = 4,
) -> ScrubReport:
    """
    Check every tag's closure in the repositories of *client* that *repositories*
    selects (all of the catalog when None). Damage is in the report; a repository
    that could not be listed is in ``errors``; registry outages raise.
    """
    report = ScrubReport(endpoint=client.name, deep=deep)
    started = time.monotonic()
    literal = repositories.literal_names() if repositories is not None else None
    names = (
        literal
        if literal is not None
        else sorted(n for n in await client.catalog() if repositories is None or repositories(n))
    )
    limit = asyncio.Semaphore(max(concurrency, 1))

    async def one(repo: str) -> None:
        async with limit:
            try:
                check, tags = await scrub_repository(client, repo, deep=deep)
            except TransientError:
                raise
            except DrdError as exc:
                report.errors[repo] = f"{type(exc).__name__}: {exc}"
                return
        report.repositories += 1
        report.tags += len(tags)
        report.manifests += len(check.manifests)
        report.blobs += len(check.blobs)
        report.bytes_hashed += check.bytes_hashed
        report.damage.extend(check.found(tags))

    with structlog.contextvars.bound_contextvars(job="scrub", endpoint=client.name):
        await run_all(one(r) for r in names)
        report.damage.sort(key=lambda d: (d.repository, d.digest))
        report.duration_s = time.monotonic() - started
        for damage in report.damage:
            log.warning("scrub.damage", **damage.to_json())
        log.info(
            "scrub.run_finished",
            ok=report.ok,
            repositories=report.repositories,
            tags=report.tags,
            damaged=len(report.damage),
            duration_s=round(report.duration_s, 3),
        )
    return report
