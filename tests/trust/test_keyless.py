"""
Keyless signatures made by a test Fulcio CA and Rekor log: what verifies and why not.

Each negative changes one thing about an otherwise valid signature and checks the
reason: wrong identity or issuer, a regex that must not match, a leaf expired at
signing time, a chain to another root, a SET over another time, a tampered body,
an inclusion proof for another leaf, and more.
"""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import timedelta
from typing import Any

import pytest

from drd.errors import VerificationError
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest
from drd.trust.bundle import verify_sigstore_bundle
from drd.trust.cosign import verify_signature_manifest
from drd.trust.keyless import bundle_version
from drd.trust.keys import TrustPolicy
from drd.trust.policy import Verified
from drd.trust.tlog import leaf_hash, root_from_proof
from tests.trust.keyless_signing import (
    GHA,
    SIGNED_AT,
    WORKFLOW,
    FakeFulcio,
    KeylessSigner,
    cert_hashedrekord,
    default_log,
    keyless_policy,
    merkle_path,
    mth,
    rule,
)
from tests.trust.signing import cached_key, policy_for, signature_manifest, simple_signing_payload

IMAGE = Digest.parse("sha256:" + "ab" * 32)
FULCIO = FakeFulcio.create()
OTHER_FULCIO = FakeFulcio.create("other-fulcio")
LOG = default_log()
PAYLOAD = simple_signing_payload(IMAGE, "registry.example/org/app")


def _verify(layer: tuple[bytes, str, dict[str, str]], policy: TrustPolicy) -> Verified:
    payload, signature, annotations = layer
    raw, blobs = signature_manifest([(payload, signature)], extra=[annotations])
    return verify_signature_manifest(Manifest.parse(raw), blobs, IMAGE, policy)


def _reason(layer: tuple[bytes, str, dict[str, str]], policy: TrustPolicy) -> str:
    with pytest.raises(VerificationError) as caught:
        _verify(layer, policy)
    return caught.value.reason


def _signer(**leaf: Any) -> KeylessSigner:
    return KeylessSigner(FULCIO, LOG, leaf_options=leaf)


# --- accepted --------------------------------------------------------------------------


def test_keyless_tag_form_signature_verifies_with_its_identity() -> None:
    """A .sig layer with a Fulcio leaf, chain and Rekor SET verifies and names who signed."""
    verified = _verify(_signer().sign_layer(PAYLOAD), keyless_policy(FULCIO, LOG))

    assert (verified.identity, verified.issuer, verified.form) == (WORKFLOW, GHA, "cosign")
    assert verified.rekor
    assert (verified.integrated_time, verified.log_index) == (int(SIGNED_AT.timestamp()), 1234)
    assert verified.docker_reference == "registry.example/org/app"


def test_deprecated_issuer_extension_alone_is_read() -> None:
    """Older leaves carry only 1.3.6.1.4.1.57264.1.1 (raw bytes) for the issuer."""
    signer = _signer(issuer=None, legacy_issuer=GHA)

    assert _verify(signer.sign_layer(PAYLOAD), keyless_policy(FULCIO, LOG)).issuer == GHA


def test_email_subject_and_regexes_match_in_full() -> None:
    """An email SAN matches an exact subject; regexes match the whole value."""
    signer = _signer(subject="release@example.com", issuer="https://accounts.example.com")
    policy = keyless_policy(
        FULCIO,
        LOG,
        identities=[rule(subject_regex=r".*@example\.com", issuer_regex=r"https://accounts\..*")],
    )

    assert _verify(signer.sign_layer(PAYLOAD), policy).identity == "release@example.com"


