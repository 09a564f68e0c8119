"""
Notation envelopes: the notation-go fixtures with upstream's verdicts, then self-made negatives.

Each fixture case has the verdict and reason that shared/fixtures/signatures/README.md
section 2 gives it; the self-made envelopes (JWS and COSE alike) cover another
digest, expiry, a chain to another root, an untrusted identity and a non-code-signing leaf.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest

from drd.errors import ConfigError, VerificationError
from drd.oci.descriptor import Descriptor
from drd.oci.digest import Digest
from drd.trust.notation import COSE_MEDIA_TYPE, JWS_MEDIA_TYPE, verify_notation
from drd.trust.notation_trust import (
    NotationTrust,
    TrustedCertificate,
    load_certificates,
    parse_identity,
)
from tests.trust.notary import (
    DAY,
    NOW,
    cached_signer,
    cose_envelope,
    envelope,
    make_signer,
    media_type_of,
    notation_fixture,
    target,
)

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
MOCK = Descriptor(
    DOCKER_V2,
    Digest.parse("sha256:60043cf45eaebc4c0867fea485a039b598f52fd09fd5b07b0b2d2f88fad9d74e"),
    528,
)
STAMPED = Descriptor(
    DOCKER_V2,
    Digest.parse("sha256:c0669ef34cdc14332c0f1ab0c2c01acb91d96014b172f1a76f3a39e63d1f0bda"),
    528,
)
COSE_CLI_DIGEST = "sha256:19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0"
NOTARY_ROOT = "x509.subject: C=US, ST=WA, L=Seattle, O=Notary, CN=Notation Test Root"


def store(*names: str) -> tuple[TrustedCertificate, ...]:
    """Certificates from notation-go's ``valid-trust-store``."""
    folder = notation_fixture("truststore/x509/ca/valid-trust-store")
    return tuple(c for n in names for c in load_certificates((folder / n).read_bytes(), n))


def valid_store() -> NotationTrust:
    return NotationTrust(roots=store("NotationTestRoot.pem", "TestTimestamp.crt"))


def reason_of(
    envelope_bytes: bytes, media_type: str, subject: Descriptor, trust: NotationTrust
) -> str:
    with pytest.raises(VerificationError) as exc:
        verify_notation(envelope_bytes, media_type, subject, trust, "notary", NOW)
    return exc.value.reason


# --- notation-go fixtures, README section 2 ----------------------------------------------


def test_valid_jws_with_the_upstream_policy_identity_is_accepted() -> None:
    """mock/ca_valid_sig_env.json: ACCEPT with x509.subject of the Notation Test Root."""
    raw = notation_fixture("mock/ca_valid_sig_env.json").read_bytes()
    trust = NotationTrust(roots=store("NotationTestRoot.pem"), identities=(NOTARY_ROOT,))

    verified = verify_notation(raw, JWS_MEDIA_TYPE, MOCK, trust, "notary", NOW)

    assert verified.digest == MOCK.digest
    assert verified.form == "notation-jws"
    assert verified.identity == "CN=Notation Test Root,O=Notary,L=Seattle,ST=WA,C=US"
    assert verified.key_source == "NotationTestRoot.pem"


def test_tampered_jws_payload_is_rejected_for_integrity() -> None:
    """mock/ca_invalid_sig_env_fail.json: a '=' appended to the payload."""
    raw = notation_fixture("mock/ca_invalid_sig_env_fail.json").read_bytes()
    assert reason_of(raw, JWS_MEDIA_TYPE, MOCK, valid_store()) == "bad-signature"


def test_jws_past_its_expiry_is_rejected_at_strict_level() -> None:
    """mock/ca_expired_sig_env_fail.json: expiry 2022-07-29T23:59:00Z."""
    raw = notation_fixture("mock/ca_expired_sig_env_fail.json").read_bytes()
    with pytest.raises(VerificationError) as exc:
        verify_notation(raw, JWS_MEDIA_TYPE, MOCK, valid_store(), "notary", NOW)
    assert exc.value.reason == "expired"
    assert "2022-07-29T23:59:00Z" in exc.value.message


STAMPS = [
    ("jwsWithTimestamp.sig", JWS_MEDIA_TYPE, "2024-06-18T06:29:37+00:00"),
    ("coseWithTimestamp.sig", COSE_MEDIA_TYPE, "2024-06-18T06:27:16+00:00"),
]


