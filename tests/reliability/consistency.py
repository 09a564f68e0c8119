"""
What must hold at a target after any fault or crash, checked with plain aiohttp.

`assert_target_consistent` walks every tag of a repository: the manifest's bytes
hash to the digest the registry names, every child manifest and every blob it
needs is there and hashes right. For a `LocalRegistry` it also hashes every blob
and manifest the repository links on disk, so a half-written or corrupt object
cannot hide behind a tag that does not point at it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from drd.oci import mediatype
from tests.servers import LocalRegistry

# Re-checks, and the seconds between them, before a problem counts (see below).
SETTLE_CHECKS = 5
SETTLE_S = 0.2


@dataclass
class Consistency:
    """What the checker walked, and what it found wrong."""

    tags: dict[str, str] = field(default_factory=dict)  # tag -> digest
    manifests: set[str] = field(default_factory=set)
    blobs: set[str] = field(default_factory=set)
    on_disk: int = 0  # objects hashed from the registry's storage
    problems: list[str] = field(default_factory=list)


class _Walker:
    def __init__(self, session: aiohttp.ClientSession, base: str, repo: str) -> None:
        self.session, self.base, self.repo = session, base, repo
        self.result = Consistency()
        self._done: set[str] = set()

    def url(self, *parts: str) -> str:
        return "/".join([self.base, "v2", self.repo, *parts])

    async def tags(self) -> list[str]:
        tags: list[str] = []
        url: str | None = self.url("tags", "list")
        while url:
            async with self.session.get(url) as resp:
                if resp.status == 404:
                    return []
                if resp.status != 200:
                    raise AssertionError(f"tags list of {self.repo}: HTTP {resp.status}")
                tags += (await resp.json()).get("tags") or []
                link = resp.headers.get("Link", "")
            url = None
            if 'rel="next"' in link:
                url = self.base + link.split(";")[0].strip("<> ")
        return tags

    async def manifest(self, ref: str) -> tuple[int, bytes, Mapping[str, str]]:
        headers = {"Accept": mediatype.MANIFEST_ACCEPT}
        async with self.session.get(self.url("manifests", ref), headers=headers) as resp:
            return resp.status, await resp.read(), resp.headers

    async def check_tag(self, tag: str) -> None:
        status, body, headers = await self.manifest(tag)
        if status != 200:
            self.result.problems.append(f"tag {tag}: HTTP {status}")
            return
        actual = "sha256:" + hashlib.sha256(body).hexdigest()
        named = headers.get("Docker-Content-Digest", actual)
        if named != actual:
            self.result.problems.append(f"tag {tag}: registry names {named}, bytes hash {actual}")
        self.result.tags[tag] = actual
        await self.walk(f"tag {tag}", actual, body)

    async def walk(self, where: str, digest: str, body: bytes) -> None:
        if digest in self._done:
            return
        self._done.add(digest)
        self.result.manifests.add(digest)
        try:
            doc: Any = json.loads(body)
        except ValueError:
            self.result.problems.append(f"{where}: manifest {digest} is not JSON")
            return
        for child in doc.get("manifests") or []:
            await self.child_manifest(f"{where} -> {digest[:19]}", child)
        blobs = ([doc["config"]] if isinstance(doc.get("config"), dict) else []) + list(
            doc.get("layers") or doc.get("blobs") or []
        )
        for blob in blobs:
            await self.blob(f"{where} -> {digest[:19]}", blob)

    async def child_manifest(self, where: str, desc: Mapping[str, Any]) -> None:
        digest = str(desc.get("digest"))
        if digest in self._done:
            return
        status, body, _ = await self.manifest(digest)
        if status != 200:
            self.result.problems.append(f"{where}: child manifest {digest} missing ({status})")
            return
        if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            self.result.problems.append(f"{where}: child manifest {digest} fails its digest")
        if len(body) != desc.get("size"):
            self.result.problems.append(f"{where}: child manifest {digest} size differs")
        await self.walk(where, digest, body)

    async def blob(self, where: str, desc: Mapping[str, Any]) -> None:
        digest = str(desc.get("digest"))
        if digest in self._done:
            return
        self._done.add(digest)
        self.result.blobs.add(digest)
        hasher, size = hashlib.sha256(), 0
        async with self.session.get(self.url("blobs", digest)) as resp:
            if resp.status != 200:
                self.result.problems.append(f"{where}: blob {digest} missing ({resp.status})")
                return
            async for chunk in resp.content.iter_chunked(1 << 20):
                hasher.update(chunk)
                size += len(chunk)
        if "sha256:" + hasher.hexdigest() != digest:
            self.result.problems.append(f"{where}: blob {digest} fails its digest")
        if size != desc.get("size"):
            self.result.problems.append(f"{where}: blob {digest} is {size} bytes, not {desc}")


def _file_digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


def _settled(link: Path) -> str:
    """
    A link's digest, once the registry finished writing it.

    distribution writes a link in place (truncate, then write), so a link written by a
    request still finishing can be read half-written for a moment.
    """
    expected = f"{link.parent.parent.name}:{link.parent.name}"
    for _ in range(50):
        digest = link.read_text().strip()
        if digest == expected:
            return digest
        time.sleep(0.02)
    return digest


def check_storage(registry: LocalRegistry, repo: str, result: Consistency) -> None:
    """Hash every blob and manifest revision *repo* links in the registry's storage."""
    repo_dir = registry.repository_dir(repo)
    blobs_dir = registry.root / "docker" / "registry" / "v2" / "blobs"
    links = [
        *(repo_dir / "_layers").glob("*/*/link"),
        *(repo_dir / "_manifests" / "revisions").glob("*/*/link"),
    ]
    for link in links:
        digest = _settled(link)
        algorithm, _, hexpart = digest.partition(":")
        data = blobs_dir / algorithm / hexpart[:2] / hexpart / "data"
        if not data.is_file():
            result.problems.append(f"storage: {link.parent.name} linked but has no data")
            continue
        result.on_disk += 1
        if _file_digest(data) != digest:
            result.problems.append(f"storage: object {digest} fails its digest")


