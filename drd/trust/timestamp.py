"""
RFC 3161 timestamp countersignatures, as Notation attaches them to a signature. Pure.

The token is CMS SignedData over a TSTInfo whose message imprint is the hash of the
signature bytes; the time it states (``genTime``) is authentic when the token's
signature verifies under a TSA certificate that chains to a configured TSA root.
CMS is parsed with asn1crypto and every signature checked with `cryptography`:
neither offers an RFC 3161 verifier, and the checks below are the ones RFC 3161
section 2.4.2 and RFC 5652 section 5.4 ask for.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from drd.oci.digest import Digest
from drd.trust.decode import fail
from drd.trust.policy import BAD_SIGNATURE, EXPIRED, MALFORMED, UNTRUSTED_ROOT

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
# Object identifiers by number, not asn1crypto's names: those depend on which of its
# modules happen to be imported.
_SIGNED_DATA = "1.2.840.113549.1.7.2"
_TST_INFO = "1.2.840.113549.1.9.16.1.4"
_CONTENT_TYPE_ATTR = "1.2.840.113549.1.9.3"
_MESSAGE_DIGEST_ATTR = "1.2.840.113549.1.9.4"
# A TSA chain is signer, intermediate, root: a few certificates.
_MAX_DEPTH = 8


def verify_timestamp(
    token: bytes, signature: bytes, roots: tuple[x509.Certificate, ...], subject: Digest
) -> dt.datetime:
    """
    The time an RFC 3161 *token* proves *signature* existed; raise otherwise.

    Reasons: ``malformed`` (not a timestamp token), ``bad-signature`` (the token
    is over other bytes, or its own signature does not verify), ``untrusted-root``
    (the TSA chains to no configured root, or is not a timestamping certificate),
    ``expired`` (a TSA certificate was not valid at the time it states).
    """
    try:
        info = cms.ContentInfo.load(token)
        signed = info["content"]
        encap = signed["encap_content_info"]
        if info["content_type"].dotted != _SIGNED_DATA or encap["content_type"].dotted != _TST_INFO:
            raise fail(MALFORMED, "timestamp token is not RFC 3161 signed data", subject)
        tst_der = encap["content"].contents
        tst = tsp.TSTInfo.load(tst_der)
        imprint = tst["message_imprint"]
        imprint_hash = imprint["hash_algorithm"]["algorithm"].native
        imprinted = imprint["hashed_message"].native
        when = tst["gen_time"].native
        signers = list(signed["signer_infos"])
        certs = [
            x509.load_der_x509_certificate(c.chosen.dump())
            for c in signed["certificates"] or []
            if c.name == "certificate"
        ]
    except (ValueError, TypeError, KeyError) as exc:
        raise fail(MALFORMED, f"timestamp token is unusable: {exc}", subject) from exc
    if imprint_hash not in _HASHES or hashlib.new(imprint_hash, signature).digest() != imprinted:
        raise fail(BAD_SIGNATURE, "timestamp token is over other bytes than the signature", subject)
    if len(signers) != 1:
        raise fail(MALFORMED, f"timestamp token has {len(signers)} signers, not one", subject)
    tsa = _check_signer(signers[0], tst_der, certs, subject)
    _check_chain(tsa, certs, roots, when, subject)
    if not isinstance(when, dt.datetime):
        raise fail(MALFORMED, "timestamp token has no time", subject)
    return when


def _check_signer(
    signer: cms.SignerInfo, content: bytes, certs: list[x509.Certificate], subject: Digest
) -> x509.Certificate:
    """The TSA certificate whose key signed the token's attributes, which name *content*."""
    try:
        sid = signer["sid"].chosen
        serial = sid["serial_number"].native
        issuer = sid["issuer"].dump()
        digest_name = signer["digest_algorithm"]["algorithm"].native
        attrs = signer["signed_attrs"]
        values = {a["type"].dotted: a["values"][0] for a in attrs}
        # The signature covers the attributes DER-encoded as a SET, not as the [0] they travel in.
        signed_bytes = b"\x31" + attrs.dump()[1:]
        algorithm = signer["signature_algorithm"].signature_algo
        signature = signer["signature"].native
    except (ValueError, TypeError, KeyError) as exc:
        raise fail(MALFORMED, f"timestamp signer info is unusable: {exc}", subject) from exc
    if digest_name not in _HASHES:
        raise fail(MALFORMED, f"timestamp digest {digest_name} is not supported", subject)
    named = values.get(_CONTENT_TYPE_ATTR)
    imprint = values.get(_MESSAGE_DIGEST_ATTR)
    if (
        named is None
        or imprint is None
        or named.dotted != _TST_INFO
        or imprint.native != hashlib.new(digest_name, content).digest()
    ):
        raise fail(BAD_SIGNATURE, "timestamp attributes do not name its TSTInfo", subject)
    tsa = next(
        (c for c in certs if c.serial_number == serial and c.issuer.public_bytes() == issuer), None
    )
    if tsa is None:
        raise fail(
            UNTRUSTED_ROOT, "timestamp token does not carry its signer's certificate", subject
        )
    if not _verifies(tsa, signature, signed_bytes, algorithm, _HASHES[digest_name]()):
        raise fail(BAD_SIGNATURE, "timestamp token signature does not verify", subject)
    try:
        usage = tsa.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is None or ExtendedKeyUsageOID.TIME_STAMPING not in usage:
        raise fail(UNTRUSTED_ROOT, "timestamp signer is not a timestamping certificate", subject)
    return tsa


def _verifies(
    cert: x509.Certificate,
    signature: bytes,
    data: bytes,
    algorithm: str,
    hash_algorithm: hashes.HashAlgorithm,
) -> bool:
    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey) and algorithm == "rsassa_pss":
            pss = padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=padding.PSS.AUTO)
            key.verify(signature, data, pss, hash_algorithm)
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hash_algorithm))
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        return False
    return True


def _check_chain(
    tsa: x509.Certificate,
    certs: list[x509.Certificate],
    roots: tuple[x509.Certificate, ...],
    when: object,
    subject: Digest,
) -> None:
    """From the TSA certificate up to a configured root, each valid at the stated time."""
    current = tsa
    for _ in range(_MAX_DEPTH):
        _valid_at(current, when, subject)
        root = next((r for r in roots if r == current or _issued_by(current, r)), None)
        if root is not None:
            _valid_at(root, when, subject)
            return
        issuer = next((c for c in certs if c != current and _issued_by(current, c)), None)
        if issuer is None:
            break
        current = issuer
    raise fail(
        UNTRUSTED_ROOT,
        f"timestamp authority {tsa.subject.rfc4514_string()} chains to no configured TSA root",
        subject,
    )


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _valid_at(cert: x509.Certificate, when: object, subject: Digest) -> None:
    if not isinstance(when, dt.datetime):
        raise fail(MALFORMED, "timestamp token has no time", subject)
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise fail(
            EXPIRED,
            f"timestamp certificate {cert.subject.rfc4514_string()} was not valid at {when}",
            subject,
        )
