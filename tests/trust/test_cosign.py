"""cosign tag-form signatures: keys, simple-signing payloads, .sig manifests, Rekor bundles."""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from drd.errors import ConfigError, VerificationError
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest
from drd.trust.cosign import (
    BUNDLE_ANNOTATION,
    SIGNATURE_ANNOTATION,
    verify_signature_manifest,
    verify_simple_signing,
)
from drd.trust.keys import TrustPolicy, load_public_key
from tests.layouts import fixture_path
from tests.trust.signing import (
    SCHEMES,
    cached_key,
    generate_key,
    hashedrekord_body,
    policy_for,
    rekor_bundle,
    sign,
    sign_raw,
    signature_manifest,
    simple_signing_payload,
)

IMAGE = Digest.of(b"an image manifest")
OTHER_IMAGE = Digest.of(b"another image manifest")
REF = "registry.example/team/app"


def reason_of(exc: pytest.ExceptionInfo[VerificationError]) -> str:
    return exc.value.reason


# --- keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "algorithm"),
    [
        pytest.param("ecdsa-p256", "ecdsa-p256", id="ecdsa-p256"),
        pytest.param("ecdsa-p384", "ecdsa-p384", id="ecdsa-p384"),
        pytest.param("ed25519", "ed25519", id="ed25519"),
        pytest.param("rsa-pkcs1v15", "rsa-2048", id="rsa-pkcs1v15"),
        pytest.param("rsa-pss", "rsa-2048", id="rsa-pss"),
    ],
)
def test_every_key_type_verifies_its_own_signature(scheme: str, algorithm: str) -> None:
    """A cosign signature by each supported key type verifies and names that key."""
    key = cached_key(scheme)
    payload = simple_signing_payload(IMAGE, REF)
    policy = policy_for(key)

    verified = verify_simple_signing(payload, sign(payload, key), IMAGE, policy)

    trusted = policy.keys[0]
    assert trusted.algorithm == algorithm
    assert verified.digest == IMAGE
    assert verified.key_fingerprint == trusted.fingerprint
    assert verified.key_source == f"{scheme}.pub"
    assert verified.docker_reference == REF
    assert verified.rekor is False
    assert verified.form == "cosign"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_key_type_rejects_a_tampered_payload(scheme: str) -> None:
    """One changed byte in the signed payload fails every key type with bad-signature."""
    key = cached_key(scheme)
    payload = simple_signing_payload(IMAGE, REF)
    signature = sign(payload, key)
    tampered = payload.replace(b"registry.example", b"registry.exbmple")

    with pytest.raises(VerificationError) as exc:
        verify_simple_signing(tampered, signature, IMAGE, policy_for(key))

    assert reason_of(exc) == "bad-signature"
    assert "verifies under no key of policy release" in exc.value.message


def test_p384_signature_hashed_with_sha256_verifies() -> None:
    """A P-384 key's signature made with SHA-256 (cosign key files) verifies like SHA-384."""
    key = cached_key("ecdsa-p384")
    payload = simple_signing_payload(IMAGE, REF)
    signature = base64.b64encode(sign_raw(payload, key, ecdsa_hash=hashes.SHA256())).decode()

    assert verify_simple_signing(payload, signature, IMAGE, policy_for(key)).digest == IMAGE


def test_rsa_3072_key_is_named_by_its_size() -> None:
    """An RSA key's algorithm carries its size, and its signatures verify."""
    key = generate_key("rsa-pkcs1v15", rsa_bits=3072)
    payload = simple_signing_payload(IMAGE, REF)
    policy = policy_for(key)

    verified = verify_simple_signing(payload, sign(payload, key), IMAGE, policy)

    assert policy.keys[0].algorithm == "rsa-3072"
    assert verified.key_fingerprint == policy.keys[0].fingerprint


def test_fingerprint_is_sha256_of_the_der_public_key() -> None:
    """A key's fingerprint is the sha256 of its DER SubjectPublicKeyInfo."""
    key = cached_key("ecdsa-p256")
    der = key.private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    assert key.trust_key().fingerprint == Digest.of(der).hex