def tsa_roots() -> tuple[TrustedCertificate, ...]:
    """notation-go's tsa/test-timestamp store: the GlobalSign root."""
    path = notation_fixture("truststore/x509/tsa/test-timestamp/globalsignRoot.cer")
    return load_certificates(path.read_bytes(), "globalsignRoot.cer")


@pytest.mark.parametrize(("name", "media_type", "stamped"), STAMPS)
def test_timestamped_envelopes_verify_with_their_rfc3161_countersignature(
    name: str, media_type: str, stamped: str
) -> None:
    """timestamped/{jws,cose}WithTimestamp.sig: ACCEPT, signer CN=alpine, TSA GlobalSign."""
    raw = notation_fixture(f"timestamped/{name}").read_bytes()
    trust = NotationTrust(roots=valid_store().roots, tsa_roots=tsa_roots())

    verified = verify_notation(raw, media_type, STAMPED, trust, "notary", NOW)

    assert verified.identity == "CN=alpine,O=Notary,L=Seattle,ST=WA,C=US"
    assert verified.key_source == "TestTimestamp.crt"
    assert verified.form == ("notation-jws" if media_type == JWS_MEDIA_TYPE else "notation-cose")
    assert verified.timestamp is not None
    assert dt.datetime.fromtimestamp(verified.timestamp, dt.UTC).isoformat() == stamped
    # Without a TSA root configured the timestamp is not relied on; the chain is valid now.
    assert verify_notation(raw, media_type, STAMPED, valid_store(), "n", NOW).timestamp is None


@pytest.mark.parametrize(("name", "media_type", "stamped"), STAMPS)
def test_timestamp_from_an_unconfigured_tsa_is_untrusted_root(
    name: str, media_type: str, stamped: str
) -> None:
    raw = notation_fixture(f"timestamped/{name}").read_bytes()
    other_tsa = store("NotationTestRoot.pem")
    trust = NotationTrust(roots=valid_store().roots, tsa_roots=other_tsa)

    with pytest.raises(VerificationError) as exc:
        verify_notation(raw, media_type, STAMPED, trust, "notary", NOW)
    assert exc.value.reason == "untrusted-root"
    assert "TSA root" in exc.value.message


def test_timestamp_moved_onto_another_signature_is_rejected() -> None:
    """The COSE envelope's token in the JWS envelope's unprotected header: over other bytes."""
    from pycose.messages import Sign1Message

    cose = Sign1Message.decode(notation_fixture("timestamped/coseWithTimestamp.sig").read_bytes())
    doc = json.loads(notation_fixture("timestamped/jwsWithTimestamp.sig").read_bytes())
    token = cose.uhdr["io.cncf.notary.timestampSignature"]
    doc["header"]["io.cncf.notary.timestampSignature"] = base64.b64encode(token).decode()
    trust = NotationTrust(roots=valid_store().roots, tsa_roots=tsa_roots())
    moved = json.dumps(doc).encode()
    assert reason_of(moved, JWS_MEDIA_TYPE, STAMPED, trust) == "bad-signature"

    doc["header"]["io.cncf.notary.timestampSignature"] = base64.b64encode(b"garbage").decode()
    assert reason_of(json.dumps(doc).encode(), JWS_MEDIA_TYPE, STAMPED, trust) == "malformed"


def test_signer_expired_long_before_its_timestamp_is_rejected() -> None:
    """timestampAfterNotAfter_fail.cose.sig: CN=testTSA expired 2001; absent from the store too."""
    raw = notation_fixture("timestamped/timestampAfterNotAfter_fail.cose.sig").read_bytes()
    assert reason_of(raw, COSE_MEDIA_TYPE, STAMPED, valid_store()) == "untrusted-root"

    # Even trusted, its certificate expired long before the authentic 2024 timestamp:
    # upstream's "timestamp can be after certificate ... validity period".
    signer = _x5c_leaf_of_cose(raw)
    trusting = NotationTrust(
        roots=(*valid_store().roots, TrustedCertificate("testTSA", signer)),  # type: ignore[arg-type]
        tsa_roots=tsa_roots(),
    )
    with pytest.raises(VerificationError) as exc:
        verify_notation(raw, COSE_MEDIA_TYPE, STAMPED, trusting, "notary", NOW)
    assert exc.value.reason == "expired"
    assert "2001-09-18T11:54:34Z, not at 2024-06-19T09:35:58Z" in exc.value.message


