"""
Keyless Sigstore signatures: cosign's ``.sig`` tag form with a Fulcio certificate, and
certificate-carrying sigstore bundles (v0.1-v0.3). Pure.

The checks, in order, each with its own reason: the leaf chains to a configured Fulcio
root (``untrusted-root``); the signature verifies under the leaf's key
(``bad-signature``); a transparency-log entry (SET, inclusion proof, checkpoint) or an
RFC 3161 timestamp proves when it was made and records exactly this signature,
certificate and payload (``tlog-invalid``); the leaf and its chain were valid at that
time (``expired``); its SCT verifies when CT keys are set; the payload names the
subject; the leaf's identity is one the policy lists (``untrusted-identity``).

Why not sigstore-python's ``Verifier``: it requires an inclusion proof in every entry
(cosign's tag-form signatures carry only a SET) and an SCT from a CT log in its trusted
root (a private Fulcio often has none), and it brings a TUF client along. Chain
validation is `cryptography`'s verifier and RFC 3161 is ``rfc3161-client``'s; the log
proofs are in `drd.trust.tlog`, what an entry must record in `drd.trust.entries`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import rfc3161_client
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from drd.errors import ConfigError, VerificationError
from drd.oci.digest import Digest
from drd.trust.decode import MAX_ENTRIES, decode_b64, fail, load_json, lookup
from drd.trust.entries import check_hashedrekord_cert, load_leaf
from drd.trust.fulcio import (
    MAX_CHAIN,
    CertIdentity,
    KeylessTrust,
    check_identity,
    identity_of,
    public_key_of,
    verify_chain,
    verify_sct,
)
from drd.trust.keys import TrustKey, TrustPolicy
from drd.trust.policy import (
    BAD_SIGNATURE,
    MALFORMED,
    REKOR,
    TLOG_INVALID,
    UNTRUSTED_ROOT,
    Verified,
    most_specific,
)
from drd.trust.rekor import verify_set
from drd.trust.tlog import verify_checkpoint, verify_inclusion

CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
TIMESTAMP_ANNOTATION = "dev.sigstore.cosign/rfc3161timestamp"


@dataclass(frozen=True, slots=True)
class Signed:
    """What a keyless signature is over: checked by *verifies*, recorded as *check_body* wants."""

    signature: bytes
    verifies: Callable[[TrustKey], bool]
    check_body: Callable[[dict[str, Any], x509.Certificate], None]
    # Reads the signed content once the signature verified; returns its predicate type.
    read: Callable[[], str] = lambda: ""


@dataclass(slots=True)
class SigningTimes:
    """Signing times proven so far, and the log entry that proved one."""

    seen: list[datetime] = field(default_factory=list)
    log_index: int | None = None
    integrated_time: int | None = None


def keyless_trust(policy: TrustPolicy, subject: Digest) -> KeylessTrust:
    """The policy's keyless trust; ``untrusted-root`` when it has none."""
    if policy.keyless is None:
        raise fail(
            UNTRUSTED_ROOT,
            f"the signature is keyless (a Fulcio certificate); policy {policy.name}"
            " has no fulcio_roots or sigstore_root",
            subject,
        )
    return policy.keyless


def _chain(pem: str | None, subject: Digest) -> list[x509.Certificate]:
    if not pem:
        return []
    try:
        return x509.load_pem_x509_certificates(pem.encode())[:MAX_CHAIN]
    except ValueError as exc:
        raise fail(
            MALFORMED, f"certificate chain annotation is unreadable: {exc}", subject
        ) from exc


def verify_keyless(
    leaf: x509.Certificate,
    untrusted: Sequence[x509.Certificate],
    signed: Signed,
    prove_times: Callable[[x509.Certificate, KeylessTrust, SigningTimes], None],
    policy: TrustPolicy,
    subject: Digest,
) -> tuple[CertIdentity, SigningTimes]:
    """
    The checks shared by both forms, up to (not including) reading the payload.

    *prove_times* adds verified signing times (and checks log bodies). Returns the
    leaf's identity (matched against the policy later, by `_finish`) and the times.
    """
    trust = keyless_trust(policy, subject)
    # Chain first, at the leaf's own start: "not from our Fulcio" beats any later finding.
    authority = verify_chain(leaf, untrusted, trust.authorities, leaf.not_valid_before_utc, subject)
    try:
        key = public_key_of(leaf, "fulcio certificate")
    except ConfigError as exc:
        raise fail(BAD_SIGNATURE, f"the certificate's key cannot verify: {exc}", subject) from exc
    if not signed.verifies(key):
        raise fail(
            BAD_SIGNATURE, "signature does not verify under its Fulcio certificate's key", subject
        )
    times = SigningTimes()
    prove_times(leaf, trust, times)
    if not times.seen:
        raise fail(
            TLOG_INVALID,
            "no verified rekor entry or timestamp proves when the certificate signed",
            subject,
        )
    for at in times.seen:
        authority = verify_chain(leaf, untrusted, trust.authorities, at, subject)
    if trust.ctlog_keys:
        issuer = next(
            (
                c
                for c in (*authority.intermediates, *untrusted, *authority.roots)
                if c.subject == leaf.issuer
            ),
            None,
        )
        if issuer is None:
            raise fail(UNTRUSTED_ROOT, "the certificate's issuer is not in its chain", subject)
        verify_sct(leaf, issuer, trust.ctlog_keys, subject)
    return identity_of(leaf, subject), times