def _self_signed_certificate() -> bytes:
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(private, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _public_pem(
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | dsa.DSAPrivateKey,
) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        pytest.param(b"", "not a PEM public key", id="empty"),
        pytest.param(b"hello, world\n", "not a PEM public key", id="garbage"),
        pytest.param(
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "not a PEM public key",
            id="truncated-pem",
        ),
        pytest.param(
            cached_key("ecdsa-p256").private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            "is a private key",
            id="private-key",
        ),
        pytest.param(_self_signed_certificate(), "is a certificate", id="certificate"),
        pytest.param(
            _public_pem(ec.generate_private_key(ec.SECP521R1())),
            "curve secp521r1 is not supported",
            id="p521",
        ),
        pytest.param(
            # A short key on purpose: loading it must be refused.
            _public_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),  # noqa: S505
            "rsa-1024 is too short",
            id="rsa-1024",
        ),
        pytest.param(
            _public_pem(dsa.generate_private_key(key_size=2048)),
            "DSAPublicKey keys are not supported",
            id="dsa",
        ),
        pytest.param(b"x" * 70_000, "too large for a public key", id="huge"),
    ],
)
def test_unusable_keys_are_config_errors_naming_the_file(pem: bytes, message: str) -> None:
    """Anything but a supported PEM public key is refused with the file named and the reason."""
    with pytest.raises(ConfigError) as exc:
        load_public_key(pem, "/etc/drd/keys/release.pub")

    assert "trust key /etc/drd/keys/release.pub" in str(exc.value)
    assert message in str(exc.value)


def test_trust_keys_compare_by_fingerprint_and_source() -> None:
    """Two loads of one PEM are equal and hashable; another key is not equal."""
    pem = cached_key("ed25519").public_pem()
    a, b = load_public_key(pem, "k.pub"), load_public_key(pem, "k.pub")

    assert a == b
    assert len({a, b}) == 1
    assert a != cached_key("ed25519", 1).trust_key("k.pub")


# --- reasons ----------------------------------------------------------------------------


def test_signature_copied_from_another_image_is_wrong_digest() -> None:
    """A trusted signature of another image, replayed onto this one, is wrong-digest."""
    key = cached_key("ecdsa-p256")
    other_payload = simple_signing_payload(OTHER_IMAGE, REF)

    with pytest.raises(VerificationError) as exc:
        verify_simple_signing(other_payload, sign(other_payload, key), IMAGE, policy_for(key))

    assert reason_of(exc) == "wrong-digest"
    assert str(OTHER_IMAGE) in exc.value.message
    assert str(IMAGE) in exc.value.message
    assert vars(exc.value)["digest"] == str(IMAGE)  # set as error data, not declared


def test_digest_is_compared_as_signed_not_normalised() -> None:
    """A payload naming the digest in upper case does not match: the signed string must be exact."""
    key = cached_key("ecdsa-p256")
    payload = simple_signing_payload(f"sha256:{IMAGE.hex.upper()}", REF)

    with pytest.raises(VerificationError) as exc:
        verify_simple_signing(payload, sign(payload, key), IMAGE, policy_for(key))

    assert reason_of(exc) == "wrong-digest"


def test_other_signature_type_is_wrong_type() -> None:
    """A signed payload of another simple-signing type is wrong-type, even naming the digest."""
    key = cached_key("ed25519")
    payload = simple_signing_payload(IMAGE, REF, kind="atomic container signature")

    with pytest.raises(VerificationError) as exc:
        verify_simple_signing(payload, sign(payload, key), IMAGE, policy_for(key))

    assert reason_of(exc) == "wrong-type"
    assert "atomic container signature" in exc.value.message


