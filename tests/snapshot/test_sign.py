"""Signing snapshot indexes with Ed25519 and ECDSA keys, and checking them on read."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from drd.errors import ConfigError, VerificationError
from drd.snapshot.model import parse_index
from drd.snapshot.sign import IndexKey
from tests.snapshot.test_model import sample


def private_pem(key: object) -> bytes:
    """PKCS#8 PEM of a private key."""
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: object) -> bytes:
    """SubjectPublicKeyInfo PEM of a private key's public half."""
    return key.public_key().public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


KEYS = {
    "ed25519": ed25519.Ed25519PrivateKey.generate(),
    "ecdsa-p256": ec.generate_private_key(ec.SECP256R1()),
    "ecdsa-p384": ec.generate_private_key(ec.SECP384R1()),
}


@pytest.mark.parametrize("algorithm", sorted(KEYS))
def test_a_signed_index_verifies_after_a_round_trip(algorithm: str) -> None:
    """The signature survives encoding and verifies with the private or the public key."""
    signer = IndexKey.from_pem(private_pem(KEYS[algorithm]))
    assert signer.algorithm == algorithm
    snap = sample()
    signed = dataclasses.replace(snap, signature=signer.sign(snap.digest))
    back = parse_index(signed.to_bytes(), key=signed.key)
    signer.verify(back)
    IndexKey.from_pem(public_pem(KEYS[algorithm])).verify(back)
    assert back.digest == snap.digest  # the signature is not part of what is hashed


def test_an_unsigned_index_fails_when_a_key_is_configured() -> None:
    """With a key configured, dropping the signature is not a way around it."""
    with pytest.raises(VerificationError, match="not signed") as err:
        IndexKey.from_pem(private_pem(KEYS["ed25519"])).verify(sample())
    assert err.value.reason == "unsigned"


def test_a_signature_by_another_key_fails() -> None:
    """An index signed by a key other than the configured one is refused."""
    snap = sample()
    signed = dataclasses.replace(
        snap, signature=IndexKey.from_pem(private_pem(KEYS["ecdsa-p256"])).sign(snap.digest)
    )
    other = IndexKey.from_pem(private_pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(VerificationError) as err:
        other.verify(signed)
    assert err.value.reason == "unknown-key"


def test_a_signature_over_another_body_fails() -> None:
    """A valid signature moved onto a different index does not verify."""
    key = IndexKey.from_pem(private_pem(KEYS["ed25519"]))
    first = sample()
    signature = key.sign(first.digest)
    other = dataclasses.replace(sample(tags={}), signature=signature)
    with pytest.raises(VerificationError) as err:
        key.verify(other)
    assert err.value.reason == "bad-signature"


def test_a_public_key_cannot_sign() -> None:
    """Signing needs the private key; the error says so."""
    with pytest.raises(ConfigError, match="private key"):
        IndexKey.from_pem(public_pem(KEYS["ed25519"])).sign(sample().digest)


@pytest.mark.parametrize(
    "pem",
    [
        pytest.param(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n", id="junk"),
        pytest.param(
            private_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)), id="rsa"
        ),
    ],
)
def test_unusable_keys_are_config_errors(pem: bytes) -> None:
    """Garbage and RSA keys are refused at load time with the file named."""
    with pytest.raises(ConfigError, match=r"signing\.pem"):
        IndexKey.from_pem(pem, "signing.pem")
