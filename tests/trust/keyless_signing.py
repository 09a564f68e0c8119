"""
Make keyless Sigstore signatures in tests: a test Fulcio CA, Rekor log and CT log.

Built with `cryptography` only, in the shapes the real services produce: a root and
an intermediate CA, ten-minute leaves with Fulcio's identity extensions and the
code-signing EKU (optionally an embedded SCT), Rekor ``hashedrekord`` entries with
a signed entry timestamp, Merkle inclusion proofs and signed checkpoints.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from drd.oci import mediatype
from drd.trust.fulcio import CertificateAuthority, IdentityRule, KeylessTrust
from drd.trust.keyless import CERTIFICATE_ANNOTATION, CHAIN_ANNOTATION
from drd.trust.keys import TrustPolicy
from drd.trust.tlog import leaf_hash
from tests.trust.signing import SigningKey, cached_key, log_id, sign_raw, signed_entry_timestamp

SIGNED_AT = datetime(2026, 11, 3, 9, 0, 0, tzinfo=UTC)
GHA = "https://token.actions.githubusercontent.com"
WORKFLOW = "https://github.com/org/app/.github/workflows/release.yml@refs/heads/main"
_FULCIO = "1.3.6.1.4.1.57264.1"
SCT_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _utf8(value: str) -> bytes:
    """A DER UTF8String: what Fulcio's current extensions hold."""
    raw = value.encode()
    assert len(raw) < 128
    return bytes([0x0C, len(raw)]) + raw


@dataclass(frozen=True)
class FakeFulcio:
    """A root and an intermediate CA that issue Fulcio-shaped leaves."""

    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey
    intermediate: x509.Certificate

    @classmethod
    def create(cls, name: str = "test-fulcio") -> FakeFulcio:
        """A fresh CA pair valid 2020-2040."""
        root_key = ec.generate_private_key(ec.SECP384R1())
        inter_key = ec.generate_private_key(ec.SECP384R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        inter_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name}-intermediate")])
        start, end = datetime(2020, 1, 1, tzinfo=UTC), datetime(2040, 1, 1, tzinfo=UTC)

        def ca(subject: x509.Name, key: Any, issuer: x509.Name, signer: Any) -> x509.Certificate:
            return (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(issuer)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start)
                .not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(
                    x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                    critical=True,
                )
                .add_extension(
                    x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
                )
                .sign(signer, hashes.SHA384())
            )

        root = ca(root_name, root_key, root_name, root_key)
        inter = ca(inter_name, inter_key, root_name, root_key)
        return cls(root_key, root, inter_key, inter)

    def root_pem(self) -> bytes:
        """The root alone, as in a ``fulcio_roots`` file."""
        return _pem(self.root)

    def chain_pem(self) -> str:
        """The ``dev.sigstore.cosign/chain`` annotation: intermediate, then root."""
        return (_pem(self.intermediate) + _pem(self.root)).decode()

    def authority(self, *, intermediate: bool = True) -> CertificateAuthority:
        """The authority a trusted root gives (root and intermediate), or the root alone."""
        chain = (self.intermediate,) if intermediate else ()
        return CertificateAuthority("test-fulcio-root.pem", (self.root,), chain)

    def issue(
        self,
        key: ec.EllipticCurvePrivateKey,
        *,
        subject: str = WORKFLOW,
        issuer: str | None = GHA,
        legacy_issuer: str | None = None,
        claims: dict[str, str] | None = None,
        not_before: datetime = SIGNED_AT - timedelta(minutes=1),
        lifetime: timedelta = timedelta(minutes=10),
        code_signing: bool = True,
        ct_log: SigningKey | None = None,
    ) -> x509.Certificate:
        """A leaf for *key*, issued by the intermediate: Fulcio's shape."""
        san: x509.GeneralName = (
            x509.RFC822Name(subject)
            if "@" in subject and "://" not in subject
            else x509.UniformResourceIdentifier(subject)
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.intermediate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_before + lifetime)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.intermediate_key.public_key()
                ),
                critical=False,
            )
        )
        if code_signing:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
            )
        if legacy_issuer is not None:
            builder = _ext(builder, "1", legacy_issuer.encode())
        if issuer is not None:
            builder = _ext(builder, "8", _utf8(issuer))
        oids = {
            "build_signer_uri": "9",
            "source_repository": "12",
            "source_ref": "14",
            "workflow_trigger": "20",
        }
        for name, value in (claims or {}).items():
            builder = _ext(builder, oids[name], _utf8(value))
        if ct_log is None:
            return builder.sign(self.intermediate_key, hashes.SHA256())
        precert = builder.sign(self.intermediate_key, hashes.SHA256())
        sct = _sct(precert, self.intermediate, ct_log, not_before)
        return builder.add_extension(x509.UnrecognizedExtension(SCT_OID, sct), critical=False).sign(
            self.intermediate_key, hashes.SHA256()
        )