def test_foreign_key_is_bad_signature_before_payload_is_read() -> None:
    """A payload signed by an untrusted key is bad-signature, whatever digest it names."""
    trusted, foreign = cached_key("ecdsa-p256"), cached_key("ecdsa-p256", 1)
    payload = simple_signing_payload(OTHER_IMAGE, REF)

    with pytest.raises(VerificationError) as exc:
        verify_simple_signing(payload, sign(payload, foreign), IMAGE, policy_for(trusted))

    assert reason_of(exc) == "bad-signature"


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"not json at all", id="not-json"),
        pytest.param(b"[1, 2, 3]", id="not-an-object"),
        pytest.param(b'{"optional": null}', id="no-critical"),
        pytest.param(b'{"critical": {"image": {}}}', id="no-type"),
        pytest.param(
            b'{"critical": {"type": "cosign container image signature", "image": {}}}',
            id="no-digest",
        ),
        pytest.param(
            b'{"critical": {"type": "cosign container image signature",'
            b' "image": {"docker-manifest-digest": 7}}}',
            id="digest-not-a-string",
        ),
        pytest.param(
            b'{"critical": {"type": "x", "type": "cosign container image signature"}}',
            id="duplicate-keys",
        ),
        pytest.param(b'{"critical": NaN}', id="nan"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b"", id="empty"),
    ],
)
def test_signed_garbage_payload_is_malformed(payload: bytes) -> None:
    """A validly signed payload that is not a cosign simple-signing document is malformed."""
    key = cached_key("ecdsa-p256")

    with pytest.raises(VerificationError) as exc:
        verify_simple_signing(payload, sign(payload, key), IMAGE, policy_for(key))

    assert reason_of(exc) == "malformed"


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param("", id="empty"),
        pytest.param("not base64!", id="bad-alphabet"),
        pytest.param("QUJD=", id="extra-padding"),
        pytest.param("QUJ", id="missing-padding"),
    ],
)
def test_garbage_signature_is_malformed(signature: str) -> None:
    """A signature annotation that is not base64 is malformed."""
    key = cached_key("ecdsa-p256")

    with pytest.raises(VerificationError) as exc:
        verify_simple_signing(simple_signing_payload(IMAGE, REF), signature, IMAGE, policy_for(key))

    assert reason_of(exc) == "malformed"


def test_payload_over_one_mebibyte_is_refused_before_anything_else() -> None:
    """A payload over 1 MiB is payload-too-large, even with a garbage signature."""
    payload = b"{" + b" " * (1024 * 1024) + b"}"

    with pytest.raises(VerificationError) as exc:
        verify_simple_signing(payload, "garbage", IMAGE, policy_for(cached_key("ed25519")))

    assert reason_of(exc) == "payload-too-large"
    assert str(1024 * 1024 + 2) in exc.value.message


def test_payload_of_exactly_one_mebibyte_is_read() -> None:
    """The 1 MiB limit is inclusive: a validly signed payload of exactly that size verifies."""
    key = cached_key("ed25519")
    small = simple_signing_payload(IMAGE, REF)
    payload = small[:-1] + b" " * (1024 * 1024 - len(small)) + b"}"

    verified = verify_simple_signing(payload, sign(payload, key), IMAGE, policy_for(key))

    assert len(payload) == 1024 * 1024
    assert verified.digest == IMAGE


@settings(max_examples=60, deadline=None)
@given(position=st.integers(min_value=0, max_value=10_000), flip=st.integers(1, 255))
def test_any_flipped_byte_breaks_the_signature(position: int, flip: int) -> None:
    """Flipping any bit pattern in any byte of a signed payload yields bad-signature."""
    key = cached_key("ecdsa-p256")
    payload = bytearray(simple_signing_payload(IMAGE, REF))
    signature = sign(bytes(payload), key)
    payload[position % len(payload)] ^= flip

    with pytest.raises(VerificationError) as exc:
        verify_simple_signing(bytes(payload), signature, IMAGE, policy_for(key))

    assert reason_of(exc) == "bad-signature"


def test_bare_private_keys_sign_like_cosign() -> None:
    """The helper signs with a bare private key too; RSA then uses PKCS#1 v1.5."""
    key = cached_key("rsa-pkcs1v15")
    payload = simple_signing_payload(IMAGE, REF)

    verified = verify_simple_signing(payload, sign(payload, key.private), IMAGE, policy_for(key))

    assert verified.key_fingerprint == key.trust_key().fingerprint


