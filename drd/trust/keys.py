"""Trusted public keys and trust policies. Pure: keys arrive as PEM bytes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from drd.errors import ConfigError

if TYPE_CHECKING:
    from drd.trust.fulcio import KeylessTrust
    from drd.trust.notation_trust import NotationTrust

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey

# RSA below this is breakable in practice; refusing it at load time beats trusting it.
MIN_RSA_BITS = 2048
# A public key PEM is well under a kilobyte; anything this large is not one.
MAX_PEM_BYTES = 64 * 1024

# Hashes tried for each curve, preferred first. P-384 signers disagree: sigstore-go
# hashes with SHA-384, cosign's key files with SHA-256; both are collision resistant.
_CURVE_HASHES: dict[str, tuple[type[hashes.HashAlgorithm], ...]] = {
    "secp256r1": (hashes.SHA256,),
    "secp384r1": (hashes.SHA384, hashes.SHA256),
}
_CURVE_NAMES = {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384"}


@dataclass(frozen=True, slots=True)
class TrustKey:
    """
    One trusted public key.

    ``fingerprint`` is the sha256 hex of the DER SubjectPublicKeyInfo, which is
    also how Rekor names its own key (the log ID). Equality ignores the key object.
    """

    source: str
    fingerprint: str
    algorithm: str
    key: PublicKey = field(compare=False, repr=False)

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Whether *signature* over *data* verifies under this key."""
        key = self.key
        try:
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, data)
                return True
            if isinstance(key, ec.EllipticCurvePublicKey):
                return any(
                    _ecdsa_ok(key, signature, data, ec.ECDSA(algo()))
                    for algo in _CURVE_HASHES[key.curve.name]
                )
            return _rsa_ok(key, signature, data, hashes.SHA256())
        except InvalidSignature:
            return False

    @property
    def can_verify_digest(self) -> bool:
        """Whether a SHA-256 digest alone is enough to check a signature (not for Ed25519)."""
        return not isinstance(self.key, ed25519.Ed25519PublicKey)

    def verify_digest(self, signature: bytes, sha256_digest: bytes) -> bool:
        """Whether *signature* verifies over a message whose SHA-256 is *sha256_digest*."""
        key = self.key
        if isinstance(key, ed25519.Ed25519PublicKey) or len(sha256_digest) != 32:
            return False
        prehashed = Prehashed(hashes.SHA256())
        if isinstance(key, ec.EllipticCurvePublicKey):
            return _ecdsa_ok(key, signature, sha256_digest, ec.ECDSA(prehashed))
        return _rsa_ok(key, signature, sha256_digest, prehashed)


def _ecdsa_ok(
    key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes, scheme: ec.ECDSA
) -> bool:
    try:
        key.verify(signature, data, scheme)
    except InvalidSignature:
        return False
    return True


def _rsa_ok(
    key: rsa.RSAPublicKey,
    signature: bytes,
    data: bytes,
    algorithm: hashes.HashAlgorithm | Prehashed,
) -> bool:
    # Both paddings, not one: cosign writes PKCS#1 v1.5 and KMS-backed signers often PSS.
    mgf = padding.MGF1(hashes.SHA256())
    for pad in (padding.PKCS1v15(), padding.PSS(mgf=mgf, salt_length=padding.PSS.AUTO)):
        try:
            key.verify(signature, data, pad, algorithm)
        except InvalidSignature:
            continue
        return True
    return False


def load_public_key(pem: bytes, source: str) -> TrustKey:
    """
    Load one PEM public key (ECDSA P-256/P-384, Ed25519, RSA >= 2048 bits).

    Raises `ConfigError` naming *source* for anything else: garbage, a private
    key, a certificate, another curve, a short RSA key.
    """
    if len(pem) > MAX_PEM_BYTES:
        raise ConfigError(f"trust key {source}: {len(pem)} bytes is too large for a public key")
    if b"PRIVATE KEY" in pem:
        raise ConfigError(f"trust key {source}: is a private key; give the public key (.pub)")
    if b"BEGIN CERTIFICATE" in pem:
        raise ConfigError(f"trust key {source}: is a certificate; give its public key in PEM")
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"trust key {source}: not a PEM public key ({exc})") from exc
    trusted, algorithm = _classify(key, source)
    der = trusted.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return TrustKey(
        source=source,
        fingerprint=hashlib.sha256(der).hexdigest(),
        algorithm=algorithm,
        key=trusted,
    )


def _classify(key: object, source: str) -> tuple[PublicKey, str]:
    """The key narrowed to a supported type, and its algorithm name."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key, "ed25519"
    if isinstance(key, ec.EllipticCurvePublicKey):
        name = _CURVE_NAMES.get(key.curve.name)
        if name is None:
            raise ConfigError(
                f"trust key {source}: curve {key.curve.name} is not supported"
                " (use P-256, P-384, Ed25519 or RSA)"
            )
        return key, name
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(
                f"trust key {source}: rsa-{key.key_size} is too short"
                f" (at least {MIN_RSA_BITS} bits)"
            )
        return key, f"rsa-{key.key_size}"
    raise ConfigError(
        f"trust key {source}: {type(key).__name__} keys are not supported"
        " (use ECDSA P-256/P-384, Ed25519 or RSA)"
    )


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """
    Which keys make an artifact verified.

    ``rekor_keys`` are transparency-log keys used to check Rekor entries offline;
    ``require_rekor`` refuses signatures without a verified entry;
    ``require_children`` asks every child of a signed index for its own signature;
    ``keyless`` trusts Fulcio certificates for listed identities.
    ``notation`` holds Notation trust stores and identities (one per
    ``trustpolicy.json`` policy, by repository scope); ``require_attestations``
    lists in-toto predicate types that must each be attested under this same
    policy; ``match_reference`` makes a simple-signing payload's
    ``docker-reference`` name the repository being verified. A policy needs at
    least one of ``keys``, ``keyless`` and ``notation``.
    """

    name: str
    keys: tuple[TrustKey, ...]
    rekor_keys: tuple[TrustKey, ...] = ()
    require_rekor: bool = False
    require_children: bool = False
    keyless: KeylessTrust | None = None
    notation: tuple[NotationTrust, ...] = ()
    require_attestations: tuple[str, ...] = ()
    match_reference: bool = False

    def __post_init__(self) -> None:
        if not self.keys and self.keyless is None and not self.notation:
            raise ConfigError(
                f"trust policy {self.name}: lists no keys, no Fulcio roots and no notation roots"
            )
        if self.require_rekor and not self.rekor_keys:
            raise ConfigError(
                f"trust policy {self.name}: require_rekor needs at least one rekor key"
            )

    def key_by_fingerprint(self, fingerprint: str) -> TrustKey | None:
        """The signing key with this fingerprint, if the policy trusts it."""
        return next((k for k in self.keys if k.fingerprint == fingerprint), None)

    def rekor_key(self, log_id: str) -> TrustKey | None:
        """The Rekor key whose log ID (DER sha256 hex) is *log_id*, if trusted."""
        return next((k for k in self.rekor_keys if k.fingerprint == log_id), None)