def _ext(builder: x509.CertificateBuilder, arc: str, value: bytes) -> x509.CertificateBuilder:
    oid = x509.ObjectIdentifier(f"{_FULCIO}.{arc}")
    return builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=False)


def _sct(
    precert: x509.Certificate, issuer: x509.Certificate, log: SigningKey, when: datetime
) -> bytes:
    """An embedded SCT list (DER OCTET STRING around RFC 6962's TLS encoding)."""
    issuer_key_hash = hashlib.sha256(
        issuer.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).digest()
    tbs = precert.tbs_certificate_bytes
    millis = int(when.timestamp() * 1000)
    signed = (
        struct.pack(">BBQH", 0, 0, millis, 1)
        + issuer_key_hash
        + len(tbs).to_bytes(3, "big")
        + tbs
        + struct.pack(">H", 0)
    )
    signature = sign_raw(signed, log)
    sct = (
        b"\x00"
        + bytes.fromhex(log_id(log))
        + struct.pack(">Q", millis)
        + struct.pack(">H", 0)
        + bytes([4, 3])
        + struct.pack(">H", len(signature))
        + signature
    )
    tls = struct.pack(">H", len(sct) + 2) + struct.pack(">H", len(sct)) + sct
    assert len(tls) < 65536
    length = len(tls)
    der_len = bytes([0x82]) + length.to_bytes(2, "big") if length > 127 else bytes([length])
    return b"\x04" + der_len + tls


# --- Rekor -----------------------------------------------------------------------------


def cert_hashedrekord(message_sha256: str, signature: bytes, cert: x509.Certificate) -> str:
    """A base64 ``hashedrekord`` 0.0.1 body recording a certificate, as Rekor stores it."""
    body = {
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": message_sha256}},
            "signature": {
                "content": base64.b64encode(signature).decode(),
                "publicKey": {"content": base64.b64encode(_pem(cert)).decode()},
            },
        },
    }
    return base64.b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()


def cosign_rekor_bundle(
    body_b64: str,
    log: SigningKey,
    *,
    integrated_time: int,
    signed_time: int | None = None,
    log_index: int = 1234,
) -> str:
    """The ``dev.sigstore.cosign/bundle`` annotation; *signed_time* lets the SET lie."""
    set_bytes = signed_entry_timestamp(
        body_b64, integrated_time if signed_time is None else signed_time, log_index, log
    )
    return json.dumps(
        {
            "SignedEntryTimestamp": base64.b64encode(set_bytes).decode(),
            "Payload": {
                "body": body_b64,
                "integratedTime": integrated_time,
                "logIndex": log_index,
                "logID": log_id(log),
            },
        },
        separators=(",", ":"),
    )


def mth(leaves: Sequence[bytes]) -> bytes:
    """RFC 9162 Merkle tree hash of leaf hashes (reference implementation, by the spec)."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def merkle_path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 inclusion proof for leaf *index*, by the spec's recursive definition."""
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if index < k:
        return [*merkle_path(index, leaves[:k]), mth(leaves[k:])]
    return [*merkle_path(index - k, leaves[k:]), mth(leaves[:k])]


def inclusion_proof(
    body: bytes, log: SigningKey, *, index: int = 5, size: int = 13, origin: str = "test-rekor"
) -> dict[str, Any]:
    """A bundle ``inclusionProof`` for *body* at *index* in a tree of *size*, with checkpoint."""
    leaves = [leaf_hash(b"other-%d" % i) for i in range(size)]
    leaves[index] = leaf_hash(body)
    root = mth(leaves)
    note = f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"
    signature = bytes.fromhex(log_id(log))[:4] + sign_raw(note.encode(), log)
    envelope = f"{note}\n\u2014 {origin} {base64.b64encode(signature).decode()}\n"
    return {
        "logIndex": str(index),
        "rootHash": base64.b64encode(root).decode(),
        "treeSize": str(size),
        "hashes": [base64.b64encode(h).decode() for h in merkle_path(index, leaves)],
        "checkpoint": {"envelope": envelope},
    }


# --- signatures ------------------------------------------------------------------------


