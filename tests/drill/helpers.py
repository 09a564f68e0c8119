"""Helpers for drill and failover tests: signed pushes, independent counting, configs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from drd.oci.digest import Digest
from drd.oci.referrers import subject_of_tag
from drd.trust.keys import TrustPolicy, load_public_key
from tests.images import (
    Image,
    Index,
    RegistryWriter,
    make_cosign_signature,
    push_image,
    push_index,
    signature_tag,
)
from tests.layouts import fixture_path
from tests.servers import LocalRegistry
from tests.trust.signing import cached_key, policy_for

KEY = cached_key("ecdsa-p256")  # the release key every signed test image is signed with
TRUST = policy_for(KEY, name="release")
COSIGN_CASE = "ocmirror-cosign-single"


def cosign_fixture_policy() -> TrustPolicy:
    """Trust in the real cosign key of the ``ocmirror-cosign-single`` fixture, plus KEY."""
    pem = (fixture_path(COSIGN_CASE) / "trust" / "cosign.pub").read_bytes()
    return TrustPolicy(
        name="release", keys=(load_public_key(pem, "cosign.pub"), KEY.trust_key("release.pub"))
    )


async def push_signed(
    registry: LocalRegistry, repo: str, artifact: Image | Index, tag: str
) -> Digest:
    """Push *artifact* under *tag* and a cosign signature of it by KEY; the artifact's digest."""
    if isinstance(artifact, Index):
        await push_index(registry, repo, artifact, tag)
    else:
        await push_image(registry, repo, artifact, tag)
    sig = make_cosign_signature(artifact, KEY.private, docker_reference=f"{registry.host}/{repo}")
    await push_image(registry, repo, sig, signature_tag(artifact.digest))
    return artifact.digest


@dataclass
class Measured:
    """What a registry holds under some repositories, counted by the test's own client."""

    tags: int = 0
    manifests: int = 0
    blobs: int = 0
    bytes: int = 0
    tag_map: dict[str, dict[str, Digest]] = field(default_factory=dict)
    manifest_digests: dict[str, set[Digest]] = field(default_factory=dict)
    blob_digests: dict[str, set[Digest]] = field(default_factory=dict)

    @property
    def objects(self) -> int:
        return self.manifests + self.blobs


def _descriptors(doc: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    items = doc.get(key)
    return [d for d in items if isinstance(d, dict)] if isinstance(items, list) else []


async def measure(registry: LocalRegistry, repositories: Iterable[str]) -> Measured:
    """
    Walk *repositories* independently of drd: every tag, every manifest reachable from
    a tag (index children recursively), every blob those manifests name, and bytes.
    """
    out = Measured()
    async with RegistryWriter(registry) as w:
        for repo in sorted(repositories):
            tags = await w.list_tags(repo)
            out.tag_map[repo] = {}
            seen: dict[Digest, bytes] = {}
            blobs: dict[Digest, int] = {}
            for tag in tags:
                raw, _ = await w.get_manifest(repo, tag)
                out.tag_map[repo][tag] = Digest.of(raw)
                todo = [raw]
                while todo:
                    body = todo.pop()
                    digest = Digest.of(body)
                    if digest in seen:
                        continue
                    seen[digest] = body
                    doc = json.loads(body)
                    for child in _descriptors(doc, "manifests"):
                        child_raw, _ = await w.get_manifest(repo, Digest.parse(child["digest"]))
                        todo.append(child_raw)
                    named = _descriptors(doc, "layers") + _descriptors(doc, "blobs")
                    if isinstance(doc.get("config"), dict):
                        named.append(doc["config"])
                    for desc in named:
                        blobs[Digest.parse(desc["digest"])] = int(desc["size"])
            out.tags += len(tags)
            out.manifests += len(seen)
            out.blobs += len(blobs)
            out.bytes += sum(len(b) for b in seen.values()) + sum(blobs.values())
            out.manifest_digests[repo] = set(seen)
            out.blob_digests[repo] = set(blobs)
    return out


def release_tags(tag_map: Mapping[str, Mapping[str, Digest]]) -> list[tuple[str, str]]:
    """The (repository, tag) pairs that are not signature or referrers tags."""
    return sorted(
        (repo, tag) for repo, tags in tag_map.items() for tag in tags if subject_of_tag(tag) is None
    )
