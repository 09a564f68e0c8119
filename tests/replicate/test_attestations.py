"""
``require_attestations`` and ``match_reference`` on a trusted target, between real registries.

Attestations are cosign ``.att`` tags: one DSSE envelope per layer, made with the test
signing key. An image copies only when its signature and each required attestation
verify; the ``.att`` tag travels with it, so the same check passes at the target.
"""

from __future__ import annotations

import json
from pathlib import Path

import structlog

from drd.config import load_settings
from drd.oci import mediatype
from drd.oci.digest import Digest
from drd.resources import trust_policy
from drd.trust.attest import DSSE_MEDIA_TYPE
from drd.trust.verify import verify_artifact
from tests.clients import open_client
from tests.images import Image, RegistryWriter, make_image, push_image
from tests.replicate.test_trusted import (
    KEY,
    assert_nothing_reached,
    assert_rejected,
    push_signature,
    push_signed,
    replicate,
    signed_layer,
    write_config,
)
from tests.servers import LocalRegistry
from tests.skopeo import list_tags
from tests.trust.signing import SigningKey, cached_key, dsse_bundle, intoto_statement

SLSA = "https://slsa.dev/provenance/v1"
STRANGER = cached_key("ecdsa-p256", 7)


async def push_attestation(
    registry: LocalRegistry, repo: str, image: Image, predicate_type: str, key: SigningKey = KEY
) -> Digest:
    """A cosign ``.att`` tag for *image* holding one DSSE envelope of *predicate_type*."""
    bundle = json.loads(
        dsse_bundle(intoto_statement(image.digest, predicate_type=predicate_type), key)
    )
    envelope = json.dumps(bundle["dsseEnvelope"]).encode()
    config = b"{}"
    doc = {
        "schemaVersion": 2,
        "mediaType": mediatype.OCI_MANIFEST,
        "config": {"mediaType": mediatype.OCI_CONFIG, "digest": str(Digest.of(config)), "size": 2},
        "layers": [
            {
                "mediaType": DSSE_MEDIA_TYPE,
                "digest": str(Digest.of(envelope)),
                "size": len(envelope),
                "annotations": {"dev.cosignproject.cosign/signature": ""},
            }
        ],
    }
    raw = json.dumps(doc).encode()
    async with RegistryWriter(registry) as w:
        await w.push_blob(repo, config)
        await w.push_blob(repo, envelope)
        await w.push_manifest(repo, f"{image.digest.tag_form}.att", raw, mediatype.OCI_MANIFEST)
    return Digest.of(raw)


def require(config: Path, extra: str) -> Path:
    """*config* with *extra* lines added to its [trust.release] table."""
    text = config.read_text().replace("[trust.release]\n", f"[trust.release]\n{extra}")
    config.write_text(text)
    return config


async def test_attested_image_replicates_with_its_attestation_and_verifies_there(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    image = make_image(f"{repo}/attested")
    await push_signed(source_registry, repo, image, "v1")
    att = await push_attestation(source_registry, repo, image, SLSA)
    config = write_config(tmp_path, source_registry, target_registry, repo)
    settings = load_settings(require(config, f'require_attestations = ["{SLSA}"]\n'))

    report = await replicate(settings, source_registry, target_registry)

    assert report.ok, report.to_json()
    items = {i.tag: (i.outcome, i.digest) for i in report.items}
    assert items["v1"] == ("copied", str(image.digest))
    assert items[f"{image.digest.tag_form}.att"] == ("copied", str(att))
    assert f"{image.digest.tag_form}.att" in list_tags(target_registry, repo)
    async with open_client(target_registry, "target") as dst:
        verified = await verify_artifact(
            dst, repo, image.digest, trust_policy(settings.trust["release"])
        )
    assert verified.attestations == (SLSA,)


async def test_image_without_the_required_attestation_is_rejected(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """Signed, with a SLSA attestation signed by an untrusted key: not attested."""
    image = make_image(f"{repo}/unattested")
    await push_signed(source_registry, repo, image, "v1")
    await push_attestation(source_registry, repo, image, SLSA, key=STRANGER)
    config = write_config(tmp_path, source_registry, target_registry, repo)
    settings = load_settings(require(config, f'require_attestations = ["{SLSA}"]\n'))

    with structlog.testing.capture_logs() as logs:
        report = await replicate(settings, source_registry, target_registry)

    assert_rejected(report, logs, "v1", image.digest, "missing-attestation")
    await assert_nothing_reached(target_registry, repo, image)


async def test_match_reference_rejects_a_signature_made_for_another_repository(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """A valid signature whose docker-reference names another repository (issue 14, item 9)."""
    image = make_image(f"{repo}/elsewhere")
    await push_image(source_registry, repo, image, "v1")
    layer = signed_layer(image.digest, "other/repository")
    await push_signature(source_registry, repo, image.digest, [layer])
    config = write_config(tmp_path, source_registry, target_registry, repo)
    settings = load_settings(require(config, "match_reference = true\n"))

    with structlog.testing.capture_logs() as logs:
        report = await replicate(settings, source_registry, target_registry)

    assert_rejected(report, logs, "v1", image.digest, "wrong-reference")
    await assert_nothing_reached(target_registry, repo, image)


async def test_match_reference_accepts_the_repository_being_replicated(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    image = make_image(f"{repo}/here")
    await push_signed(source_registry, repo, image, "v1")  # signs "example/<repo>"
    config = write_config(tmp_path, source_registry, target_registry, repo)
    settings = load_settings(require(config, "match_reference = true\n"))

    report = await replicate(settings, source_registry, target_registry)

    assert report.ok, report.to_json()
