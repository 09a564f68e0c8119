"""
verify_artifact with Notation referrers, required attestations and the signed docker-reference.

The in-memory source of `tests.trust.test_verify` stands in for a registry; the
same paths run against real registries in tests/replicate/test_notation.py.
"""

from __future__ import annotations

import json

import pytest

from drd.errors import VerificationError
from drd.oci import mediatype
from drd.oci.descriptor import Descriptor
from drd.oci.digest import Digest
from drd.trust.attest import DSSE_MEDIA_TYPE, names_repository
from drd.trust.keys import TrustPolicy
from drd.trust.notation import SIGNATURE_ARTIFACT_TYPE
from drd.trust.notation_trust import NotationTrust, TrustedCertificate
from drd.trust.verify import verify_artifact
from tests.trust.notary import cached_signer, envelope, media_type_of, signature_manifest, target
from tests.trust.signing import (
    SigningKey,
    cached_key,
    dsse_bundle,
    intoto_statement,
    sign,
    simple_signing_payload,
)
from tests.trust.signing import signature_manifest as cosign_manifest
from tests.trust.test_verify import (
    IMAGE,
    IMAGE_MANIFEST,
    REPO,
    FakeSource,
    _add_bundle_referrer,
)

SLSA = "https://slsa.dev/provenance/v1"
SPDX = "https://spdx.dev/Document"
KEY = cached_key("ecdsa-p256")
STRANGER = cached_key("ecdsa-p256", 9)


def notation_policy(signer_index: int = 0, **extra: object) -> TrustPolicy:
    root = cached_signer(signer_index).root
    trust = NotationTrust(roots=(TrustedCertificate("root.crt", root),))
    return TrustPolicy(name="notary", keys=(), notation=(trust,), **extra)  # type: ignore[arg-type]


def key_policy(**extra: object) -> TrustPolicy:
    return TrustPolicy(name="release", keys=(KEY.trust_key(),), **extra)  # type: ignore[arg-type]


def add_notation(source: FakeSource, kind: str, artifact: dict[str, object]) -> Digest:
    subject = {
        "mediaType": mediatype.OCI_MANIFEST,
        "digest": str(IMAGE),
        "size": len(IMAGE_MANIFEST),
    }
    env = envelope(kind, artifact, cached_signer())
    raw, blobs = signature_manifest(subject, env, media_type_of(kind))
    digest = source.put(raw, blobs)
    desc = Descriptor(
        mediatype.OCI_MANIFEST, digest, len(raw), artifact_type=SIGNATURE_ARTIFACT_TYPE
    )
    source.referrer_lists.setdefault(IMAGE, []).append(desc)
    return digest


def image_source() -> FakeSource:
    source = FakeSource()
    source.put(IMAGE_MANIFEST, {})
    return source


# --- Notation through the referrers list -----------------------------------------------


@pytest.mark.parametrize("kind", ["jws", "cose"])
async def test_notation_referrer_verifies_the_image(kind: str) -> None:
    source = image_source()
    referrer = add_notation(source, kind, target(IMAGE, len(IMAGE_MANIFEST)))

    verified = await verify_artifact(source, REPO, IMAGE, notation_policy())

    assert verified.form == f"notation-{kind}"
    assert verified.signature_digest == referrer
    assert verified.identity == "CN=release 0,O=drd tests,C=US"


async def test_notation_referrer_over_another_digest_is_wrong_digest() -> None:
    source = image_source()
    add_notation(source, "jws", target(Digest.of(b"other"), len(IMAGE_MANIFEST)))

    with pytest.raises(VerificationError) as exc:
        await verify_artifact(source, REPO, IMAGE, notation_policy())
    assert exc.value.reason == "wrong-digest"


async def test_notation_signer_under_another_root_is_untrusted_root() -> None:
    source = image_source()
    add_notation(source, "cose", target(IMAGE, len(IMAGE_MANIFEST)))

    with pytest.raises(VerificationError) as exc:
        await verify_artifact(source, REPO, IMAGE, notation_policy(signer_index=1))
    assert exc.value.reason == "untrusted-root"


