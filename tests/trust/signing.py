"""
Make cosign- and sigstore-format signatures in tests, with `cryptography` only.

Everything here produces the same shapes cosign writes: the simple-signing
payload, the ``sha256-<hex>.sig`` manifest with its config and annotated
layers, the Rekor bundle annotation with a signed entry timestamp, and
key-based sigstore bundles for OCI 1.1 referrers. A "log" key stands in for
Rekor's, so SETs can be made and checked offline.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from drd.oci import mediatype
from drd.oci.digest import Digest
from drd.trust.cosign import BUNDLE_ANNOTATION, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_TYPE
from drd.trust.keys import TrustKey, TrustPolicy, load_public_key
from drd.trust.rekor import canonical_json

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey

SCHEMES = ("ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-pkcs1v15", "rsa-pss")
EMPTY_CONFIG = b"{}"


@dataclass(frozen=True)
class SigningKey:
    """A private key and the signature scheme it signs with."""

    scheme: str
    private: PrivateKey

    def public_pem(self) -> bytes:
        """The SubjectPublicKeyInfo PEM, as in a ``cosign.pub`` file."""
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def trust_key(self, source: str | None = None) -> TrustKey:
        """The public half, loaded as drd loads a configured key."""
        return load_public_key(self.public_pem(), source or f"{self.scheme}.pub")


def generate_key(scheme: str, rsa_bits: int = 2048) -> SigningKey:
    """A fresh key for *scheme*, one of `SCHEMES`."""
    private: PrivateKey
    if scheme == "ecdsa-p256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif scheme == "ecdsa-p384":
        private = ec.generate_private_key(ec.SECP384R1())
    elif scheme == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    elif scheme in ("rsa-pkcs1v15", "rsa-pss"):
        private = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    else:
        raise ValueError(f"unknown scheme {scheme}")
    return SigningKey(scheme, private)


def cached_key(scheme: str, index: int = 0) -> SigningKey:
    """The same key for (*scheme*, *index*) for the whole test session: RSA keys are slow."""
    return _cached_key(scheme, index)


@cache
def _cached_key(scheme: str, index: int) -> SigningKey:
    # Both arguments always positional: functools.cache keys ("x",) and ("x", 0) apart.
    return generate_key(scheme)


def sign_raw(
    payload: bytes, key: SigningKey, *, ecdsa_hash: hashes.HashAlgorithm | None = None
) -> bytes:
    """The raw signature bytes over *payload* (DER for ECDSA)."""
    private = key.private
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return private.sign(payload)
    if isinstance(private, ec.EllipticCurvePrivateKey):
        default = hashes.SHA384() if private.curve.name == "secp384r1" else hashes.SHA256()
        return private.sign(payload, ec.ECDSA(ecdsa_hash or default))
    return private.sign(payload, _rsa_padding(key.scheme), hashes.SHA256())


def sign_digest(sha256_digest: bytes, key: SigningKey) -> bytes:
    """A signature over a message known only by its SHA-256 (not for Ed25519)."""
    private = key.private
    prehashed = Prehashed(hashes.SHA256())
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return private.sign(sha256_digest, ec.ECDSA(prehashed))
    if isinstance(private, rsa.RSAPrivateKey):
        return private.sign(sha256_digest, _rsa_padding(key.scheme), prehashed)
    raise TypeError("ed25519 cannot sign a digest")


def _rsa_padding(scheme: str) -> padding.AsymmetricPadding:
    if scheme == "rsa-pss":
        # Go's rsa.SignPSS with nil options uses the longest salt; verifiers must auto-detect.
        return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)
    return padding.PKCS1v15()


def as_signing_key(key: SigningKey | PrivateKey) -> SigningKey:
    """*key* with its scheme; a bare RSA private key signs PKCS#1 v1.5, as cosign does."""
    if isinstance(key, SigningKey):
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return SigningKey("ed25519", key)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return SigningKey("ecdsa-p384" if key.curve.name == "secp384r1" else "ecdsa-p256", key)
    return SigningKey("rsa-pkcs1v15", key)


def sign(payload: bytes, key: SigningKey | PrivateKey) -> str:
    """The base64 signature over *payload*: a ``dev.cosignproject.cosign/signature`` value."""
    return base64.b64encode(sign_raw(payload, as_signing_key(key))).decode()