def test_any_key_of_the_policy_may_have_signed() -> None:
    """With several trusted keys, the one that signed is the one reported."""
    keys = [cached_key("rsa-pss"), cached_key("ed25519"), cached_key("ecdsa-p384")]
    payload = simple_signing_payload(IMAGE, REF)
    policy = policy_for(*keys)

    verified = verify_simple_signing(payload, sign(payload, keys[1]), IMAGE, policy)

    assert verified.key_fingerprint == keys[1].trust_key().fingerprint
    assert verified.key_source == "ed25519.pub"


def test_policy_without_keys_is_a_config_error() -> None:
    """A policy that trusts no key, or requires Rekor without a Rekor key, is refused."""
    with pytest.raises(ConfigError, match="lists no keys"):
        TrustPolicy(name="empty", keys=())
    with pytest.raises(ConfigError, match="require_rekor needs at least one rekor key"):
        TrustPolicy(name="r", keys=(cached_key("ed25519").trust_key(),), require_rekor=True)


# --- .sig manifests ---------------------------------------------------------------------


def _sig_manifest(
    layers: list[tuple[bytes, str]], bundles: list[str | None] | None = None
) -> tuple[Manifest, dict[Digest, bytes]]:
    raw, blobs = signature_manifest(layers, bundles)
    return Manifest.parse(raw), blobs


def test_signature_manifest_helper_writes_cosign_shape() -> None:
    """The helper's .sig manifest has an OCI config and one annotated simple-signing layer each."""
    payload = simple_signing_payload(IMAGE, REF)
    manifest, blobs = _sig_manifest([(payload, "c2ln")])

    assert manifest.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert manifest.config is not None
    assert manifest.config.media_type == "application/vnd.oci.image.config.v1+json"
    assert manifest.config.digest.matches(blobs[manifest.config.digest])
    (layer,) = manifest.layers
    assert layer.media_type == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert layer.annotations == {SIGNATURE_ANNOTATION: "c2ln"}
    assert blobs[layer.digest] == payload


def test_several_signatures_first_good_one_wins() -> None:
    """Of a foreign, a replayed and a good signature in one .sig manifest, the good one wins."""
    trusted, foreign = cached_key("ecdsa-p256"), cached_key("ed25519")
    own = simple_signing_payload(IMAGE, REF)
    replayed = simple_signing_payload(OTHER_IMAGE, REF)
    manifest, blobs = _sig_manifest(
        [(own, sign(own, foreign)), (replayed, sign(replayed, trusted)), (own, sign(own, trusted))]
    )

    verified = verify_signature_manifest(manifest, blobs, IMAGE, policy_for(trusted))

    assert verified.signature_digest == manifest.layers[2].digest
    assert verified.key_fingerprint == trusted.trust_key().fingerprint


def test_no_good_signature_reports_most_specific_reason() -> None:
    """Failing signatures report the most specific reason and every individual message."""
    trusted, foreign = cached_key("ecdsa-p256"), cached_key("ed25519")
    own = simple_signing_payload(IMAGE, REF)
    replayed = simple_signing_payload(OTHER_IMAGE, REF)
    manifest, blobs = _sig_manifest(
        [(own, sign(own, foreign)), (replayed, sign(replayed, trusted)), (b"", "")]
    )

    with pytest.raises(VerificationError) as exc:
        verify_signature_manifest(manifest, blobs, IMAGE, policy_for(trusted))

    assert reason_of(exc) == "wrong-digest"
    failures = vars(exc.value)["failures"]
    assert [f.reason for f in failures] == ["bad-signature", "wrong-digest", "malformed"]
    assert "bad-signature: " in exc.value.message


def test_missing_payload_blob_is_missing_blob() -> None:
    """A layer whose blob was not fetched is missing-blob."""
    key = cached_key("ecdsa-p256")
    payload = simple_signing_payload(IMAGE, REF)
    manifest, _ = _sig_manifest([(payload, sign(payload, key))])

    with pytest.raises(VerificationError) as exc:
        verify_signature_manifest(manifest, {}, IMAGE, policy_for(key))

    assert reason_of(exc) == "missing-blob"