def test_required_claims_must_all_match() -> None:
    """``source_ref`` and friends come from Fulcio's extensions; a missing one fails."""
    claims = {"source_ref": "refs/heads/main", "workflow_trigger": "push"}
    signer = _signer(claims=claims)
    wanted = rule(issuer=GHA, subject=WORKFLOW, claims={"source_ref": "refs/heads/main"})
    assert _verify(signer.sign_layer(PAYLOAD), keyless_policy(FULCIO, LOG, identities=[wanted]))

    branch = rule(issuer=GHA, subject=WORKFLOW, claims={"source_ref": "refs/heads/dev"})
    policy = keyless_policy(FULCIO, LOG, identities=[branch])
    assert _reason(signer.sign_layer(PAYLOAD), policy) == "untrusted-identity"
    signer_uri = rule(issuer=GHA, subject=WORKFLOW, claims={"build_signer_uri": WORKFLOW})
    policy = keyless_policy(FULCIO, LOG, identities=[signer_uri])
    assert _reason(signer.sign_layer(PAYLOAD), policy) == "untrusted-identity"


def test_sct_verifies_under_a_configured_ct_log() -> None:
    """With CT keys set, the leaf's embedded SCT must verify under one of them."""
    ct_log = cached_key("ecdsa-p256", 8)
    signer = _signer(ct_log=ct_log)

    assert _verify(signer.sign_layer(PAYLOAD), keyless_policy(FULCIO, LOG, ct_logs=[ct_log]))
    other = keyless_policy(FULCIO, LOG, ct_logs=[cached_key("ecdsa-p256", 9)])
    assert _reason(signer.sign_layer(PAYLOAD), other) == "untrusted-root"
    no_sct = _signer().sign_layer(PAYLOAD)
    assert _reason(no_sct, keyless_policy(FULCIO, LOG, ct_logs=[ct_log])) == "untrusted-root"


def test_keyless_bundle_with_inclusion_proof_verifies() -> None:
    """A v0.3 certificate bundle with SET, inclusion proof and signed checkpoint verifies."""
    artifact = b"manifest bytes"
    bundle = _signer().message_bundle(artifact)

    verified = verify_sigstore_bundle(bundle, Digest.of(artifact), keyless_policy(FULCIO, LOG))
    assert (verified.identity, verified.form) == (WORKFLOW, "sigstore-bundle")
    without_set = _signer().message_bundle(artifact, promise=False)
    with pytest.raises(VerificationError, match="proves when") as caught:
        verify_sigstore_bundle(without_set, Digest.of(artifact), keyless_policy(FULCIO, LOG))
    assert caught.value.reason == "tlog-invalid"


# --- rejected --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leaf", "identities"),
    [
        pytest.param(
            {"subject": "https://github.com/org/other/.github/workflows/x.yml@refs/heads/main"},
            [rule(issuer=GHA, subject=WORKFLOW)],
            id="wrong-subject",
        ),
        pytest.param(
            {"issuer": "https://gitlab.example.com"},
            [rule(issuer=GHA, subject=WORKFLOW)],
            id="wrong-issuer",
        ),
        pytest.param(
            {"subject": WORKFLOW + "-evil"},
            [rule(issuer=GHA, subject_regex=r"https://github\.com/org/app/.*@refs/heads/main")],
            id="regex-is-anchored-at-the-end",
        ),
        pytest.param(
            {"subject": "https://evil.example/?" + WORKFLOW},
            [rule(issuer=GHA, subject_regex=r"https://github\.com/org/app/.*")],
            id="regex-is-anchored-at-the-start",
        ),
        pytest.param(
            {"issuer": GHA + ".evil.example"},
            [
                rule(
                    issuer_regex=r"https://token\.actions\.githubusercontent\.com", subject=WORKFLOW
                )
            ],
            id="issuer-regex-is-anchored",
        ),
    ],
)
def test_identity_outside_the_policy_is_untrusted_identity(
    leaf: dict[str, Any], identities: list[Any]
) -> None:
    """Every part of an identity rule must match the leaf, in full."""
    layer = _signer(**leaf).sign_layer(PAYLOAD)

    with pytest.raises(VerificationError) as caught:
        _verify(layer, keyless_policy(FULCIO, LOG, identities=identities))
    assert caught.value.reason == "untrusted-identity"
    assert "does not trust" in caught.value.message


