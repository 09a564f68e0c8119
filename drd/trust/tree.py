"""Verify a digest and, when the policy requires children, every manifest under it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from drd.errors import VerificationError
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest
from drd.oci.mediatype import is_index
from drd.trust.keys import TrustPolicy
from drd.trust.policy import MALFORMED, children_to_verify

# Real images nest an index once (attestation indexes twice); past this it is hostile.
MAX_DEPTH = 8
# Manifests verified under one root at most: each costs a signature check.
MAX_MANIFESTS = 10_000


class ManifestSource(Protocol):
    """The one read the walk needs besides the verifier's own."""

    async def get_manifest(self, repository: str, reference: str | Digest) -> Manifest: ...


C = TypeVar("C", bound=ManifestSource)


async def verify_tree(
    client: C,
    repository: str,
    digest: Digest,
    policy: TrustPolicy,
    verify_one: Callable[[C, str, Digest], Awaitable[str]],
) -> str:
    """
    Verify *digest* with *verify_one*; with ``require_children``, every index under it too,
    to any depth, and every child of each (`children_to_verify`), in the same repository.

    Children are read from each verified index's own bytes (by digest), never from a
    tag. Returns the root's key fingerprint. Raises `VerificationError`: the first child
    that does not verify, its reason kept and its path from the root named; or
    ``malformed`` for an index nested deeper than `MAX_DEPTH` or wider than
    `MAX_MANIFESTS` in all.
    """
    key = await verify_one(client, repository, digest)
    if not policy.require_children:
        return key
    done: set[Digest] = {digest}
    todo: list[tuple[Digest, tuple[Digest, ...]]] = [(digest, ())]
    while todo:
        index, path = todo.pop()
        manifest = await client.get_manifest(repository, index)
        wanted = set(children_to_verify(manifest, policy))
        for child in manifest.manifests:
            if child.digest not in wanted or child.digest in done:
                continue
            done.add(child.digest)
            if len(done) > MAX_MANIFESTS:
                raise _error(digest, path, child.digest, f"more than {MAX_MANIFESTS} manifests")
            try:
                await verify_one(client, repository, child.digest)
            except VerificationError as exc:
                raise _child_error(digest, (*path, child.digest), exc) from exc
            if is_index(child.media_type):
                if len(path) + 1 >= MAX_DEPTH:
                    raise _error(digest, path, child.digest, f"nests deeper than {MAX_DEPTH}")
                todo.append((child.digest, (*path, child.digest)))
    return key


def _child_error(
    root: Digest, path: tuple[Digest, ...], exc: VerificationError
) -> VerificationError:
    via = "".join(f" in {d}" for d in reversed(path[:-1]))
    return VerificationError(
        f"index {root}: child {path[-1]}{via} is not verified: {exc.message}",
        reason=exc.reason,
        digest=str(root),
        child=str(path[-1]),
    )


def _error(root: Digest, path: tuple[Digest, ...], child: Digest, what: str) -> VerificationError:
    return VerificationError(
        f"index {root}: {what} (at {child})", reason=MALFORMED, digest=str(root), child=str(child)
    )