def test_blob_not_matching_its_layer_digest_is_malformed() -> None:
    """Bytes handed in for a layer must hash to the layer's digest."""
    key = cached_key("ecdsa-p256")
    payload = simple_signing_payload(IMAGE, REF)
    manifest, _ = _sig_manifest([(payload, sign(payload, key))])

    with pytest.raises(VerificationError) as exc:
        verify_signature_manifest(
            manifest, {manifest.layers[0].digest: payload + b" "}, IMAGE, policy_for(key)
        )

    assert reason_of(exc) == "malformed"
    assert "does not hash to its digest" in exc.value.message


def test_empty_layer_without_annotation_is_malformed() -> None:
    """An empty simple-signing layer with no signature annotation is malformed."""
    empty = Digest.of(b"")
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "size": 0,
                "digest": str(empty),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                    "size": 0,
                    "digest": str(empty),
                }
            ],
        }
    ).encode()

    with pytest.raises(VerificationError) as exc:
        verify_signature_manifest(
            Manifest.parse(raw), {empty: b""}, IMAGE, policy_for(cached_key("ed25519"))
        )

    assert reason_of(exc) == "malformed"
    assert SIGNATURE_ANNOTATION in exc.value.message


def test_oversized_layer_descriptor_is_refused_unread() -> None:
    """A layer that declares more than 1 MiB is payload-too-large without its blob."""
    key = cached_key("ecdsa-p256")
    payload = simple_signing_payload(IMAGE, REF)
    raw, _ = signature_manifest([(payload, sign(payload, key))])
    doc = json.loads(raw)
    doc["layers"][0]["size"] = 1024 * 1024 + 1

    with pytest.raises(VerificationError) as exc:
        verify_signature_manifest(
            Manifest.parse(json.dumps(doc).encode()), {}, IMAGE, policy_for(key)
        )

    assert reason_of(exc) == "payload-too-large"


def test_manifest_without_signature_layers_is_no_signature() -> None:
    """A .sig manifest with no simple-signing layer holds no signature."""
    raw, _ = signature_manifest([])

    with pytest.raises(VerificationError) as exc:
        verify_signature_manifest(Manifest.parse(raw), {}, IMAGE, policy_for(cached_key("ed25519")))

    assert reason_of(exc) == "no-signature"


# --- Rekor bundles (made here) ----------------------------------------------------------


def test_rekor_bundle_is_verified_offline() -> None:
    """A bundle whose SET verifies under the policy's Rekor key marks the signature logged."""
    key, log = cached_key("ecdsa-p256"), cached_key("ecdsa-p256", 9)
    payload = simple_signing_payload(IMAGE, REF)
    signature = sign(payload, key)
    bundle = rekor_bundle(
        payload, signature, key, log, log_index=1234, integrated_time=1_711_111_111
    )

    verified = verify_simple_signing(payload, signature, IMAGE, policy_for(key, logs=[log]), bundle)

    assert (verified.rekor, verified.log_index, verified.integrated_time) == (
        True,
        1234,
        1_711_111_111,
    )


def test_bundle_is_ignored_without_rekor_keys() -> None:
    """A policy without Rekor keys cannot judge a bundle and does not claim it was logged."""
    key, log = cached_key("ecdsa-p256"), cached_key("ecdsa-p256", 9)
    payload = simple_signing_payload(IMAGE, REF)
    signature = sign(payload, key)

    verified = verify_simple_signing(
        payload, signature, IMAGE, policy_for(key), rekor_bundle(payload, signature, key, log)
    )

    assert verified.rekor is False


