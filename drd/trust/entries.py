"""
What a keyless transparency-log entry records, checked against what was verified. Pure.

Rekor's ``hashedrekord`` (0.0.1, 0.0.2), ``dsse`` (0.0.1) and ``intoto`` (0.0.2)
bodies each record the signed digest or payload, the signature and the signing
certificate; all three must be exactly those of the signature being verified, or the
entry vouches for another signing (CVE-2022-36056). Reason: ``tlog-invalid``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography import x509

from drd.errors import VerificationError
from drd.oci.digest import Digest
from drd.trust.decode import MAX_ENTRIES, decode_b64, fail, lookup
from drd.trust.policy import MALFORMED, TLOG_INVALID


def load_leaf(der_or_pem: bytes, subject: Digest) -> x509.Certificate:
    """The signing certificate, PEM or DER; ``malformed`` when it is neither."""
    try:
        if der_or_pem.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(der_or_pem)
        return x509.load_der_x509_certificate(der_or_pem)
    except ValueError as exc:
        raise fail(MALFORMED, f"signing certificate is unreadable: {exc}", subject) from exc


def _same_cert(encoded: str, leaf: x509.Certificate, subject: Digest) -> None:
    """*encoded* (base64 PEM or DER, as entries record it) is exactly *leaf*."""
    raw = decode_b64(encoded, "rekor entry certificate", subject, TLOG_INVALID)
    if b"CERTIFICATE" not in raw and raw.lstrip().startswith(b"-----BEGIN"):
        raise fail(TLOG_INVALID, "rekor entry names a public key, not the certificate", subject)
    try:
        named = load_leaf(raw, subject)
    except VerificationError as exc:
        raise fail(TLOG_INVALID, f"rekor entry certificate: {exc.message}", subject) from exc
    if named != leaf:
        raise fail(
            TLOG_INVALID, "rekor entry records another certificate than the one used", subject
        )


def check_hashedrekord_cert(
    body: dict[str, Any],
    message_sha256: str,
    signature: bytes,
    leaf: x509.Certificate,
    subject: Digest,
) -> None:
    """A ``hashedrekord`` 0.0.1 or 0.0.2 body records this digest, signature and certificate."""
    kind, version = body.get("kind"), body.get("apiVersion")
    if kind != "hashedrekord":
        raise fail(TLOG_INVALID, f"rekor entry kind {kind!r} does not record a signature", subject)
    if version == "0.0.2":
        spec = lookup(body, "spec.hashedRekordV002", dict, subject, TLOG_INVALID)
        if lookup(spec, "data.algorithm", str, subject, TLOG_INVALID) != "SHA2_256":
            raise fail(TLOG_INVALID, "rekor entry does not record a sha256 digest", subject)
        digest = decode_b64(
            lookup(spec, "data.digest", str, subject, TLOG_INVALID), "digest", subject, TLOG_INVALID
        ).hex()
        recorded = lookup(spec, "signature.content", str, subject, TLOG_INVALID)
        cert = lookup(
            spec, "signature.verifier.x509Certificate.rawBytes", str, subject, TLOG_INVALID
        )
    else:
        if lookup(body, "spec.data.hash.algorithm", str, subject, TLOG_INVALID) != "sha256":
            raise fail(TLOG_INVALID, "rekor entry does not record a sha256 digest", subject)
        digest = lookup(body, "spec.data.hash.value", str, subject, TLOG_INVALID)
        recorded = lookup(body, "spec.signature.content", str, subject, TLOG_INVALID)
        cert = lookup(body, "spec.signature.publicKey.content", str, subject, TLOG_INVALID)
    if digest != message_sha256:
        raise fail(TLOG_INVALID, "rekor entry records another payload than the one signed", subject)
    if decode_b64(recorded, "rekor signature", subject, TLOG_INVALID) != signature:
        raise fail(
            TLOG_INVALID, "rekor entry records another signature than the one verified", subject
        )
    _same_cert(cert, leaf, subject)


def check_dsse_cert(
    body: dict[str, Any],
    payload: bytes,
    signature: bytes,
    leaf: x509.Certificate,
    subject: Digest,
) -> None:
    """A ``dsse`` 0.0.1 or ``intoto`` 0.0.2 body records this envelope payload and signature."""
    kind = body.get("kind")
    payload_sha256 = hashlib.sha256(payload).hexdigest()
    if kind == "dsse":
        spec = lookup(body, "spec", dict, subject, TLOG_INVALID)
        entries = [
            (
                lookup(s, "signature", str, subject, TLOG_INVALID),
                lookup(s, "verifier", str, subject, TLOG_INVALID),
            )
            for s in lookup(spec, "signatures", list, subject, TLOG_INVALID)[:MAX_ENTRIES]
        ]
    elif kind == "intoto" and body.get("apiVersion") == "0.0.2":
        spec = lookup(body, "spec.content", dict, subject, TLOG_INVALID)
        # intoto 0.0.2 stores each signature base64-encoded twice.
        entries = [
            (
                decode_b64(
                    lookup(s, "sig", str, subject, TLOG_INVALID), "sig", subject, TLOG_INVALID
                ).decode(),
                lookup(s, "publicKey", str, subject, TLOG_INVALID),
            )
            for s in lookup(spec, "envelope.signatures", list, subject, TLOG_INVALID)[:MAX_ENTRIES]
        ]
    else:
        raise fail(
            TLOG_INVALID, f"rekor entry kind {kind!r} does not record a DSSE envelope", subject
        )
    if lookup(spec, "payloadHash.algorithm", str, subject, TLOG_INVALID) != "sha256" or (
        lookup(spec, "payloadHash.value", str, subject, TLOG_INVALID) != payload_sha256
    ):
        raise fail(TLOG_INVALID, "rekor entry records another envelope payload", subject)
    for recorded, cert in entries:
        if decode_b64(recorded, "rekor signature", subject, TLOG_INVALID) == signature:
            _same_cert(cert, leaf, subject)
            return
    raise fail(TLOG_INVALID, "rekor entry records another signature than the one verified", subject)