def _finish(
    identity: CertIdentity,
    trust: KeylessTrust,
    times: SigningTimes,
    leaf: x509.Certificate,
    policy: TrustPolicy,
    subject: Digest,
    **extra: Any,
) -> Verified:
    check_identity(identity, trust.identities, policy.name, subject)
    der = leaf.public_bytes(serialization.Encoding.DER)
    return Verified(
        digest=subject,
        policy=policy.name,
        key_fingerprint=hashlib.sha256(der).hexdigest(),
        key_source=str(identity),
        rekor=times.log_index is not None,
        log_index=times.log_index,
        integrated_time=times.integrated_time,
        identity=identity.subject,
        issuer=identity.issuer,
        **extra,
    )


def _as_tlog(exc: VerificationError) -> VerificationError:
    """`drd.trust.rekor` says ``rekor``; keyless entries use issue 15's ``tlog-invalid``."""
    if exc.reason == REKOR:
        exc.reason = TLOG_INVALID
    return exc


# --- the .sig tag form -----------------------------------------------------------------


def verify_cosign_keyless(
    payload: bytes,
    signature_b64: str,
    annotations: dict[str, str],
    subject: Digest,
    policy: TrustPolicy,
) -> Verified:
    """
    Verify one keyless simple-signing layer of a ``.sig`` manifest.

    *annotations* carry the certificate, the optional chain, Rekor bundle and RFC 3161
    timestamp. Raises `VerificationError` (reasons in the module docstring).
    """
    from drd.trust.cosign import BUNDLE_ANNOTATION, read_simple_signing  # cosign imports us

    leaf = load_leaf(annotations[CERTIFICATE_ANNOTATION].encode(), subject)
    signature = decode_b64(signature_b64, "cosign signature", subject)
    payload_sha256 = hashlib.sha256(payload).hexdigest()

    def check_body(body: dict[str, Any], cert: x509.Certificate) -> None:
        check_hashedrekord_cert(body, payload_sha256, signature, cert, subject)

    signed = Signed(signature, lambda key: key.verify(signature, payload), check_body)

    def prove(cert: x509.Certificate, trust: KeylessTrust, times: SigningTimes) -> None:
        if (bundle := annotations.get(BUNDLE_ANNOTATION)) is not None:
            _cosign_set(bundle, signed, cert, policy, subject, times)
        elif policy.require_rekor:
            raise fail(
                TLOG_INVALID, f"policy {policy.name} requires a rekor entry; there is none", subject
            )
        if (stamp := annotations.get(TIMESTAMP_ANNOTATION)) is not None:
            doc = load_json(stamp, "rfc3161 timestamp annotation", subject, TLOG_INVALID)
            token = decode_b64(
                doc.get("SignedRFC3161Timestamp"), "SignedRFC3161Timestamp", subject, TLOG_INVALID
            )
            times.seen.append(verify_timestamp(token, signature, trust, subject))

    untrusted = _chain(annotations.get(CHAIN_ANNOTATION), subject)
    identity, times = verify_keyless(leaf, untrusted, signed, prove, policy, subject)
    reference = read_simple_signing(payload, subject, str(identity))
    trust = keyless_trust(policy, subject)
    return _finish(
        identity, trust, times, leaf, policy, subject, form="cosign", docker_reference=reference
    )