def _bundle_doc(bundle: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(bundle)
    return doc


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        pytest.param(
            lambda d: d["Payload"].update(logIndex=d["Payload"]["logIndex"] + 1),
            "signed entry timestamp does not verify",
            id="log-index-changed",
        ),
        pytest.param(
            lambda d: d["Payload"].update(integratedTime=1),
            "signed entry timestamp does not verify",
            id="time-changed",
        ),
        pytest.param(
            lambda d: d.update(SignedEntryTimestamp=base64.b64encode(b"x" * 70).decode()),
            "signed entry timestamp does not verify",
            id="set-garbage",
        ),
        pytest.param(
            lambda d: d["Payload"].update(logID="00" * 32),
            "is not trusted by policy",
            id="log-untrusted",
        ),
        pytest.param(lambda d: d.pop("Payload"), "Payload.body is missing", id="no-payload"),
        pytest.param(
            lambda d: d["Payload"].update(logIndex="12"),
            "Payload.logIndex is missing or not an integer",
            id="index-a-string",
        ),
    ],
)
def test_tampered_rekor_bundle_is_rekor(mutate: Callable[[Any], object], message: str) -> None:
    """Any change to a bundle's signed fields, or an untrusted log, is reason rekor."""
    key, log = cached_key("ecdsa-p256"), cached_key("ecdsa-p256", 9)
    payload = simple_signing_payload(IMAGE, REF)
    signature = sign(payload, key)
    doc = _bundle_doc(rekor_bundle(payload, signature, key, log))
    mutate(doc)

    with pytest.raises(VerificationError) as exc:
        verify_simple_signing(
            payload, signature, IMAGE, policy_for(key, logs=[log]), json.dumps(doc)
        )

    assert reason_of(exc) == "rekor"
    assert message in exc.value.message


def test_garbage_bundle_annotation_is_rekor() -> None:
    """A bundle annotation that is not JSON fails with reason rekor when Rekor keys are set."""
    key, log = cached_key("ecdsa-p256"), cached_key("ecdsa-p256", 9)
    payload = simple_signing_payload(IMAGE, REF)

    with pytest.raises(VerificationError) as exc:
        verify_simple_signing(
            payload, sign(payload, key), IMAGE, policy_for(key, logs=[log]), "{not json"
        )

    assert reason_of(exc) == "rekor"


def test_logged_entry_for_another_payload_is_rekor() -> None:
    """A genuine log entry that records another payload's hash does not vouch for this one."""
    key, log = cached_key("ecdsa-p256"), cached_key("ecdsa-p256", 9)
    payload = simple_signing_payload(IMAGE, REF)
    signature = sign(payload, key)
    body = hashedrekord_body(Digest.of(b"other").hex, signature, key.public_pem())
    bundle = rekor_bundle(payload, signature, key, log, body_b64=body)

    with pytest.raises(VerificationError) as exc:
        verify_simple_signing(payload, signature, IMAGE, policy_for(key, logs=[log]), bundle)

    assert reason_of(exc) == "rekor"
    assert "another payload" in exc.value.message


def test_logged_entry_with_another_signature_is_rekor() -> None:
    """A log entry recording a different signature than the one verified is rejected."""
    key, log = cached_key("ecdsa-p256"), cached_key("ecdsa-p256", 9)
    payload = simple_signing_payload(IMAGE, REF)
    signature, other = sign(payload, key), sign(payload, key)  # ECDSA: a fresh nonce each time
    body = hashedrekord_body(Digest.of(payload).hex, other, key.public_pem())
    bundle = rekor_bundle(payload, signature, key, log, body_b64=body)

    with pytest.raises(VerificationError) as exc:
        verify_simple_signing(payload, signature, IMAGE, policy_for(key, logs=[log]), bundle)

    assert reason_of(exc) == "rekor"
    assert "another signature" in exc.value.message


def test_logged_entry_naming_an_untrusted_key_is_unknown_key() -> None:
    """A log entry that names a public key outside the policy is unknown-key."""
    key, stranger, log = (
        cached_key("ecdsa-p256"),
        cached_key("ed25519"),
        cached_key("ecdsa-p256", 9),
    )
    payload = simple_signing_payload(IMAGE, REF)
    signature = sign(payload, key)
    body = hashedrekord_body(Digest.of(payload).hex, signature, stranger.public_pem())
    bundle = rekor_bundle(payload, signature, key, log, body_b64=body)

    with pytest.raises(VerificationError) as exc:
        verify_simple_signing(payload, signature, IMAGE, policy_for(key, logs=[log]), bundle)

    assert reason_of(exc) == "unknown-key"


