"""Replica drills: a DR replica checked in place against its source, nothing restored."""

from __future__ import annotations

import dataclasses
import json

from drd.drill.judge import Targets
from drd.drill.report import DrillReport
from drd.drill.runner import run_replica_drill
from drd.oci import mediatype
from drd.oci.digest import Digest
from drd.replica.check import ReplicaScope, verify_digest
from drd.replicate.runner import run_policy
from drd.trust.verify import verify_artifact
from tests.clients import RETRY, open_client, policy_for
from tests.drill.helpers import KEY, TRUST, push_signed
from tests.images import (
    RegistryWriter,
    make_cosign_signature,
    make_image,
    make_multiarch,
    push_image,
    push_index,
    signature_tag,
)
from tests.servers import LocalRegistry

TARGETS = Targets(rto_s=600.0, rpo_s=3600.0)


async def replicate(source: LocalRegistry, target: LocalRegistry, repo: str) -> None:
    async def verifier(client: object, repository: str, digest: Digest) -> str:
        verified = await verify_artifact(client, repository, digest, TRUST)  # type: ignore[arg-type]
        return verified.key_fingerprint

    async with open_client(source, "primary") as src, open_client(target, "dr") as dst:
        await run_policy(policy_for(repo, name="prod"), src, {"dr": dst}, RETRY, verifier=verifier)


async def replica_drill(source: LocalRegistry, target: LocalRegistry, repo: str) -> DrillReport:
    scope = ReplicaScope(policy_for(repo, name="prod"), "primary", TRUST, TRUST)
    async with open_client(source, "primary") as src, open_client(target, "dr") as dst:
        return await run_replica_drill({"primary": src}, dst, [scope], targets=TARGETS)


async def test_a_complete_replica_passes_and_unsigned_sources_are_not_expected(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """Signed tags match and verify at the replica; an unsigned source tag is excluded."""
    await push_signed(source_registry, repo, make_image(f"{repo}/a"), "v1")
    await push_signed(source_registry, repo, make_multiarch(f"{repo}/b"), "v2")
    await push_image(source_registry, repo, make_image(f"{repo}/unsigned"), "v3-unsigned")
    await replicate(source_registry, target_registry, repo)

    report = await replica_drill(source_registry, target_registry, repo)

    assert report.ok, report.to_json()
    assert report.judgement is not None
    statuses = {(c.tag, c.status) for c in report.checks}
    assert ("v1", "ok") in statuses
    assert ("v2", "ok") in statuses
    assert ("v3-unsigned", "excluded") in statuses
    assert report.readback.signed_ok == 2
    assert report.judgement.rpo_s == 0.0
    assert report.restore == {}


async def test_a_replica_missing_a_tag_or_signature_fails_naming_them(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """A tag not yet replicated and a lost signature are both failures, with their digests."""
    first = make_image(f"{repo}/first")
    await push_signed(source_registry, repo, first, "v1")
    await replicate(source_registry, target_registry, repo)
    late = make_image(f"{repo}/late")
    await push_signed(source_registry, repo, late, "v2")
    target_registry.remove_tag(repo, signature_tag(first.digest))

    report = await replica_drill(source_registry, target_registry, repo)

    assert not report.ok
    by_tag = {f.tag: f for f in report.failures}
    assert by_tag["v2"].digest == str(late.digest)
    assert by_tag["v2"].reason.startswith("missing")
    assert by_tag["v1"].reason.startswith("unverified: no-signature")
    assert signature_tag(first.digest) in by_tag
    assert report.judgement is not None
    assert "RPO unknown" in " ".join(report.judgement.reasons)
    # Nothing was written to the replica by the check.
    async with RegistryWriter(target_registry) as w:
        assert "v2" not in await w.list_tags(repo)


async def test_a_drill_checks_the_children_of_a_nested_index(
    source_registry: LocalRegistry, repo: str
) -> None:
    """
    With ``require_children`` a drill's signature check reaches the platform images of
    a nested index, as replication does: an unsigned one fails the root, named.
    """
    inner = make_multiarch(f"{repo}/inner")
    await push_index(source_registry, repo, inner)
    outer = json.dumps(
        {"schemaVersion": 2, "mediaType": mediatype.OCI_INDEX, "manifests": [inner.descriptor()]}
    ).encode()
    async with RegistryWriter(source_registry) as w:
        await w.push_manifest(repo, "v1", outer, mediatype.OCI_INDEX)
    for digest in (Digest.of(outer), inner.digest, inner.images[0].digest):
        sig = make_cosign_signature(digest, KEY.private, docker_reference=repo)
        await push_image(source_registry, repo, sig, signature_tag(digest))
    trust = dataclasses.replace(TRUST, require_children=True)

    async with open_client(source_registry, "primary") as src:
        outcome = await verify_digest(src, repo, Digest.of(outer), trust)

    assert outcome is not None
    reason, message = outcome
    assert reason == "no-signature"
    assert f"child {inner.images[1].digest} in {inner.digest}" in message