@dataclass
class KeylessSigner:
    """One keyless signing: an ephemeral key, its leaf, and the log that recorded it."""

    fulcio: FakeFulcio
    log: SigningKey
    leaf_options: dict[str, Any] = field(default_factory=dict)
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def leaf(self) -> x509.Certificate:
        """The leaf certificate for this signing (issued anew per call)."""
        return self.fulcio.issue(self.key, **self.leaf_options)

    def sign_layer(
        self,
        payload: bytes,
        *,
        integrated_time: datetime = SIGNED_AT,
        set_time: datetime | None = None,
        body_b64: str | None = None,
        chain: str | None = None,
        bundle: bool = True,
        leaf: x509.Certificate | None = None,
    ) -> tuple[bytes, str, dict[str, str]]:
        """(payload, base64 signature, keyless annotations) for a ``.sig`` layer."""
        signature = self.key.sign(payload, ec.ECDSA(hashes.SHA256()))
        cert = leaf or self.leaf()
        annotations = {CERTIFICATE_ANNOTATION: _pem(cert).decode()}
        annotations[CHAIN_ANNOTATION] = chain if chain is not None else self.fulcio.chain_pem()
        if bundle:
            body = body_b64 or cert_hashedrekord(
                hashlib.sha256(payload).hexdigest(), signature, cert
            )
            annotations["dev.sigstore.cosign/bundle"] = cosign_rekor_bundle(
                body,
                self.log,
                integrated_time=int(integrated_time.timestamp()),
                signed_time=int(set_time.timestamp()) if set_time else None,
            )
        return payload, base64.b64encode(signature).decode(), annotations

    def message_bundle(
        self, artifact: bytes, *, proof_body: bytes | None = None, promise: bool = True
    ) -> bytes:
        """A v0.3 keyless bundle over *artifact* with an inclusion proof (and SET)."""
        signature = self.key.sign(artifact, ec.ECDSA(hashes.SHA256()))
        cert = self.leaf()
        digest = hashlib.sha256(artifact).digest()
        body_b64 = cert_hashedrekord(digest.hex(), signature, cert)
        body = base64.b64decode(body_b64)
        integrated = int(SIGNED_AT.timestamp())
        entry: dict[str, Any] = {
            "logIndex": "1234",
            "logId": {"keyId": base64.b64encode(bytes.fromhex(log_id(self.log))).decode()},
            "kindVersion": {"kind": "hashedrekord", "version": "0.0.1"},
            "integratedTime": str(integrated),
            "inclusionProof": inclusion_proof(proof_body or body, self.log),
            "canonicalizedBody": body_b64,
        }
        if promise:
            entry["inclusionPromise"] = {
                "signedEntryTimestamp": base64.b64encode(
                    signed_entry_timestamp(body_b64, integrated, 1234, self.log)
                ).decode()
            }
        bundle = {
            "mediaType": mediatype.SIGSTORE_BUNDLE_V03,
            "verificationMaterial": {
                "certificate": {
                    "rawBytes": base64.b64encode(
                        cert.public_bytes(serialization.Encoding.DER)
                    ).decode()
                },
                "tlogEntries": [entry],
            },
            "messageSignature": {
                "messageDigest": {
                    "algorithm": "SHA2_256",
                    "digest": base64.b64encode(digest).decode(),
                },
                "signature": base64.b64encode(signature).decode(),
            },
        }
        return json.dumps(bundle, separators=(",", ":")).encode()


def keyless_policy(
    fulcio: FakeFulcio,
    log: SigningKey,
    *,
    identities: Sequence[IdentityRule] = (IdentityRule(issuer=GHA, subject=WORKFLOW),),
    ct_logs: Sequence[SigningKey] = (),
    require_rekor: bool = False,
    name: str = "ci",
    intermediate: bool = True,
) -> TrustPolicy:
    """A keyless policy trusting *fulcio*'s root, *log*'s Rekor key and *identities*."""
    return TrustPolicy(
        name=name,
        keys=(),
        rekor_keys=(log.trust_key("rekor.pub"),),
        require_rekor=require_rekor,
        keyless=KeylessTrust(
            (fulcio.authority(intermediate=intermediate),),
            tuple(identities),
            tuple(k.trust_key(f"ctfe-{i}.pub") for i, k in enumerate(ct_logs)),
        ),
    )


def rule(**kwargs: Any) -> IdentityRule:
    """An IdentityRule; ``*_regex`` strings are compiled."""
    for name in ("issuer_regex", "subject_regex"):
        if isinstance(kwargs.get(name), str):
            kwargs[name] = re.compile(kwargs[name])
    if "claims" in kwargs:
        kwargs["claims"] = tuple(kwargs["claims"].items())
    return IdentityRule(**kwargs)


def default_log() -> SigningKey:
    """The test Rekor key."""
    return cached_key("ecdsa-p256", 7)