async def test_key_only_policy_does_not_trust_a_notation_signature() -> None:
    source = image_source()
    add_notation(source, "jws", target(IMAGE, len(IMAGE_MANIFEST)))

    with pytest.raises(VerificationError) as exc:
        await verify_artifact(source, REPO, IMAGE, key_policy())
    assert exc.value.reason == "untrusted-root"


# --- a DSSE attestation is not a signature (issue 14, item 9) ---------------------------


async def test_dsse_attestation_alone_is_not_a_signature() -> None:
    """A trusted SLSA attestation referrer does not make the image verified."""
    source = image_source()
    _add_bundle_referrer(source, dsse_bundle(intoto_statement(IMAGE, predicate_type=SLSA), KEY))

    with pytest.raises(VerificationError) as exc:
        await verify_artifact(source, REPO, IMAGE, key_policy())
    assert exc.value.reason == "no-signature"


async def test_cosign_sign_predicate_still_counts_as_a_signature() -> None:
    source = image_source()
    _add_bundle_referrer(source, dsse_bundle(intoto_statement(IMAGE), KEY))

    verified = await verify_artifact(source, REPO, IMAGE, key_policy())
    assert verified.form == "sigstore-bundle"


# --- require_attestations ----------------------------------------------------------------


def add_signature(source: FakeSource, reference: str = f"registry.example/{REPO}") -> None:
    payload = simple_signing_payload(IMAGE, reference)
    raw, blobs = cosign_manifest([(payload, sign(payload, KEY))])
    source.put(raw, blobs, tag=f"{IMAGE.tag_form}.sig")


def add_att(source: FakeSource, predicate_type: str, key: SigningKey = KEY) -> None:
    """A cosign ``.att`` tag: one DSSE-envelope layer per attestation."""
    bundle = json.loads(dsse_bundle(intoto_statement(IMAGE, predicate_type=predicate_type), key))
    env = json.dumps(bundle["dsseEnvelope"]).encode()
    tag = f"{IMAGE.tag_form}.att"
    layers = []
    blobs = {Digest.of(b"{}"): b"{}"}
    existing = source.manifests.get((REPO, tag))
    if existing is not None:
        layers = json.loads(existing)["layers"]
    layers.append(
        {
            "mediaType": DSSE_MEDIA_TYPE,
            "digest": str(Digest.of(env)),
            "size": len(env),
            "annotations": {"dev.cosignproject.cosign/signature": ""},
        }
    )
    blobs[Digest.of(env)] = env
    doc = {
        "schemaVersion": 2,
        "mediaType": mediatype.OCI_MANIFEST,
        "config": {"mediaType": mediatype.OCI_CONFIG, "digest": str(Digest.of(b"{}")), "size": 2},
        "layers": layers,
    }
    source.put(json.dumps(doc).encode(), blobs, tag=tag)


async def test_required_attestations_present_as_att_layers_verify() -> None:
    source = image_source()
    add_signature(source)
    add_att(source, SLSA)
    add_att(source, SPDX)

    verified = await verify_artifact(
        source, REPO, IMAGE, key_policy(require_attestations=(SLSA, SPDX))
    )

    assert verified.form == "cosign"
    assert verified.attestations == (SLSA, SPDX)


async def test_required_attestation_as_a_bundle_referrer_verifies() -> None:
    source = image_source()
    add_signature(source)
    _add_bundle_referrer(source, dsse_bundle(intoto_statement(IMAGE, predicate_type=SLSA), KEY))

    verified = await verify_artifact(source, REPO, IMAGE, key_policy(require_attestations=(SLSA,)))
    assert verified.attestations == (SLSA,)


async def test_attestation_of_the_wrong_predicate_type_is_missing_attestation() -> None:
    source = image_source()
    add_signature(source)
    add_att(source, SPDX)

    with pytest.raises(VerificationError) as exc:
        await verify_artifact(source, REPO, IMAGE, key_policy(require_attestations=(SLSA,)))
    assert exc.value.reason == "missing-attestation"
    assert SLSA in exc.value.message


