"""
Make Notation signatures in tests: a test CA, a code-signing leaf, JWS and COSE envelopes.

The shapes are Notation's: an envelope whose payload is ``{"targetArtifact":
<descriptor>}``, the chain in ``x5c`` leaf first, and a signature manifest of
artifact type ``application/vnd.cncf.notary.signature`` whose ``subject`` is the
signed artifact. Envelopes are made with joserfc and pycose, keys and
certificates with `cryptography`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from joserfc import jws
from joserfc.jwk import ECKey
from pycose.algorithms import Es256
from pycose.headers import Algorithm, ContentType, Critical, X5chain
from pycose.keys import CoseKey
from pycose.messages import Sign1Message

from drd.oci import mediatype
from drd.oci.digest import Digest
from drd.trust.notation import (
    COSE_MEDIA_TYPE,
    EXPIRY,
    JWS_MEDIA_TYPE,
    JWS_REGISTRY,
    PAYLOAD_CONTENT_TYPE,
    SCHEME_X509,
    SIGNATURE_ARTIFACT_TYPE,
    SIGNING_SCHEME,
    SIGNING_TIME,
)
from tests.images import Image, RegistryWriter, push_image
from tests.layouts import FIXTURES
from tests.servers import LocalRegistry, missing

EMPTY_CONFIG = b"{}"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Signer:
    """A CA certificate and a leaf it issued, with the leaf's private key."""

    root: x509.Certificate
    leaf: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey

    def root_pem(self) -> bytes:
        """The CA certificate as a trust store file holds it."""
        return self.root.public_bytes(serialization.Encoding.PEM)

    def chain_der(self) -> list[bytes]:
        """``x5c``: leaf first, then the root (Notation includes the root)."""
        return [c.public_bytes(serialization.Encoding.DER) for c in (self.leaf, self.root)]


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "drd tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def make_signer(
    root_cn: str = "drd test root",
    leaf_cn: str = "release",
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    code_signing: bool = True,
) -> Signer:
    """A fresh CA and a leaf valid from *not_before* to *not_after* (default: now ± a year)."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (
        x509.CertificateBuilder()
        .subject_name(_name(root_cn))
        .issuer_name(_name(root_cn))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - 400 * DAY)
        .not_valid_after(NOW + 400 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.CODE_SIGNING if code_signing else ExtendedKeyUsageOID.SERVER_AUTH
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(leaf_cn))
        .issuer_name(root.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - 365 * DAY)
        .not_valid_after(not_after or NOW + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    return Signer(root, leaf, leaf_key)


def cached_signer(index: int = 0) -> Signer:
    """The same signer for *index* for the whole test session."""
    return _cached_signer(index)


@cache
def _cached_signer(index: int) -> Signer:
    # Always positional: functools.cache keys () and (0,) apart.
    return make_signer(f"drd test root {index}", f"release {index}")


def target(digest: Digest, size: int, media_type: str = mediatype.OCI_MANIFEST) -> dict[str, Any]:
    """The ``targetArtifact`` descriptor an envelope signs."""
    return {"mediaType": media_type, "digest": str(digest), "size": size}


def _payload(artifact: dict[str, Any]) -> bytes:
    return json.dumps({"targetArtifact": artifact}, separators=(",", ":")).encode()


def jws_envelope(
    artifact: dict[str, Any],
    signer: Signer,
    *,
    signing_time: dt.datetime | None = None,
    expiry: dt.datetime | None = None,
) -> bytes:
    """A Notation JWS envelope (flattened JSON, ES256) over *artifact*."""
    protected: dict[str, Any] = {
        "alg": "ES256",
        "crit": [SIGNING_SCHEME] + ([EXPIRY] if expiry else []),
        "cty": PAYLOAD_CONTENT_TYPE,
        SIGNING_SCHEME: SCHEME_X509,
        SIGNING_TIME: _rfc3339(signing_time or NOW),
    }
    if expiry is not None:
        protected[EXPIRY] = _rfc3339(expiry)
    header = {
        "x5c": [base64.b64encode(der).decode() for der in signer.chain_der()],
        "io.cncf.notary.signingAgent": "drd-tests/1",
    }
    key = ECKey.import_key(
        signer.leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    signed = jws.serialize_json(
        {"protected": protected, "header": header},  # type: ignore[typeddict-item]
        _payload(artifact),
        key,
        registry=JWS_REGISTRY,
    )
    return json.dumps(signed).encode()


def cose_envelope(
    artifact: dict[str, Any],
    signer: Signer,
    *,
    signing_time: dt.datetime | None = None,
    expiry: dt.datetime | None = None,
    critical: tuple[str, ...] = (),
) -> bytes:
    """A Notation COSE_Sign1 envelope (ES256) over *artifact*; *critical* adds crit labels."""
    protected: dict[Any, Any] = {
        Algorithm: Es256,
        Critical: [SIGNING_SCHEME, *critical] + ([EXPIRY] if expiry else []),
        ContentType: PAYLOAD_CONTENT_TYPE,
        SIGNING_SCHEME: SCHEME_X509,
        SIGNING_TIME: (signing_time or NOW).replace(microsecond=0),
    }
    if expiry is not None:
        protected[EXPIRY] = expiry.replace(microsecond=0)
    message = Sign1Message(
        phdr=protected, uhdr={X5chain: signer.chain_der()}, payload=_payload(artifact)
    )
    pem = signer.leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    message.key = CoseKey.from_pem_private_key(pem.decode())
    encoded: bytes = message.encode()
    return encoded


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def envelope(kind: str, artifact: dict[str, Any], signer: Signer, **kwargs: Any) -> bytes:
    """A ``"jws"`` or ``"cose"`` envelope."""
    make = jws_envelope if kind == "jws" else cose_envelope
    return make(artifact, signer, **kwargs)


def media_type_of(kind: str) -> str:
    """The layer media type of a ``"jws"`` or ``"cose"`` envelope."""
    return JWS_MEDIA_TYPE if kind == "jws" else COSE_MEDIA_TYPE


def signature_manifest(
    subject: dict[str, Any], envelope_bytes: bytes, envelope_type: str
) -> tuple[bytes, dict[Digest, bytes]]:
    """A Notation signature manifest for *subject* and the blobs it references."""
    doc = {
        "schemaVersion": 2,
        "mediaType": mediatype.OCI_MANIFEST,
        "artifactType": SIGNATURE_ARTIFACT_TYPE,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "digest": str(Digest.of(EMPTY_CONFIG)),
            "size": len(EMPTY_CONFIG),
        },
        "layers": [
            {
                "mediaType": envelope_type,
                "digest": str(Digest.of(envelope_bytes)),
                "size": len(envelope_bytes),
            }
        ],
        "subject": subject,
        "annotations": {"io.cncf.notary.x509chain.thumbprint#S256": "[]"},
    }
    raw = json.dumps(doc, indent=2).encode()
    blobs = {Digest.of(EMPTY_CONFIG): EMPTY_CONFIG, Digest.of(envelope_bytes): envelope_bytes}
    return raw, blobs


SIGNATURES = FIXTURES.parent / "signatures"
NOTATION = SIGNATURES / "notation" / "notation-go"


def notation_fixture(relative: str) -> Path:
    """A file under shared/fixtures/signatures/notation/notation-go; fail (CI) or skip if absent."""
    path = NOTATION / relative
    if not path.exists():
        missing(f"signature fixture {relative!r} at {path}", "place shared/ beside the repo")
    return path


async def push_notation_signed(
    registry: LocalRegistry,
    repo: str,
    image: Image,
    tag: str,
    signer: Signer,
    kind: str = "jws",
    *,
    signs: Digest | None = None,
) -> tuple[Digest, Digest]:
    """
    Push *image* as *tag* and a Notation signature of it (of *signs* when given).

    As Notation does on a registry without the referrers API: the signature manifest
    by digest, then the ``sha256-<hex>`` index listing it. Returns both digests.
    """
    await push_image(registry, repo, image, tag)
    subject = {"mediaType": image.media_type, "digest": str(image.digest), "size": image.size}
    signed = target(signs or image.digest, image.size, image.media_type)
    raw, blobs = signature_manifest(subject, envelope(kind, signed, signer), media_type_of(kind))
    index = {
        "schemaVersion": 2,
        "mediaType": mediatype.OCI_INDEX,
        "manifests": [
            {
                "mediaType": mediatype.OCI_MANIFEST,
                "digest": str(Digest.of(raw)),
                "size": len(raw),
                "artifactType": SIGNATURE_ARTIFACT_TYPE,
            }
        ],
    }
    index_raw = json.dumps(index).encode()
    async with RegistryWriter(registry) as w:
        for data in blobs.values():
            await w.push_blob(repo, data)
        await w.push_manifest(repo, Digest.of(raw), raw, mediatype.OCI_MANIFEST)
        await w.push_manifest(repo, image.digest.tag_form, index_raw, mediatype.OCI_INDEX)
    return Digest.of(raw), Digest.of(index_raw)