def test_signature_by_a_logged_foreign_key_is_unknown_key() -> None:
    """A signature that verifies under its bundle's key, which the policy lacks, is unknown-key."""
    trusted, foreign, log = (
        cached_key("ecdsa-p256"),
        cached_key("rsa-pss"),
        cached_key("ecdsa-p256", 9),
    )
    payload = simple_signing_payload(IMAGE, REF)
    signature = sign(payload, foreign)
    bundle = rekor_bundle(payload, signature, foreign, log)

    with pytest.raises(VerificationError) as exc:
        verify_simple_signing(payload, signature, IMAGE, policy_for(trusted), bundle)

    assert reason_of(exc) == "unknown-key"
    assert foreign.trust_key().fingerprint[:16] in exc.value.message


def test_required_rekor_without_bundle_is_rekor() -> None:
    """A policy that requires Rekor refuses a valid signature that carries no bundle."""
    key, log = cached_key("ecdsa-p256"), cached_key("ecdsa-p256", 9)
    payload = simple_signing_payload(IMAGE, REF)

    with pytest.raises(VerificationError) as exc:
        verify_simple_signing(
            payload, sign(payload, key), IMAGE, policy_for(key, logs=[log], require_rekor=True)
        )

    assert reason_of(exc) == "rekor"
    assert "requires a rekor bundle" in exc.value.message


# --- the real cosign signature in the fixtures ------------------------------------------


@dataclasses.dataclass(frozen=True)
class RealSignature:
    image: Digest
    manifest: Manifest
    payloads: dict[Digest, bytes]
    cosign_pub: bytes
    rekor_pub: bytes


@pytest.fixture(scope="module")
def real() -> RealSignature:
    path = fixture_path("ocmirror-cosign-single")
    index = json.loads((path / "index.json").read_bytes())
    tags = {
        m["annotations"]["org.opencontainers.image.ref.name"]: Digest.parse(m["digest"])
        for m in index["manifests"]
    }
    image = tags["latest"]
    sig_digest = tags[f"{image.tag_form}.sig"]

    def blob(digest: Digest) -> bytes:
        data = (path / "blobs" / digest.algorithm / digest.hex).read_bytes()
        assert digest.matches(data)
        return data

    manifest = Manifest.parse(blob(sig_digest), expected=sig_digest)
    return RealSignature(
        image=image,
        manifest=manifest,
        payloads={layer.digest: blob(layer.digest) for layer in manifest.layers},
        cosign_pub=(path / "trust" / "cosign.pub").read_bytes(),
        rekor_pub=(path / "trust" / "rekor-public-good.pub").read_bytes(),
    )


def _real_policy(real: RealSignature, *, rekor: bool, require_rekor: bool = False) -> TrustPolicy:
    return TrustPolicy(
        name="fixture",
        keys=(load_public_key(real.cosign_pub, "trust/cosign.pub"),),
        rekor_keys=(load_public_key(real.rekor_pub, "trust/rekor-public-good.pub"),)
        if rekor
        else (),
        require_rekor=require_rekor,
    )


def test_real_cosign_signature_verifies(real: RealSignature) -> None:
    """The signature cosign made for the fixture image verifies with its cosign.pub."""
    verified = verify_signature_manifest(
        real.manifest, real.payloads, real.image, _real_policy(real, rekor=False)
    )

    assert (
        str(real.image) == "sha256:7d27ba1da0f64410102468d138f9ec8f61f2cc23bb58ff4cd63243a4434e3d99"
    )
    assert verified.key_fingerprint == (
        "e8ed5dd0617a8fab8f4fd289b7063bc568e4a74904206790c53807e9624cd6c2"
    )
    assert verified.key_source == "trust/cosign.pub"
    assert verified.docker_reference == "quay.io/rh_ee_aguidi/empty-image"
    assert verified.signature_digest == Digest.parse(
        "sha256:5e7a034f575bb1b9188e4ea29470a2b86c640170125fa8c7ec9dc9c4bc17a373"
    )
    assert verified.rekor is False


def test_real_rekor_bundle_verifies_offline(real: RealSignature) -> None:
    """The fixture's Rekor bundle verifies under the public-good Rekor key, offline."""
    verified = verify_signature_manifest(
        real.manifest, real.payloads, real.image, _real_policy(real, rekor=True, require_rekor=True)
    )

    assert verified.rekor is True
    assert verified.log_index == 168884377
    assert verified.integrated_time == 1738749439