def _x5c_leaf_of_cose(raw: bytes) -> object:
    from cryptography import x509
    from pycose.headers import X5chain
    from pycose.messages import Sign1Message

    chain = Sign1Message.decode(raw).uhdr[X5chain]
    der = chain[0] if isinstance(chain, list) else chain
    return x509.load_der_x509_certificate(der)


def _cose_cli() -> tuple[bytes, Descriptor]:
    raw = notation_fixture("cose-cli-1.0.0/cose_signature.sig").read_bytes()
    manifest = notation_fixture(
        f"cose-cli-1.0.0/sha256_{COSE_CLI_DIGEST.split(':')[1]}.manifest.json"
    ).read_bytes()
    digest = Digest.of(manifest)
    assert str(digest) == COSE_CLI_DIGEST
    doc = json.loads(manifest)
    return raw, Descriptor(doc["mediaType"], digest, len(manifest))


def test_cose_cli_signature_is_rejected_while_its_signer_is_in_no_trust_store() -> None:
    """cose-cli-1.0.0: self-signed CN=alpine that no upstream store holds."""
    raw, subject = _cose_cli()
    assert reason_of(raw, COSE_MEDIA_TYPE, subject, valid_store()) == "untrusted-root"


def test_cose_cli_signature_is_accepted_once_its_x5c_leaf_is_trusted() -> None:
    """The same envelope, its x5c[0] placed in a CA trust store: ACCEPT over the real manifest."""
    raw, subject = _cose_cli()
    leaf = _x5c_leaf_of_cose(raw)
    trust = NotationTrust(roots=(TrustedCertificate("alpine.crt", leaf),))  # type: ignore[arg-type]

    verified = verify_notation(raw, COSE_MEDIA_TYPE, subject, trust, "notary", NOW)

    assert verified.digest == subject.digest
    assert verified.form == "notation-cose"


# --- self-made envelopes ----------------------------------------------------------------

IMAGE = Descriptor("application/vnd.oci.image.manifest.v1+json", Digest.of(b"image"), 5)
KINDS = ("jws", "cose")


def trusting(signer_index: int = 0, identities: tuple[str, ...] = ()) -> NotationTrust:
    signer = cached_signer(signer_index)
    return NotationTrust(
        roots=(TrustedCertificate("root.crt", signer.root),), identities=identities
    )


@pytest.mark.parametrize("kind", KINDS)
def test_self_made_envelope_verifies(kind: str) -> None:
    raw = envelope(kind, target(IMAGE.digest, IMAGE.size), cached_signer())

    verified = verify_notation(raw, media_type_of(kind), IMAGE, trusting(), "notary", NOW)

    assert verified.identity == "CN=release 0,O=drd tests,C=US"
    assert verified.key_source == "root.crt"


@pytest.mark.parametrize("kind", KINDS)
def test_envelope_over_another_digest_is_rejected(kind: str) -> None:
    raw = envelope(kind, target(Digest.of(b"other"), IMAGE.size), cached_signer())
    assert reason_of(raw, media_type_of(kind), IMAGE, trusting()) == "wrong-digest"


@pytest.mark.parametrize("kind", KINDS)
def test_envelope_over_another_size_or_media_type_is_rejected(kind: str) -> None:
    bigger = envelope(kind, target(IMAGE.digest, IMAGE.size + 1), cached_signer())
    docker = envelope(kind, target(IMAGE.digest, IMAGE.size, DOCKER_V2), cached_signer())
    assert reason_of(bigger, media_type_of(kind), IMAGE, trusting()) == "wrong-digest"
    assert reason_of(docker, media_type_of(kind), IMAGE, trusting()) == "wrong-digest"


@pytest.mark.parametrize("kind", KINDS)
def test_envelope_past_its_expiry_is_rejected(kind: str) -> None:
    raw = envelope(
        kind,
        target(IMAGE.digest, IMAGE.size),
        cached_signer(),
        signing_time=NOW - 3 * DAY,
        expiry=NOW - DAY,
    )
    assert reason_of(raw, media_type_of(kind), IMAGE, trusting()) == "expired"


@pytest.mark.parametrize("kind", KINDS)
def test_envelope_within_its_expiry_is_accepted(kind: str) -> None:
    raw = envelope(kind, target(IMAGE.digest, IMAGE.size), cached_signer(), expiry=NOW + DAY)
    verified = verify_notation(raw, media_type_of(kind), IMAGE, trusting(), "notary", NOW)
    assert verified.digest == IMAGE.digest