def _cosign_set(
    bundle: str,
    signed: Signed,
    leaf: x509.Certificate,
    policy: TrustPolicy,
    subject: Digest,
    times: SigningTimes,
) -> None:
    try:
        doc = load_json(bundle, "rekor bundle", subject, REKOR)
        set_bytes = decode_b64(
            doc.get("SignedEntryTimestamp"), "SignedEntryTimestamp", subject, REKOR
        )
        entry = verify_set(
            lookup(doc, "Payload.body", str, subject, REKOR),
            lookup(doc, "Payload.integratedTime", int, subject, REKOR),
            lookup(doc, "Payload.logIndex", int, subject, REKOR),
            lookup(doc, "Payload.logID", str, subject, REKOR),
            set_bytes,
            policy,
            subject,
        )
    except VerificationError as exc:
        raise _as_tlog(exc) from None
    signed.check_body(entry.body, leaf)
    times.seen.append(datetime.fromtimestamp(entry.integrated_time, UTC))
    times.log_index, times.integrated_time = entry.log_index, entry.integrated_time


# --- timestamps ------------------------------------------------------------------------


def verify_timestamp(
    token: bytes, signature: bytes, trust: KeylessTrust, subject: Digest
) -> datetime:
    """
    The time an RFC 3161 response from a configured TSA says *signature* existed.

    Raises ``tlog-invalid`` when no configured timestamp authority vouches for it.
    """
    try:
        response = rfc3161_client.decode_timestamp_response(token)
    except ValueError as exc:
        raise fail(TLOG_INVALID, f"rfc3161 timestamp is unreadable: {exc}", subject) from exc
    when = response.tst_info.gen_time
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    for tsa in trust.timestamp_authorities:
        if not tsa.valid_at(when):
            continue
        builder = rfc3161_client.VerifierBuilder()
        for root in tsa.roots:
            builder = builder.add_root_certificate(root)
        for cert in tsa.intermediates:
            builder = builder.add_intermediate_certificate(cert)
        try:
            builder.build().verify_message(response, signature)
        except rfc3161_client.VerificationError:
            continue
        return when
    raise fail(TLOG_INVALID, "rfc3161 timestamp is from no configured timestamp authority", subject)


# --- bundles ---------------------------------------------------------------------------


def bundle_version(media_type: str) -> tuple[int, int]:
    """
    (0, 1) for ``…bundle+json;version=0.1``, (0, 3) for ``…bundle.v0.3+json``.

    An unreadable version counts as (0, 2): the stricter rules (inclusion proof) apply.
    """
    text = media_type.rpartition("version=")[2] if "version=" in media_type else ""
    if not text and ".v" in media_type:
        text = media_type.rpartition(".v")[2].removesuffix("+json")
    major, _, minor = text.partition(".")
    if not (major.isdigit() and minor.isdigit() and len(major) + len(minor) < 8):
        return (0, 2)
    return (int(major), int(minor))


def bundle_certificates(material: dict[str, Any], subject: Digest) -> list[x509.Certificate]:
    """The leaf first, then any chain the bundle carries (v0.1/v0.2 ``x509CertificateChain``)."""
    if "certificate" in material:
        items = [lookup(material, "certificate", dict, subject, MALFORMED)]
    else:
        items = lookup(material, "x509CertificateChain.certificates", list, subject, MALFORMED)
    if not items:
        raise fail(MALFORMED, "sigstore bundle has an empty certificate chain", subject)
    return [
        load_leaf(
            decode_b64(lookup(c, "rawBytes", str, subject, MALFORMED), "certificate", subject),
            subject,
        )
        for c in items[:MAX_CHAIN]
    ]


def verify_keyless_bundle(
    doc: dict[str, Any],
    signed: Signed,
    subject: Digest,
    policy: TrustPolicy,
    **extra: Any,
) -> Verified:
    """
    Verify a certificate-carrying bundle whose signature is described by *signed*.

    v0.2 and later must give every log entry an inclusion proof; v0.1 may rely on
    the SET alone. Raises `VerificationError`.
    """
    material = lookup(doc, "verificationMaterial", dict, subject, MALFORMED)
    version = bundle_version(str(doc.get("mediaType")))
    leaf, *untrusted = bundle_certificates(material, subject)

    def prove(cert: x509.Certificate, trust: KeylessTrust, times: SigningTimes) -> None:
        entries = material.get("tlogEntries") or []
        if not isinstance(entries, list):
            raise fail(TLOG_INVALID, "tlogEntries is not a list", subject)
        if not entries and policy.require_rekor:
            raise fail(
                TLOG_INVALID, f"policy {policy.name} requires a rekor entry; there is none", subject
            )
        failures: list[VerificationError] = []
        for item in entries[:MAX_ENTRIES]:
            try:
                _bundle_entry(item, version, signed, cert, policy, subject, times)
            except VerificationError as exc:
                failures.append(exc)
        if failures:
            raise most_specific(subject, failures, what="rekor entry")
        stamps = material.get("timestampVerificationData") or {}
        if not isinstance(stamps, dict):
            raise fail(TLOG_INVALID, "timestampVerificationData is not an object", subject)
        for stamp in (stamps.get("rfc3161Timestamps") or [])[:MAX_ENTRIES]:
            token = decode_b64(
                lookup(stamp, "signedTimestamp", str, subject, TLOG_INVALID),
                "signedTimestamp",
                subject,
                TLOG_INVALID,
            )
            times.seen.append(verify_timestamp(token, signed.signature, trust, subject))

    identity, times = verify_keyless(leaf, untrusted, signed, prove, policy, subject)
    predicate_type = signed.read()
    trust = keyless_trust(policy, subject)
    return _finish(
        identity,
        trust,
        times,
        leaf,
        policy,
        subject,
        form="sigstore-bundle",
        predicate_type=predicate_type,
        **extra,
    )