def test_real_signature_for_another_digest_is_wrong_digest(real: RealSignature) -> None:
    """The real signature does not verify the image's config blob or any other digest."""
    assert real.manifest.config is not None
    with pytest.raises(VerificationError) as exc:
        verify_signature_manifest(
            real.manifest,
            real.payloads,
            real.manifest.config.digest,
            _real_policy(real, rekor=True),
        )

    assert reason_of(exc) == "wrong-digest"


def test_real_signature_under_another_key_is_unknown_key(real: RealSignature) -> None:
    """Trusting another key, the real signature is unknown-key: its Rekor entry names its signer."""
    policy = policy_for(cached_key("ecdsa-p256"))

    with pytest.raises(VerificationError) as exc:
        verify_signature_manifest(real.manifest, real.payloads, real.image, policy)

    assert reason_of(exc) == "unknown-key"
    assert "e8ed5dd0617a8fab" in exc.value.message


def test_real_payload_with_one_byte_changed_is_bad_signature(real: RealSignature) -> None:
    """Changing one byte of the real signed payload breaks the real signature."""
    layer = real.manifest.layers[0]
    payload = bytearray(real.payloads[layer.digest])
    payload[-2] ^= 0x01

    with pytest.raises(VerificationError) as exc:
        verify_simple_signing(
            bytes(payload),
            layer.annotations[SIGNATURE_ANNOTATION],
            real.image,
            _real_policy(real, rekor=False),
        )

    assert reason_of(exc) == "bad-signature"


def test_real_bundle_under_another_rekor_key_is_rekor(real: RealSignature) -> None:
    """The real bundle does not verify under a Rekor key other than the public-good one."""
    policy = TrustPolicy(
        name="fixture",
        keys=(load_public_key(real.cosign_pub, "trust/cosign.pub"),),
        rekor_keys=(cached_key("ecdsa-p256", 9).trust_key("other-rekor.pub"),),
    )

    with pytest.raises(VerificationError) as exc:
        verify_signature_manifest(real.manifest, real.payloads, real.image, policy)

    assert reason_of(exc) == "rekor"


def test_real_bundle_with_changed_integrated_time_is_rekor(real: RealSignature) -> None:
    """Moving the real entry's integrated time by one second breaks its SET."""
    layer = real.manifest.layers[0]
    doc = json.loads(layer.annotations[BUNDLE_ANNOTATION])
    doc["Payload"]["integratedTime"] += 1

    with pytest.raises(VerificationError) as exc:
        verify_simple_signing(
            real.payloads[layer.digest],
            layer.annotations[SIGNATURE_ANNOTATION],
            real.image,
            _real_policy(real, rekor=True),
            json.dumps(doc),
        )

    assert reason_of(exc) == "rekor"


# --- checked by openssl, independently ----------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "digest_flag", "sigopts"),
    [
        pytest.param("ecdsa-p256", "-sha256", [], id="ecdsa-p256"),
        pytest.param("ecdsa-p384", "-sha384", [], id="ecdsa-p384"),
        pytest.param("rsa-pkcs1v15", "-sha256", [], id="rsa-pkcs1v15"),
        pytest.param(
            "rsa-pss",
            "-sha256",
            ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:-2"],
            id="rsa-pss",
        ),
    ],
)
def test_openssl_accepts_helper_signatures(
    tmp_path: Path, scheme: str, digest_flag: str, sigopts: list[str]
) -> None:
    """openssl verifies the helper's signatures over a simple-signing payload, as drd does."""
    key = cached_key(scheme)
    payload = simple_signing_payload(IMAGE, REF)
    signature = sign(payload, key)
    (tmp_path / "pub.pem").write_bytes(key.public_pem())
    (tmp_path / "sig.der").write_bytes(base64.b64decode(signature))
    (tmp_path / "payload").write_bytes(payload)

    result = subprocess.run(
        [
            "openssl",
            "dgst",
            digest_flag,
            "-verify",
            "pub.pem",
            *sigopts,
            "-signature",
            "sig.der",
            "payload",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Verified OK"
    assert verify_simple_signing(payload, signature, IMAGE, policy_for(key)).digest == IMAGE