@pytest.mark.parametrize("kind", KINDS)
def test_chain_to_another_root_is_rejected(kind: str) -> None:
    raw = envelope(kind, target(IMAGE.digest, IMAGE.size), cached_signer(1))
    assert reason_of(raw, media_type_of(kind), IMAGE, trusting(0)) == "untrusted-root"


@pytest.mark.parametrize("kind", KINDS)
def test_leaf_expired_now_without_a_timestamp_is_rejected(kind: str) -> None:
    signer = make_signer(not_before=NOW - 30 * DAY, not_after=NOW - DAY)
    raw = envelope(kind, target(IMAGE.digest, IMAGE.size), signer, signing_time=NOW - 2 * DAY)
    trust = NotationTrust(roots=(TrustedCertificate("root.crt", signer.root),))
    assert reason_of(raw, media_type_of(kind), IMAGE, trust) == "expired"


def test_leaf_that_is_not_for_code_signing_is_rejected() -> None:
    signer = make_signer(code_signing=False)
    raw = envelope("jws", target(IMAGE.digest, IMAGE.size), signer)
    trust = NotationTrust(roots=(TrustedCertificate("root.crt", signer.root),))
    assert reason_of(raw, JWS_MEDIA_TYPE, IMAGE, trust) == "untrusted-root"


@pytest.mark.parametrize("kind", KINDS)
def test_identity_must_match_the_leaf_subject(kind: str) -> None:
    raw = envelope(kind, target(IMAGE.digest, IMAGE.size), cached_signer())
    media_type = media_type_of(kind)

    wrong = trusting(identities=("x509.subject: O=drd tests, CN=someone else",))
    subset = trusting(identities=("x509.subject: CN=release 0, O=drd tests",))

    assert reason_of(raw, media_type, IMAGE, wrong) == "untrusted-identity"
    assert verify_notation(raw, media_type, IMAGE, subset, "notary", NOW).identity


@pytest.mark.parametrize("kind", KINDS)
def test_a_flipped_signature_byte_is_rejected(kind: str) -> None:
    raw = bytearray(envelope(kind, target(IMAGE.digest, IMAGE.size), cached_signer()))
    if kind == "jws":
        doc = json.loads(raw)
        sig = doc["signature"]
        doc["signature"] = ("A" if sig[0] != "A" else "B") + sig[1:]
        tampered = json.dumps(doc).encode()
    else:
        raw[-5] ^= 0x01  # inside the signature, the last element of COSE_Sign1
        tampered = bytes(raw)
    assert reason_of(tampered, media_type_of(kind), IMAGE, trusting()) == "bad-signature"


def test_cose_envelope_with_an_unknown_critical_header_is_refused() -> None:
    artifact = target(IMAGE.digest, IMAGE.size)
    raw = cose_envelope(artifact, cached_signer(), critical=("io.example.must-understand",))
    assert reason_of(raw, COSE_MEDIA_TYPE, IMAGE, trusting()) == "malformed"


def test_garbage_envelopes_are_malformed_not_crashes() -> None:
    assert reason_of(b"not json", JWS_MEDIA_TYPE, IMAGE, trusting()) == "malformed"
    assert reason_of(b"\xd2\x84", COSE_MEDIA_TYPE, IMAGE, trusting()) == "malformed"
    assert reason_of(b"{}", "application/json", IMAGE, trusting()) == "wrong-type"


def test_hostile_certificate_chains_are_malformed() -> None:
    doc = json.loads(envelope("jws", target(IMAGE.digest, IMAGE.size), cached_signer()))
    for x5c in ([], ["not base64!"], [doc["header"]["x5c"][0]] * 11, "a string"):
        doc["header"]["x5c"] = x5c
        assert reason_of(json.dumps(doc).encode(), JWS_MEDIA_TYPE, IMAGE, trusting()) == "malformed"


def test_identities_and_certificates_are_checked_when_loaded(tmp_path: Path) -> None:
    assert parse_identity("x509.subject: C=US, CN=a") == {"C": "US", "CN": "a"}
    assert parse_identity("*") == {}
    for bad in ("CN=a", "x509.subject:", "x509.subject: XX=a", "x509.subject: CN=a, CN=b"):
        with pytest.raises(ConfigError):
            parse_identity(bad)
    with pytest.raises(ConfigError, match="not a PEM or DER"):
        load_certificates(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "x")
    with pytest.raises(ConfigError, match="private key"):
        load_certificates(b"-----BEGIN PRIVATE KEY-----\n", "x")
    assert dt.datetime.now(dt.UTC) >= NOW
