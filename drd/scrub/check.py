"""
Walk a tag's closure at a registry and report what is missing or wrong.

A manifest answering HEAD says nothing about its layers: a storage backend that lost
objects, or a blob deleted under a present manifest, leaves a tag that resolves and
an image that does not pull. The walk GETs every manifest (digest-checked), recurses
into an index's children, and HEADs every blob against its descriptor's size; *deep*
streams each blob through a hasher instead. Reads only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

from drd.aio import run_all
from drd.errors import DigestMismatch, DrdError, NotFound, SizeMismatch, TransientError
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest
from drd.registry.client import CHUNK, RegistryClient
from drd.registry.stream import verified_chunks

# Real graphs nest an index in an index at most twice; deeper is hostile.
MAX_DEPTH = 8

DamageKind = Literal[
    "missing-manifest", "bad-manifest", "missing-blob", "wrong-size", "wrong-digest"
]


@dataclass(frozen=True, slots=True)
class Damage:
    """One object of a closure that is not as its parent describes it."""

    repository: str
    digest: str
    kind: DamageKind
    detail: str
    tags: tuple[str, ...] = ()  # the tags whose closure holds it

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "repository": self.repository,
            "digest": self.digest,
            "kind": self.kind,
            "detail": self.detail,
            "tags": list(self.tags),
        }


@dataclass
class ClosureCheck:
    """What one repository's walk saw, shared across its tags (each object checked once)."""

    repository: str
    deep: bool = False
    manifests: dict[Digest, Manifest | None] = field(default_factory=dict)
    blobs: dict[Digest, bool] = field(default_factory=dict)  # digest -> whole
    damage: dict[Digest, Damage] = field(default_factory=dict)
    bytes_hashed: int = 0

    def closure(self, root: Digest) -> set[Digest]:
        """Every digest the walk saw below *root* (itself included)."""
        seen: set[Digest] = set()
        stack = [root]
        while stack:
            digest = stack.pop()
            if digest in seen:
                continue
            seen.add(digest)
            if (manifest := self.manifests.get(digest)) is not None:
                stack.extend(c.digest for c in manifest.manifests)
                seen.update(b.digest for b in manifest.blobs)
        return seen

    def found(self, tags: dict[str, Digest]) -> list[Damage]:
        """Every damaged object, with the tags (of *tags*) whose closure holds it."""
        owners: dict[Digest, set[str]] = {}
        for tag, root in tags.items():
            for digest in self.closure(root) & self.damage.keys():
                owners.setdefault(digest, set()).add(tag)
        return [
            Damage(d.repository, d.digest, d.kind, d.detail, tuple(sorted(owners.get(k, ()))))
            for k, d in sorted(self.damage.items())
        ]


async def check_closure(
    client: RegistryClient,
    check: ClosureCheck,
    digest: Digest,
    *,
    limit: asyncio.Semaphore | None = None,
) -> bool:
    """
    Walk *digest* and everything below it in ``check.repository``; record damage in
    *check*. True when the closure is whole. Registry outages (`TransientError`) raise.

    Walk one root at a time per *check*: what an earlier walk found is reused, not
    fetched again.
    """
    limit = limit or asyncio.Semaphore(8)
    return await _node(client, check, digest, limit, 0)


async def _node(
    client: RegistryClient,
    check: ClosureCheck,
    digest: Digest,
    limit: asyncio.Semaphore,
    depth: int,
) -> bool:
    if digest in check.manifests:
        return _whole(check, check.manifests[digest], digest)
    repo = check.repository
    manifest: Manifest | None = None
    try:
        async with limit:
            manifest = await client.get_manifest(repo, digest)
    except NotFound:
        check.damage[digest] = Damage(repo, str(digest), "missing-manifest", "manifest unknown")
    except TransientError:
        raise
    except (DrdError, ValueError) as exc:
        check.damage[digest] = Damage(
            repo, str(digest), "bad-manifest", f"{type(exc).__name__}: {exc}"
        )
    check.manifests[digest] = manifest
    if manifest is None:
        return False
    if depth >= MAX_DEPTH and manifest.manifests:
        check.damage[digest] = Damage(
            repo, str(digest), "bad-manifest", f"nests deeper than {MAX_DEPTH}"
        )
        return False
    results: list[bool] = []

    async def collect(walk: Coroutine[Any, Any, bool]) -> None:
        results.append(await walk)

    # run_all, not gather: the first outage cancels the sibling walks instead of
    # leaving them running unowned.
    await run_all(
        [collect(_node(client, check, c.digest, limit, depth + 1)) for c in manifest.manifests]
        + [collect(_blob(client, check, b.digest, b.size, limit)) for b in manifest.blobs]
    )
    return all(results)


def _whole(check: ClosureCheck, manifest: Manifest | None, digest: Digest) -> bool:
    """Whether an already-walked manifest and everything below it were found whole."""
    if manifest is None or digest in check.damage:
        return False
    children = all(
        _whole(check, check.manifests.get(c.digest), c.digest) for c in manifest.manifests
    )
    return children and all(check.blobs.get(b.digest, True) for b in manifest.blobs)


async def _blob(
    client: RegistryClient,
    check: ClosureCheck,
    digest: Digest,
    size: int,
    limit: asyncio.Semaphore,
) -> bool:
    if digest in check.blobs:
        return check.blobs[digest]
    check.blobs[digest] = True  # claimed: a sibling walking the same blob waits on nothing
    repo = check.repository
    damage: Damage | None = None
    async with limit:
        if check.deep:
            try:
                hashed = await hash_blob(client, repo, digest, size)
                check.bytes_hashed += hashed  # not `+= await`: that reads the total before it
            except NotFound:
                damage = Damage(repo, str(digest), "missing-blob", "blob unknown")
            except SizeMismatch as exc:
                damage = Damage(repo, str(digest), "wrong-size", str(exc))
            except DigestMismatch as exc:
                damage = Damage(repo, str(digest), "wrong-digest", str(exc))
        else:
            held = await client.has_blob(repo, digest)
            if held is None:
                damage = Damage(repo, str(digest), "missing-blob", "blob unknown")
            elif held != size:
                damage = Damage(
                    repo, str(digest), "wrong-size", f"{held} bytes, the manifest says {size}"
                )
    if damage is not None:
        check.damage[digest] = damage
        check.blobs[digest] = False
    return damage is None


async def hash_blob(client: RegistryClient, repo: str, digest: Digest, size: int) -> int:
    """
    Stream one blob from *client* through a hasher; return its length.

    Raises `SizeMismatch` or `DigestMismatch` naming the digest, `NotFound` when absent.
    """
    count = 0
    async with client.open_blob(repo, digest, size) as reader:
        async for chunk in verified_chunks(reader.iter_chunked(CHUNK), digest, size):
            count += len(chunk)
    return count
