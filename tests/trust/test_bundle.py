"""Key-based sigstore bundles (the OCI 1.1 referrer form), verified offline."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from drd.errors import VerificationError
from drd.oci.digest import Digest
from drd.trust.bundle import verify_sigstore_bundle
from drd.trust.rekor import canonical_json
from tests.trust.signing import (
    SCHEMES,
    cached_key,
    dsse_bundle,
    intoto_statement,
    message_bundle,
    policy_for,
)

MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
IMAGE = Digest.of(MANIFEST)
OTHER_IMAGE = Digest.of(b"another manifest")


def _edit(bundle: bytes, change: Any) -> bytes:
    doc = json.loads(bundle)
    change(doc)
    return json.dumps(doc).encode()


def _reason(
    bundle: bytes, policy: Any, subject: Digest = IMAGE, artifact: bytes | None = None
) -> str:
    with pytest.raises(VerificationError) as exc:
        verify_sigstore_bundle(bundle, subject, policy, artifact)
    return exc.value.reason


def test_canonical_json_sorts_keys_without_spaces() -> None:
    """Rekor's signed form: keys sorted, no whitespace, non-ASCII kept as UTF-8."""
    doc = {"logIndex": 1, "body": "eyJ9", "logID": "ab", "integratedTime": 2, "é": "ü"}

    assert canonical_json(doc) == (
        '{"body":"eyJ9","integratedTime":2,"logID":"ab","logIndex":1,"é":"ü"}'.encode()
    )


@pytest.mark.parametrize("scheme", SCHEMES)
def test_dsse_bundle_verifies_for_every_key_type(scheme: str) -> None:
    """A DSSE in-toto statement naming the image verifies under each key type."""
    key = cached_key(scheme)
    policy = policy_for(key)

    verified = verify_sigstore_bundle(dsse_bundle(intoto_statement(IMAGE), key), IMAGE, policy)

    assert verified.form == "sigstore-bundle"
    assert verified.digest == IMAGE
    assert verified.key_fingerprint == policy.keys[0].fingerprint
    assert verified.predicate_type == "https://sigstore.dev/cosign/sign/v1"
    assert verified.rekor is False


@pytest.mark.parametrize("scheme", SCHEMES)
def test_message_signature_verifies_over_the_manifest_bytes(scheme: str) -> None:
    """A messageSignature over the manifest verifies when the manifest bytes are given."""
    key = cached_key(scheme)

    verified = verify_sigstore_bundle(
        message_bundle(MANIFEST, key), IMAGE, policy_for(key), artifact=MANIFEST
    )

    assert verified.digest == IMAGE


@pytest.mark.parametrize("scheme", ["ecdsa-p256", "rsa-pkcs1v15", "rsa-pss"])
def test_message_signature_verifies_from_the_digest_alone(scheme: str) -> None:
    """ECDSA and RSA message signatures verify from the signed digest, without the manifest."""
    key = cached_key(scheme)

    assert (
        verify_sigstore_bundle(message_bundle(MANIFEST, key), IMAGE, policy_for(key)).digest
        == IMAGE
    )


def test_ed25519_message_signature_needs_the_artifact() -> None:
    """Ed25519 signs whole messages: from the digest alone it cannot verify, and says why."""
    key = cached_key("ed25519")

    with pytest.raises(VerificationError) as exc:
        verify_sigstore_bundle(message_bundle(MANIFEST, key), IMAGE, policy_for(key))

    assert exc.value.reason == "bad-signature"
    assert "need the artifact bytes" in exc.value.message


def test_message_signature_of_another_manifest_is_wrong_digest() -> None:
    """A trusted message signature over another manifest does not verify this image."""
    key = cached_key("ecdsa-p256")
    bundle = message_bundle(b"another manifest", key)

    assert _reason(bundle, policy_for(key)) == "wrong-digest"


def test_artifact_not_matching_the_subject_is_wrong_digest() -> None:
    """Manifest bytes handed in must hash to the subject being verified."""
    key = cached_key("ed25519")

    assert _reason(message_bundle(MANIFEST, key), policy_for(key), artifact=b"{}") == "wrong-digest"


def test_statement_naming_another_image_is_wrong_digest() -> None:
    """A trusted in-toto statement about another image is wrong-digest."""
    key = cached_key("ecdsa-p256")

    assert (
        _reason(dsse_bundle(intoto_statement(OTHER_IMAGE), key), policy_for(key)) == "wrong-digest"
    )


def test_foreign_dsse_signature_is_bad_signature() -> None:
    """A DSSE envelope signed by a key outside the policy is bad-signature."""
    bundle = dsse_bundle(intoto_statement(IMAGE), cached_key("ecdsa-p256", 1))

    assert _reason(bundle, policy_for(cached_key("ecdsa-p256"))) == "bad-signature"


def test_tampered_statement_is_bad_signature() -> None:
    """Replacing the envelope payload, even with a statement naming the image, breaks it."""
    key = cached_key("ecdsa-p256")
    swapped = base64.b64encode(intoto_statement(IMAGE, name="evil.example/app")).decode()
    bundle = _edit(
        dsse_bundle(intoto_statement(IMAGE), key),
        lambda d: d["dsseEnvelope"].update(payload=swapped),
    )

    assert _reason(bundle, policy_for(key)) == "bad-signature"


