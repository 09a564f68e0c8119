"""
Referrers found through the source's referrers API, copied to one target, to any depth.

Where the source has the OCI 1.1 referrers API, a pass asks it for the referrers of every
digest it copied or found in place, then for theirs, up to `MAX_DEPTH` levels. Each is
copied by digest, byte-exact, once it is known to refer to its subject (and, on a trusted
policy, verified as an entry of a referrers index would be). A target without the API
gets each subject's ``sha256-<hex>`` fallback index, merged with what it already lists,
written only when it changes, and read back. A source without the API is asked once per
client: its fallback tags are tags, which the runner's attached rounds copy byte-exact.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import structlog

from drd.errors import DrdError, IntegrityError, NotFound, VerificationError
from drd.oci.descriptor import Descriptor
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest
from drd.oci.mediatype import OCI_INDEX
from drd.oci.referrers import (
    NOT_ATTACHED,
    REFERRERS,
    AttachedTag,
    claim_mismatch,
    fallback_tag,
    merge_fallback,
    referrer_entry,
)
from drd.registry.client import RegistryClient
from drd.replicate.copier import Copier
from drd.replicate.report import ItemResult

log = structlog.get_logger(__name__)

# A signature on an SBOM of an image is two levels; deeper than this is not a real chain.
MAX_DEPTH = 8

# Verifies what a referrers index lists (here: one referrer) under the trust policy.
ReferrersCheck = Callable[[RegistryClient, str, AttachedTag, Manifest], Awaitable[str]]

_LANDED = ("copied", "skipped", "planned")


@dataclass
class ReferrerWalk:
    """One repository's referrers on their way to one target, and what became of each."""

    source: RegistryClient
    copier: Copier
    target_name: str
    check: ReferrersCheck | None = None
    dry_run: bool = False
    read_back: bool = True
    # Referrers already handled at this target in this pass (repository, digest).
    done: set[tuple[str, Digest]] = field(default_factory=set)
    results: list[ItemResult] = field(default_factory=list)
    # The first registry failure at the target: the runner decides whether it is down.
    failure: DrdError | None = None
    # What the source's API listed per (repository, subject), shared by a pass's targets:
    # asked once per pass, not once per target.
    listings: dict[tuple[str, Digest], list[Descriptor] | None] = field(default_factory=dict)

    @property
    def target(self) -> RegistryClient:
        return self.copier.target

    async def run(self, repo: str, subjects: set[Digest], with_tag: set[Digest]) -> set[Digest]:
        """
        Copy the referrers of *subjects* (and theirs) in *repo*; return those now at the
        target. A subject in *with_tag* has a fallback tag at the source, copied as a
        tag: its fallback index at the target is not rewritten here.
        """
        arrived: set[Digest] = set()
        frontier = sorted(subjects, key=str)
        seen = set(subjects)
        for _ in range(MAX_DEPTH):
            if not frontier or self.source.has_referrers_api is False:
                break
            found = await asyncio.gather(
                *(self._referrers_of(repo, s, s in with_tag) for s in frontier)
            )
            frontier = []
            for digests in found:
                for digest in digests:
                    arrived.add(digest)
                    if digest not in seen:
                        seen.add(digest)
                        frontier.append(digest)
        return arrived

    async def _referrers_of(self, repo: str, subject: Digest, has_tag: bool) -> list[Digest]:
        """*subject*'s referrers through the source's API, each copied; those at the target."""
        if (repo, subject) not in self.listings:
            self.listings[(repo, subject)] = await self.source.referrers_by_api(repo, subject)
        listed = self.listings[(repo, subject)]
        arrived: list[Descriptor] = []
        for desc in listed or []:
            if (repo, desc.digest) in self.done:
                continue
            self.done.add((repo, desc.digest))
            result = await self._copy(repo, subject, desc)
            self.results.append(result)
            if result.outcome in _LANDED:
                arrived.append(desc)
        if arrived and not has_tag and not self.dry_run and self.failure is None:
            try:
                await self._keep_fallback(repo, subject, arrived)
            except DrdError as exc:
                self.failure = exc
                tag = fallback_tag(subject)
                self.results.append(
                    ItemResult(
                        repo,
                        tag,
                        self.target_name,
                        str(subject),
                        "failed",
                        str(exc),
                        error=type(exc).__name__,
                    )
                )
        return [d.digest for d in arrived]

    async def _copy(self, repo: str, subject: Digest, desc: Descriptor) -> ItemResult:
        """
        One referrer of *subject*, by digest: skipped when the target has it; else checked
        to refer to *subject* (and verified, on a trusted policy), copied, and read back.
        """
        label, digest = f"{fallback_tag(subject)}@{desc.digest}", str(desc.digest)
        target = self.target_name
        key = ""
        try:
            if await self.target.head_manifest(repo, digest) is not None:
                self.copier.seen.add((repo, desc.digest))
                return ItemResult(repo, label, target, digest, "skipped", "up to date")
            if self.dry_run:
                return ItemResult(repo, label, target, digest, "planned")
            manifest = await self.source.get_manifest(repo, desc.digest)
            if manifest.subject is None or manifest.subject.digest != subject:
                return ItemResult(repo, label, target, digest, "rejected", NOT_ATTACHED)
            if self.check is not None:
                listing = Manifest.parse(_listing([desc]), OCI_INDEX)
                key = await self.check(self.source, repo, AttachedTag(subject, REFERRERS), listing)
            copied = await self.copier.copy_graph(repo, repo, desc.digest, manifest)
            if self.read_back:
                await self.copier.read_back(repo, copied)
        except VerificationError as exc:
            return ItemResult(repo, label, target, digest, "rejected", exc.reason)
        except DrdError as exc:
            self.failure = self.failure or exc
            error = type(exc).__name__
            return ItemResult(repo, label, target, digest, "failed", str(exc), error=error)
        return ItemResult(repo, label, target, digest, "copied", "", "", key)

    async def _keep_fallback(self, repo: str, subject: Digest, referrers: list[Descriptor]) -> None:
        """
        At a target without the referrers API, *subject*'s fallback index lists
        *referrers* too: merged with what it lists, written when it changes, read back.
        A registry with the API lists them by their subject itself; a tag of that name
        holding something other than a referrers index is left alone.
        """
        if await self.target.referrers_by_api(repo, subject) is not None:
            return
        tag = fallback_tag(subject)
        try:
            existing: Manifest | None = await self.target.get_manifest(repo, tag)
        except NotFound:
            existing = None
        if existing is not None and claim_mismatch(AttachedTag(subject, REFERRERS), existing):
            log.warning(
                "replicate.fallback_tag_kept", repository=repo, tag=tag, target=self.target_name
            )
            return
        raw = merge_fallback(existing, referrers)
        if raw is None:
            return
        index = Manifest.parse(raw, OCI_INDEX)
        await self.copier.tag(repo, tag, index)
        stored = await self.target.get_manifest(repo, tag)
        if stored.raw != raw:
            raise IntegrityError(f"{self.target.host} returned other bytes for {repo}:{tag}")
        moved = str(existing.digest) if existing is not None else ""
        self.results.append(
            ItemResult(
                repo, tag, self.target_name, str(index.digest), "copied", "referrers listed", moved
            )
        )


def _listing(descriptors: Sequence[Descriptor]) -> bytes:
    """A referrers index listing *descriptors*: what the trust side checks referrers in."""
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [referrer_entry(d) for d in descriptors],
    }
    return json.dumps(doc).encode()