def simple_signing_payload(
    digest: Digest | str, repository_ref: str, *, kind: str = SIMPLE_SIGNING_TYPE
) -> bytes:
    """The simple-signing JSON cosign signs, byte for byte in cosign's layout."""
    doc = {
        "critical": {
            "identity": {"docker-reference": repository_ref},
            "image": {"docker-manifest-digest": str(digest)},
            "type": kind,
        },
        "optional": None,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _descriptor(media_type: str, blob: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "size": len(blob), "digest": str(Digest.of(blob)), **extra}


def signature_manifest(
    layers: Sequence[tuple[bytes, str]],
    bundles: Sequence[str | None] | None = None,
    extra: Sequence[dict[str, str]] | None = None,
) -> tuple[bytes, dict[Digest, bytes]]:
    """
    A ``.sig`` manifest with one simple-signing layer per ``(payload, signature_b64)``.

    *bundles* gives each layer an optional ``dev.sigstore.cosign/bundle``
    annotation, *extra* more annotations (a keyless certificate and chain).
    Returns the manifest bytes and every blob it needs (the config and the
    payloads), keyed by digest.
    """
    blobs: dict[Digest, bytes] = {}
    descriptors = []
    for i, (payload, signature) in enumerate(layers):
        annotations = {SIGNATURE_ANNOTATION: signature}
        if bundles is not None and bundles[i] is not None:
            annotations[BUNDLE_ANNOTATION] = str(bundles[i])
        if extra is not None:
            annotations.update(extra[i])
        descriptors.append(
            _descriptor(mediatype.COSIGN_SIMPLESIGNING, payload, annotations=annotations)
        )
        blobs[Digest.of(payload)] = payload
    config = json.dumps(
        {
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descriptors]},
            "config": {},
        },
        separators=(",", ":"),
    ).encode()
    blobs[Digest.of(config)] = config
    manifest = {
        "schemaVersion": 2,
        "mediaType": mediatype.OCI_MANIFEST,
        "config": _descriptor(mediatype.OCI_CONFIG, config),
        "layers": descriptors,
    }
    return json.dumps(manifest, separators=(",", ":")).encode(), blobs


# --- Rekor ------------------------------------------------------------------------------


def log_id(log: SigningKey) -> str:
    """Rekor's log ID for *log*: the sha256 hex of its public key DER."""
    der = log.private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def hashedrekord_body(payload_sha256: str, signature_b64: str, public_pem: bytes) -> str:
    """A base64 ``hashedrekord`` v0.0.1 entry body, as Rekor stores it."""
    body = {
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": payload_sha256}},
            "signature": {
                "content": signature_b64,
                "publicKey": {"content": base64.b64encode(public_pem).decode()},
            },
        },
    }
    return base64.b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()


def signed_entry_timestamp(
    body_b64: str, integrated_time: int, log_index: int, log: SigningKey
) -> bytes:
    """The log's signature over the canonical entry, as Rekor returns it."""
    entry = {
        "body": body_b64,
        "integratedTime": integrated_time,
        "logIndex": log_index,
        "logID": log_id(log),
    }
    return sign_raw(canonical_json(entry), log)


def rekor_bundle(
    payload: bytes,
    signature_b64: str,
    signer: SigningKey,
    log: SigningKey,
    *,
    log_index: int = 42,
    integrated_time: int = 1_700_000_000,
    body_b64: str | None = None,
) -> str:
    """The ``dev.sigstore.cosign/bundle`` annotation for a signature made by *signer*."""
    body = body_b64 or hashedrekord_body(
        hashlib.sha256(payload).hexdigest(), signature_b64, signer.public_pem()
    )
    set_bytes = signed_entry_timestamp(body, integrated_time, log_index, log)
    doc = {
        "SignedEntryTimestamp": base64.b64encode(set_bytes).decode(),
        "Payload": {
            "body": body,
            "integratedTime": integrated_time,
            "logIndex": log_index,
            "logID": log_id(log),
        },
    }
    return json.dumps(doc, separators=(",", ":"))


# --- sigstore bundles (OCI 1.1) ---------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _tlog_entry(body: dict[str, Any], kind: str, log: SigningKey, log_index: int) -> dict[str, Any]:
    body_b64 = _b64(json.dumps(body, separators=(",", ":")).encode())
    integrated_time = 1_700_000_000
    return {
        "logIndex": str(log_index),
        "logId": {"keyId": _b64(bytes.fromhex(log_id(log)))},
        "kindVersion": {"kind": kind, "version": "0.0.1"},
        "integratedTime": str(integrated_time),
        "inclusionPromise": {
            "signedEntryTimestamp": _b64(
                signed_entry_timestamp(body_b64, integrated_time, log_index, log)
            )
        },
        "canonicalizedBody": body_b64,
    }