def test_signed_non_intoto_payload_is_wrong_type() -> None:
    """A signed DSSE envelope of another payload type is wrong-type."""
    key = cached_key("ed25519")
    bundle = dsse_bundle(intoto_statement(IMAGE), key, payload_type="application/json")

    assert _reason(bundle, policy_for(key)) == "wrong-type"


def test_signed_statement_of_unknown_type_is_wrong_type() -> None:
    """A signed in-toto payload whose _type is not an in-toto statement is wrong-type."""
    key = cached_key("ed25519")
    statement = json.dumps({"_type": "https://example.com/Other", "subject": []}).encode()

    assert _reason(dsse_bundle(statement, key), policy_for(key)) == "wrong-type"


def test_certificate_bundle_under_a_key_policy_is_untrusted_root() -> None:
    """A keyless (certificate) bundle cannot verify under a policy with no Fulcio root."""
    key = cached_key("ecdsa-p256")
    bundle = _edit(
        dsse_bundle(intoto_statement(IMAGE), key),
        lambda d: d.update(verificationMaterial={"certificate": {"rawBytes": "MIIB"}}),
    )

    assert _reason(bundle, policy_for(key)) == "untrusted-root"


@pytest.mark.parametrize(
    "bundle",
    [
        pytest.param(b"{", id="not-json"),
        pytest.param(b'{"mediaType": "application/json"}', id="not-a-bundle"),
        pytest.param(
            b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}', id="no-material"
        ),
        pytest.param(
            b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",'
            b' "verificationMaterial": {"publicKey": {"hint": "x"}}}',
            id="no-content",
        ),
        pytest.param(
            b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",'
            b' "verificationMaterial": {"publicKey": {}},'
            b' "dsseEnvelope": {"payloadType": "application/vnd.in-toto+json", "payload": "%%%",'
            b' "signatures": []}}',
            id="bad-payload-base64",
        ),
    ],
)
def test_garbage_bundle_is_malformed(bundle: bytes) -> None:
    """A bundle that is not a readable key-based sigstore bundle is malformed."""
    assert _reason(bundle, policy_for(cached_key("ed25519"))) == "malformed"


def test_bundle_over_one_mebibyte_is_payload_too_large() -> None:
    """A bundle over 1 MiB is refused before it is parsed."""
    assert (
        _reason(b" " * (1024 * 1024 + 1), policy_for(cached_key("ed25519"))) == "payload-too-large"
    )


@pytest.mark.parametrize("form", ["dsse", "message"])
def test_log_entry_is_verified_offline(form: str) -> None:
    """A bundle's tlog entry verifies under the policy's Rekor key and marks it logged."""
    key, log = cached_key("ecdsa-p256"), cached_key("ecdsa-p256", 9)
    if form == "dsse":
        bundle = dsse_bundle(intoto_statement(IMAGE), key, log=log, log_index=77)
    else:
        bundle = message_bundle(MANIFEST, key, log=log, log_index=77)

    verified = verify_sigstore_bundle(
        bundle, IMAGE, policy_for(key, logs=[log], require_rekor=True)
    )

    assert (verified.rekor, verified.log_index, verified.integrated_time) == (
        True,
        77,
        1_700_000_000,
    )


def test_log_entry_under_untrusted_log_is_rekor() -> None:
    """An entry signed by a log the policy does not trust fails with reason rekor."""
    key = cached_key("ecdsa-p256")
    bundle = dsse_bundle(intoto_statement(IMAGE), key, log=cached_key("ecdsa-p256", 8))

    assert _reason(bundle, policy_for(key, logs=[cached_key("ecdsa-p256", 9)])) == "rekor"


def test_log_entry_with_changed_index_is_rekor() -> None:
    """Changing the entry's log index breaks its signed entry timestamp."""
    key, log = cached_key("ecdsa-p256"), cached_key("ecdsa-p256", 9)
    bundle = _edit(
        message_bundle(MANIFEST, key, log=log),
        lambda d: d["verificationMaterial"]["tlogEntries"][0].update(logIndex="9"),
    )

    assert _reason(bundle, policy_for(key, logs=[log])) == "rekor"


def test_log_entry_for_another_envelope_is_rekor() -> None:
    """A genuine entry for another statement cannot be attached to this envelope."""
    key, log = cached_key("ecdsa-p256"), cached_key("ecdsa-p256", 9)
    other = json.loads(dsse_bundle(intoto_statement(IMAGE, name="x/y"), key, log=log))
    bundle = _edit(
        dsse_bundle(intoto_statement(IMAGE), key),
        lambda d: d["verificationMaterial"].update(
            tlogEntries=other["verificationMaterial"]["tlogEntries"]
        ),
    )

    with pytest.raises(VerificationError) as exc:
        verify_sigstore_bundle(bundle, IMAGE, policy_for(key, logs=[log]))

    assert exc.value.reason == "rekor"
    assert "another envelope payload" in exc.value.message


def test_required_log_entry_missing_is_rekor() -> None:
    """A policy that requires Rekor refuses a bundle without tlog entries."""
    key, log = cached_key("ecdsa-p256"), cached_key("ecdsa-p256", 9)
    bundle = dsse_bundle(intoto_statement(IMAGE), key)

    assert _reason(bundle, policy_for(key, logs=[log], require_rekor=True)) == "rekor"