async def check_target(
    registry: LocalRegistry | str,
    repo: str,
    *,
    headers: Mapping[str, str] | None = None,
) -> Consistency:
    """Walk every tag of *repo* at *registry*; return what was found (problems included)."""
    base = registry.url if isinstance(registry, LocalRegistry) else registry.rstrip("/")
    ssl: Any = True
    if isinstance(registry, LocalRegistry) and registry.tls is not None:
        ssl = registry.tls.client_context()
    async with aiohttp.ClientSession(
        headers=dict(headers or {}),
        timeout=aiohttp.ClientTimeout(total=300),
        connector=aiohttp.TCPConnector(ssl=ssl),
    ) as session:
        walker = _Walker(session, base, repo)
        for tag in sorted(await walker.tags()):
            await walker.check_tag(tag)
    if isinstance(registry, LocalRegistry):
        check_storage(registry, repo, walker.result)
    return walker.result


async def assert_target_consistent(
    registry: LocalRegistry | str,
    repo: str,
    *,
    headers: Mapping[str, str] | None = None,
) -> Consistency:
    """
    Fail unless every tag of *repo* points at complete, digest-true content.

    Returns what was walked, for tests that assert on it further. A registry may
    still be finishing the last request a killed client sent (distribution lists a
    tag a moment before its link is written): a problem must outlast a short wait to
    count. What persists is damage.
    """
    result = await check_target(registry, repo, headers=headers)
    for _ in range(SETTLE_CHECKS):
        if not result.problems:
            break
        await asyncio.sleep(SETTLE_S)
        result = await check_target(registry, repo, headers=headers)
    assert not result.problems, "\n".join(result.problems)
    return result


async def tag_digests(
    registry: LocalRegistry | str, repo: str, *, headers: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Every tag of *repo* and the digest of the bytes it serves."""
    result = await check_target(registry, repo, headers=headers)
    return result.tags