def test_leaf_expired_at_the_logged_signing_time_is_expired() -> None:
    """The leaf must be valid when Rekor logged the signature, not merely at some time."""
    layer = _signer().sign_layer(PAYLOAD, integrated_time=SIGNED_AT + timedelta(hours=1))

    assert _reason(layer, keyless_policy(FULCIO, LOG)) == "expired"


def test_leaf_from_another_root_is_untrusted_root() -> None:
    """A leaf chaining to an unconfigured root, even with that root in the chain annotation."""
    other = KeylessSigner(OTHER_FULCIO, LOG)
    layer = other.sign_layer(PAYLOAD)  # its chain annotation carries its own root

    assert _reason(layer, keyless_policy(FULCIO, LOG)) == "untrusted-root"


def test_leaf_without_code_signing_eku_is_untrusted_root() -> None:
    """A leaf the CA did not issue for code signing anchors nothing."""
    layer = _signer(code_signing=False).sign_layer(PAYLOAD)

    assert _reason(layer, keyless_policy(FULCIO, LOG)) == "untrusted-root"


def test_chain_annotation_is_needed_when_only_the_root_is_configured() -> None:
    """Intermediates come from the annotation; without it the leaf does not chain."""
    layer = _signer().sign_layer(PAYLOAD, chain="")

    assert _reason(layer, keyless_policy(FULCIO, LOG, intermediate=False)) == "untrusted-root"
    assert _verify(_signer().sign_layer(PAYLOAD), keyless_policy(FULCIO, LOG, intermediate=False))


def test_set_over_another_time_is_tlog_invalid() -> None:
    """A SET signed for one integratedTime does not vouch for another."""
    layer = _signer().sign_layer(PAYLOAD, set_time=SIGNED_AT - timedelta(minutes=5))

    assert _reason(layer, keyless_policy(FULCIO, LOG)) == "tlog-invalid"


def test_set_by_an_untrusted_log_is_tlog_invalid() -> None:
    """Only a configured Rekor key's SET proves a signing time."""
    layer = KeylessSigner(FULCIO, cached_key("ecdsa-p256", 10)).sign_layer(PAYLOAD)

    assert _reason(layer, keyless_policy(FULCIO, LOG)) == "tlog-invalid"


def test_tampered_body_is_tlog_invalid() -> None:
    """A correctly SET-signed body that records another payload, signature or cert."""
    signer = _signer()
    leaf = signer.leaf()
    other_leaf = _signer().leaf()
    _, signature_b64, _ = signer.sign_layer(PAYLOAD, leaf=leaf)
    signature = base64.b64decode(signature_b64)
    for body in (
        cert_hashedrekord("00" * 32, signature, leaf),
        cert_hashedrekord(Digest.of(PAYLOAD).hex, b"another signature", leaf),
        cert_hashedrekord(Digest.of(PAYLOAD).hex, signature, other_leaf),
    ):
        layer = signer.sign_layer(PAYLOAD, leaf=leaf, body_b64=body)
        assert _reason(layer, keyless_policy(FULCIO, LOG)) == "tlog-invalid"


def test_keyless_signature_without_a_log_entry_is_tlog_invalid() -> None:
    """Without a SET or timestamp nothing proves when the short-lived leaf signed."""
    layer = _signer().sign_layer(PAYLOAD, bundle=False)

    assert _reason(layer, keyless_policy(FULCIO, LOG)) == "tlog-invalid"


def test_signature_by_another_key_than_the_leaf_is_bad_signature() -> None:
    """The signature must verify under the certificate's own key."""
    payload, _, annotations = _signer().sign_layer(PAYLOAD)
    _, forged, _ = _signer().sign_layer(PAYLOAD)

    assert _reason((payload, forged, annotations), keyless_policy(FULCIO, LOG)) == "bad-signature"


def test_keyless_signature_of_another_image_is_wrong_digest() -> None:
    """A valid keyless signature names exactly the digest it signed."""
    other = simple_signing_payload(Digest.parse("sha256:" + "cd" * 32), "registry.example/x")

    assert _reason(_signer().sign_layer(other), keyless_policy(FULCIO, LOG)) == "wrong-digest"