def intoto_statement(
    subject: Digest,
    name: str = "registry.example/app",
    predicate_type: str = "https://sigstore.dev/cosign/sign/v1",
) -> bytes:
    """An in-toto v1 statement naming *subject*."""
    doc = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": name, "digest": {subject.algorithm: subject.hex}}],
        "predicateType": predicate_type,
        "predicate": {},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def attestation_manifest(
    statement: bytes, key: SigningKey, *, payload_type: str = "application/vnd.in-toto+json"
) -> tuple[bytes, dict[Digest, bytes]]:
    """
    A cosign ``.att`` manifest: one DSSE envelope layer over *statement*, signed by *key*.

    Returns the manifest bytes and every blob it needs (config and envelope), by digest.
    """
    kind = payload_type.encode()
    pae = b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(statement), statement)
    envelope = {
        "payloadType": payload_type,
        "payload": _b64(statement),
        "signatures": [{"keyid": "", "sig": _b64(sign_raw(pae, key))}],
    }
    blob = json.dumps(envelope, separators=(",", ":")).encode()
    predicate = json.loads(statement).get("predicateType", "")
    config = json.dumps(
        {"architecture": "", "os": "", "rootfs": {"type": "layers", "diff_ids": []}, "config": {}},
        separators=(",", ":"),
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": mediatype.OCI_MANIFEST,
        "config": _descriptor(mediatype.OCI_CONFIG, config),
        "layers": [
            _descriptor(
                "application/vnd.dsse.envelope.v1+json",
                blob,
                annotations={"predicateType": predicate, SIGNATURE_ANNOTATION: ""},
            )
        ],
    }
    blobs = {Digest.of(config): config, Digest.of(blob): blob}
    return json.dumps(manifest, separators=(",", ":")).encode(), blobs


def dsse_bundle(
    statement: bytes,
    key: SigningKey,
    *,
    log: SigningKey | None = None,
    payload_type: str = "application/vnd.in-toto+json",
    log_index: int = 7,
) -> bytes:
    """A key-based v0.3 bundle: a DSSE envelope over *statement*, signed by *key*."""
    kind = payload_type.encode()
    pae = b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(statement), statement)
    signature = sign_raw(pae, key)
    envelope = {
        "payload": _b64(statement),
        "payloadType": payload_type,
        "signatures": [{"sig": _b64(signature)}],
    }
    material: dict[str, Any] = {"publicKey": {"hint": key.trust_key().fingerprint}}
    if log is not None:
        body = {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(json.dumps(envelope).encode()).hexdigest(),
                },
                "payloadHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(statement).hexdigest(),
                },
                "signatures": [{"signature": _b64(signature), "verifier": _b64(key.public_pem())}],
            },
        }
        material["tlogEntries"] = [_tlog_entry(body, "dsse", log, log_index)]
    bundle = {
        "mediaType": mediatype.SIGSTORE_BUNDLE_V03,
        "verificationMaterial": material,
        "dsseEnvelope": envelope,
    }
    return json.dumps(bundle, separators=(",", ":")).encode()


def message_bundle(
    artifact: bytes, key: SigningKey, *, log: SigningKey | None = None, log_index: int = 8
) -> bytes:
    """A key-based v0.3 bundle with a ``messageSignature`` over *artifact* (manifest bytes)."""
    digest = hashlib.sha256(artifact).digest()
    signature = sign_raw(artifact, key)
    material: dict[str, Any] = {"publicKey": {"hint": key.trust_key().fingerprint}}
    if log is not None:
        body = json.loads(
            base64.b64decode(hashedrekord_body(digest.hex(), _b64(signature), key.public_pem()))
        )
        material["tlogEntries"] = [_tlog_entry(body, "hashedrekord", log, log_index)]
    bundle = {
        "mediaType": mediatype.SIGSTORE_BUNDLE_V03,
        "verificationMaterial": material,
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256", "digest": _b64(digest)},
            "signature": _b64(signature),
        },
    }
    return json.dumps(bundle, separators=(",", ":")).encode()


def bundle_referrer(
    subject_media_type: str, subject_manifest: bytes, bundle: bytes
) -> tuple[bytes, dict[Digest, bytes]]:
    """An OCI 1.1 referrer manifest carrying *bundle* for the manifest *subject_manifest*."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": mediatype.OCI_MANIFEST,
        "artifactType": mediatype.SIGSTORE_BUNDLE_V03,
        "config": _descriptor(mediatype.OCI_EMPTY, EMPTY_CONFIG),
        "layers": [_descriptor(mediatype.SIGSTORE_BUNDLE_V03, bundle)],
        "subject": _descriptor(subject_media_type, subject_manifest),
    }
    blobs = {Digest.of(EMPTY_CONFIG): EMPTY_CONFIG, Digest.of(bundle): bundle}
    return json.dumps(manifest, separators=(",", ":")).encode(), blobs


def policy_for(
    *keys: SigningKey,
    name: str = "release",
    logs: Sequence[SigningKey] = (),
    require_rekor: bool = False,
    require_children: bool = False,
) -> TrustPolicy:
    """A trust policy over the public halves of *keys* (and *logs* as Rekor keys)."""
    return TrustPolicy(
        name=name,
        keys=tuple(k.trust_key() for k in keys),
        rekor_keys=tuple(k.trust_key(f"rekor-{i}.pub") for i, k in enumerate(logs)),
        require_rekor=require_rekor,
        require_children=require_children,
    )
