"""
Sign a snapshot index digest with Ed25519 or ECDSA, and verify it on read.

The signed message is ``drd-snapshot-index/v1 <index digest>``: the prefix keeps
a snapshot signature from being replayed as any other kind of signature made
with the same key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from drd.errors import ConfigError, VerificationError
from drd.oci.digest import Digest
from drd.snapshot.model import Signature, Snapshot

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey

_MAX_PEM = 64 * 1024
_CURVES = {"secp256r1": ("ecdsa-p256", hashes.SHA256), "secp384r1": ("ecdsa-p384", hashes.SHA384)}


def message(digest: Digest) -> bytes:
    """The bytes a snapshot signature covers."""
    return f"drd-snapshot-index/v1 {digest}".encode()


@dataclass(frozen=True)
class IndexKey:
    """
    A key for snapshot indexes: a private key signs and verifies, a public key only verifies.

    ``key_id`` is the sha256 hex of the DER SubjectPublicKeyInfo.
    """

    algorithm: str
    key_id: str
    public: PublicKey = field(repr=False)
    private: PrivateKey | None = field(default=None, repr=False)

    @classmethod
    def from_pem(cls, pem: bytes, source: str = "key") -> IndexKey:
        """Load an Ed25519 or ECDSA (P-256, P-384) key, private or public, from PEM."""
        if len(pem) > _MAX_PEM:
            raise ConfigError(f"{source} is not a PEM key", errors=[(source, "too large")])
        private: PrivateKey | None = None
        try:
            if b"PRIVATE KEY" in pem:
                loaded_private = serialization.load_pem_private_key(pem, password=None)
                if not isinstance(
                    loaded_private, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
                ):
                    raise _unsupported(source, type(loaded_private).__name__)
                private = loaded_private
                public: object = private.public_key()
            else:
                public = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ConfigError(
                f"{source} is not a usable PEM key", errors=[(source, str(exc)[:200])]
            ) from exc
        if isinstance(public, ed25519.Ed25519PublicKey):
            algorithm = "ed25519"
        elif isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name in _CURVES:
            algorithm = _CURVES[public.curve.name][0]
        else:
            raise _unsupported(source, type(public).__name__)
        der = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(algorithm, hashlib.sha256(der).hexdigest(), public, private)

    @classmethod
    def load(cls, path: Path) -> IndexKey:
        """Load a key file; raise `ConfigError` naming the file when it is unusable."""
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read snapshot signing key {path}", errors=[(str(path), str(exc))]
            ) from exc
        return cls.from_pem(pem, str(path))

    @property
    def can_sign(self) -> bool:
        """Whether this key holds the private half."""
        return self.private is not None

    def sign(self, digest: Digest) -> Signature:
        """A signature over *digest*; raises `ConfigError` for a public-only key."""
        if self.private is None:
            raise ConfigError(
                "the snapshot signing key is a public key; signing needs the private key"
            )
        data = message(digest)
        if isinstance(self.private, ed25519.Ed25519PrivateKey):
            raw = self.private.sign(data)
        else:
            raw = self.private.sign(data, ec.ECDSA(self._hash()))
        return Signature(self.algorithm, self.key_id, base64.b64encode(raw).decode())

    def verify(self, snapshot: Snapshot) -> None:
        """
        Check *snapshot*'s signature against this key.

        Raises `VerificationError` when the index is unsigned, signed by another key,
        or the signature does not verify over its digest.
        """
        sig = snapshot.signature
        if sig is None:
            raise VerificationError(
                f"snapshot {snapshot.id} is not signed, and a signature is required",
                reason="unsigned",
            )
        if sig.key_id != self.key_id or sig.algorithm != self.algorithm:
            raise VerificationError(
                f"snapshot {snapshot.id} is signed by key {sig.key_id[:16]}, "
                f"not the configured {self.key_id[:16]}",
                reason="unknown-key",
            )
        try:
            raw = base64.b64decode(sig.value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise VerificationError(
                f"snapshot {snapshot.id} has a malformed signature", reason="malformed"
            ) from exc
        data = message(snapshot.digest)
        try:
            if isinstance(self.public, ed25519.Ed25519PublicKey):
                self.public.verify(raw, data)
            else:
                self.public.verify(raw, data, ec.ECDSA(self._hash()))
        except InvalidSignature as exc:
            raise VerificationError(
                f"snapshot {snapshot.id}'s signature does not verify over {snapshot.digest}",
                reason="bad-signature",
            ) from exc

    def _hash(self) -> hashes.HashAlgorithm:
        curve = self.public.curve.name if isinstance(self.public, ec.EllipticCurvePublicKey) else ""
        return _CURVES.get(curve, ("", hashes.SHA256))[1]()


def signature_problem(snapshot: Snapshot, key: IndexKey | None) -> VerificationError | None:
    """
    Why *snapshot*'s index is not trusted under *key* (unsigned, another key, a bad
    signature, or no key configured to check it with), or None when it verifies.
    """
    if key is None:
        return VerificationError(
            f"snapshot {snapshot.id} cannot be checked: no snapshots.signing_key_file "
            "is configured",
            reason="no-key",
        )
    try:
        key.verify(snapshot)
    except VerificationError as exc:
        return exc
    return None


def _unsupported(source: str, what: str) -> ConfigError:
    return ConfigError(
        f"{source}: snapshot keys must be Ed25519 or ECDSA P-256/P-384",
        errors=[(source, f"{what} is not supported")],
    )