def test_keyless_signature_under_a_key_policy_is_untrusted_root() -> None:
    """A policy with keys only says why a valid keyless signature does not count."""
    layer = _signer().sign_layer(PAYLOAD)

    with pytest.raises(VerificationError, match="no fulcio_roots") as caught:
        _verify(layer, policy_for(cached_key("ecdsa-p256")))
    assert caught.value.reason == "untrusted-root"


def test_inclusion_proof_for_another_leaf_is_tlog_invalid() -> None:
    """A proof (and checkpoint) that holds for some other entry proves nothing for this one."""
    artifact = b"manifest bytes"
    bundle = _signer().message_bundle(artifact, proof_body=b"another entry")

    with pytest.raises(VerificationError, match="another root hash") as caught:
        verify_sigstore_bundle(bundle, Digest.of(artifact), keyless_policy(FULCIO, LOG))
    assert caught.value.reason == "tlog-invalid"


def test_checkpoint_signed_by_an_untrusted_log_is_tlog_invalid() -> None:
    """The checkpoint's signature must come from a configured log key."""
    artifact = b"manifest bytes"
    doc = json.loads(_signer().message_bundle(artifact))
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    forged = KeylessSigner(FULCIO, cached_key("ecdsa-p256", 10)).message_bundle(artifact)
    forged_entry = json.loads(forged)["verificationMaterial"]["tlogEntries"][0]
    entry["inclusionProof"]["checkpoint"] = forged_entry["inclusionProof"]["checkpoint"]

    with pytest.raises(VerificationError, match="signed by no trusted log key") as caught:
        verify_sigstore_bundle(
            json.dumps(doc).encode(), Digest.of(artifact), keyless_policy(FULCIO, LOG)
        )
    assert caught.value.reason == "tlog-invalid"


# --- pure pieces -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("media_type", "version"),
    [
        pytest.param("application/vnd.dev.sigstore.bundle+json;version=0.1", (0, 1), id="v0.1"),
        pytest.param("application/vnd.dev.sigstore.bundle+json;version=0.2", (0, 2), id="v0.2"),
        pytest.param("application/vnd.dev.sigstore.bundle.v0.3+json", (0, 3), id="v0.3"),
        pytest.param("application/vnd.dev.sigstore.bundle.vX+json", (0, 2), id="unreadable"),
    ],
)
def test_bundle_version_unreadable_counts_as_strict(
    media_type: str, version: tuple[int, int]
) -> None:
    """An unreadable bundle version gets v0.2's rules: an inclusion proof is required."""
    assert bundle_version(media_type) == version


def test_inclusion_proofs_hold_for_every_leaf_and_only_that_leaf() -> None:
    """RFC 9162 proofs round-trip for every index of trees of 1..17 leaves; others fail."""
    for size in range(1, 18):
        leaves = [leaf_hash(b"%d" % i) for i in range(size)]
        root = mth(leaves)
        for index in range(size):
            proof = merkle_path(index, leaves)
            assert root_from_proof(index, size, leaves[index], proof) == root
            if size > 1:
                other = (index + 1) % size
                # A proof of the wrong length for that index is refused outright.
                with contextlib.suppress(ValueError):
                    assert root_from_proof(other, size, leaves[index], proof) != root
    with pytest.raises(ValueError, match="outside"):
        root_from_proof(3, 3, leaves[0], [])


def test_policy_with_keys_and_keyless_roots_takes_either() -> None:
    """Keys and Fulcio roots together: a keyless signature verifies, a foreign one says why."""
    from dataclasses import replace

    key = cached_key("ecdsa-p256")
    both = replace(keyless_policy(FULCIO, LOG), keys=(key.trust_key(),))

    assert _verify(_signer().sign_layer(PAYLOAD), both).identity == WORKFLOW
    foreign = _signer(subject="mallory@example.com").sign_layer(PAYLOAD)
    assert _reason(foreign, both) == "untrusted-identity"