def _bundle_entry(
    item: object,
    version: tuple[int, int],
    signed: Signed,
    leaf: x509.Certificate,
    policy: TrustPolicy,
    subject: Digest,
    times: SigningTimes,
) -> None:
    """One ``tlogEntries`` item: its SET and/or inclusion proof, then its body."""
    body_b64 = lookup(item, "canonicalizedBody", str, subject, TLOG_INVALID)
    log_id = decode_b64(
        lookup(item, "logId.keyId", str, subject, TLOG_INVALID), "logId", subject, TLOG_INVALID
    )
    index = _int(lookup(item, "logIndex", str, subject, TLOG_INVALID), subject)
    promise = item.get("inclusionPromise") if isinstance(item, dict) else None
    proof = item.get("inclusionProof") if isinstance(item, dict) else None
    if proof is None and version >= (0, 2):
        raise fail(
            TLOG_INVALID,
            f"bundle v{version[0]}.{version[1]} entry has no inclusion proof (required from v0.2)",
            subject,
        )
    if proof is None and promise is None:
        raise fail(TLOG_INVALID, "rekor entry has neither a promise nor a proof", subject)
    raw_body = decode_b64(body_b64, "rekor body", subject, TLOG_INVALID)
    if proof is not None:
        _verify_proof(proof, raw_body, policy, subject)
        times.log_index = index
    body = load_json(raw_body, "rekor body", subject, TLOG_INVALID)
    if promise is not None:
        integrated = _int(lookup(item, "integratedTime", str, subject, TLOG_INVALID), subject)
        try:
            verify_set(
                body_b64,
                integrated,
                index,
                log_id.hex(),
                decode_b64(
                    lookup(promise, "signedEntryTimestamp", str, subject, TLOG_INVALID),
                    "signedEntryTimestamp",
                    subject,
                    TLOG_INVALID,
                ),
                policy,
                subject,
            )
        except VerificationError as exc:
            raise _as_tlog(exc) from None
        times.seen.append(datetime.fromtimestamp(integrated, UTC))
        times.log_index, times.integrated_time = index, integrated
    signed.check_body(body, leaf)


def _verify_proof(proof: object, body: bytes, policy: TrustPolicy, subject: Digest) -> None:
    """An inclusion proof, and the signed checkpoint that commits to its root."""
    root = decode_b64(
        lookup(proof, "rootHash", str, subject, TLOG_INVALID), "rootHash", subject, TLOG_INVALID
    )
    size = _int(lookup(proof, "treeSize", str, subject, TLOG_INVALID), subject)
    hashes = [
        decode_b64(h, "proof hash", subject, TLOG_INVALID)
        for h in lookup(proof, "hashes", list, subject, TLOG_INVALID)[:64]
    ]
    index = _int(lookup(proof, "logIndex", str, subject, TLOG_INVALID), subject)
    verify_inclusion(body, index, size, hashes, root, subject)
    envelope = lookup(proof, "checkpoint.envelope", str, subject, TLOG_INVALID)
    checkpoint = verify_checkpoint(envelope, policy.rekor_keys, subject)
    if (checkpoint.tree_size, checkpoint.root_hash) != (size, root):
        raise fail(
            TLOG_INVALID,
            "the signed checkpoint is for another tree than the inclusion proof",
            subject,
        )


def _int(text: str, subject: Digest) -> int:
    """Protobuf JSON writes int64 as a decimal string."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise fail(TLOG_INVALID, f"{text[:20]!r} is not a log integer", subject)
    return int(text)