async def test_attestation_signed_by_an_untrusted_key_is_missing_attestation() -> None:
    source = image_source()
    add_signature(source)
    add_att(source, SLSA, key=STRANGER)

    with pytest.raises(VerificationError) as exc:
        await verify_artifact(source, REPO, IMAGE, key_policy(require_attestations=(SLSA,)))
    assert exc.value.reason == "missing-attestation"
    assert "bad-signature" in exc.value.message


async def test_attestation_about_another_image_does_not_count() -> None:
    source = image_source()
    add_signature(source)
    other = Digest.of(b"other image")
    bundle = json.loads(dsse_bundle(intoto_statement(other, predicate_type=SLSA), KEY))
    env = json.dumps(bundle["dsseEnvelope"]).encode()
    layer = {"mediaType": DSSE_MEDIA_TYPE, "digest": str(Digest.of(env)), "size": len(env)}
    doc = {
        "schemaVersion": 2,
        "mediaType": mediatype.OCI_MANIFEST,
        "config": {"mediaType": mediatype.OCI_CONFIG, "digest": str(Digest.of(b"{}")), "size": 2},
        "layers": [layer],
    }
    source.put(json.dumps(doc).encode(), {Digest.of(env): env}, tag=f"{IMAGE.tag_form}.att")

    with pytest.raises(VerificationError) as exc:
        await verify_artifact(source, REPO, IMAGE, key_policy(require_attestations=(SLSA,)))
    assert exc.value.reason == "missing-attestation"
    assert "wrong-digest" in exc.value.message


async def test_a_plain_signature_never_counts_as_an_attestation() -> None:
    """The image's own signature (cosign sign predicate) does not satisfy the requirement."""
    source = image_source()
    _add_bundle_referrer(source, dsse_bundle(intoto_statement(IMAGE), KEY))
    add_att(source, "https://sigstore.dev/cosign/sign/v1")

    with pytest.raises(VerificationError) as exc:
        await verify_artifact(source, REPO, IMAGE, key_policy(require_attestations=(SLSA,)))
    assert exc.value.reason == "missing-attestation"


async def test_attestations_without_a_signature_are_no_signature() -> None:
    source = image_source()
    add_att(source, SLSA)

    with pytest.raises(VerificationError) as exc:
        await verify_artifact(source, REPO, IMAGE, key_policy(require_attestations=(SLSA,)))
    assert exc.value.reason == "no-signature"


async def test_notation_signed_image_needs_its_attestation_under_the_same_policy() -> None:
    """A Notation-only policy has no key to verify a DSSE attestation: missing-attestation."""
    source = image_source()
    add_notation(source, "jws", target(IMAGE, len(IMAGE_MANIFEST)))
    add_att(source, SLSA)

    with pytest.raises(VerificationError) as exc:
        await verify_artifact(source, REPO, IMAGE, notation_policy(require_attestations=(SLSA,)))
    assert exc.value.reason == "missing-attestation"


# --- match_reference ----------------------------------------------------------------------


async def test_match_reference_accepts_the_same_repository_on_any_host() -> None:
    source = image_source()
    add_signature(source, f"registry.example:5000/{REPO}")

    verified = await verify_artifact(source, REPO, IMAGE, key_policy(match_reference=True))
    assert verified.docker_reference == f"registry.example:5000/{REPO}"


async def test_match_reference_rejects_a_signature_made_for_another_repository() -> None:
    source = image_source()
    add_signature(source, "registry.example/team/other")

    assert (await verify_artifact(source, REPO, IMAGE, key_policy())).form == "cosign"
    with pytest.raises(VerificationError) as exc:
        await verify_artifact(source, REPO, IMAGE, key_policy(match_reference=True))
    assert exc.value.reason == "wrong-reference"
    assert "team/other" in exc.value.message


def test_names_repository() -> None:
    assert names_repository("example.com/team/app", "team/app")
    assert names_repository("127.0.0.1:5000/team/app:v1", "team/app")
    assert not names_repository("example.com/team/app2", "team/app")
    assert not names_repository("example.com/other/team/app", "team/app")
    assert not names_repository("", "team/app")
    assert not names_repository("not a reference", "team/app")
