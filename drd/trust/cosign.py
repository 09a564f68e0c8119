"""
cosign signatures in the tag form: ``sha256-<hex>.sig`` manifests. Pure.

Each simple-signing layer of a ``.sig`` manifest is one signature: the layer
blob is the signed JSON payload, the layer annotation
``dev.cosignproject.cosign/signature`` the base64 signature over those exact
bytes, and ``dev.sigstore.cosign/bundle`` an optional Rekor bundle. The
signature is checked over the bytes before anything in them is believed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace

from drd.errors import VerificationError
from drd.oci import mediatype
from drd.oci.descriptor import Descriptor
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest
from drd.trust.decode import MAX_PAYLOAD_BYTES, decode_b64, fail, load_json
from drd.trust.keyless import CERTIFICATE_ANNOTATION, verify_cosign_keyless
from drd.trust.keys import TrustKey, TrustPolicy
from drd.trust.policy import (
    BAD_SIGNATURE,
    MALFORMED,
    MISSING_BLOB,
    NO_SIGNATURE,
    PAYLOAD_TOO_LARGE,
    REKOR,
    UNKNOWN_KEY,
    UNTRUSTED_ROOT,
    WRONG_DIGEST,
    WRONG_TYPE,
    Verified,
    most_specific,
)
from drd.trust.rekor import RekorEntry, foreign_signer, verify_cosign_bundle

SIMPLE_SIGNING_TYPE = "cosign container image signature"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
# One layer per `cosign sign` run; more than this on one digest is not a real history.
MAX_SIGNATURES = 100


def verify_simple_signing(
    payload: bytes,
    signature_b64: str,
    subject: Digest,
    policy: TrustPolicy,
    bundle: str | None = None,
) -> Verified:
    """
    Verify one cosign signature of *subject*.

    The signature must verify over the exact *payload* bytes under a policy
    key; only then is the payload read, and it must be a cosign image
    signature naming exactly *subject*. A Rekor *bundle* is checked offline
    when the policy has Rekor keys, and required when it says so.

    Raises `VerificationError` with ``reason`` ``payload-too-large``,
    ``malformed``, ``bad-signature``, ``unknown-key``, ``wrong-type``,
    ``wrong-digest`` or ``rekor``.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise fail(
            PAYLOAD_TOO_LARGE,
            f"signed payload is {len(payload)} bytes, over the {MAX_PAYLOAD_BYTES} byte limit",
            subject,
        )
    signature = decode_b64(signature_b64, "cosign signature", subject)
    signer = next((key for key in policy.keys if key.verify(signature, payload)), None)
    if signer is None:
        raise _no_key_verifies(payload, signature, subject, policy, bundle)
    reference = read_simple_signing(payload, subject, signer.source)
    entry = _rekor_entry(payload, signature, signer, policy, subject, bundle)
    return Verified(
        digest=subject,
        policy=policy.name,
        key_fingerprint=signer.fingerprint,
        key_source=signer.source,
        form="cosign",
        rekor=entry is not None,
        log_index=entry.log_index if entry else None,
        integrated_time=entry.integrated_time if entry else None,
        docker_reference=reference,
    )


def read_simple_signing(payload: bytes, subject: Digest, signer: str) -> str:
    """
    Read a payload whose signature already verified: it must name exactly *subject*.

    Returns the ``docker-reference`` it names (``""`` when none). Raises
    ``malformed``, ``wrong-type`` or ``wrong-digest``.
    """
    doc = load_json(payload, "signed payload", subject)
    critical = doc.get("critical")
    if not isinstance(critical, dict):
        raise fail(MALFORMED, "signed payload has no critical section", subject)
    kind = critical.get("type")
    if not isinstance(kind, str):
        raise fail(MALFORMED, "signed payload has no critical.type", subject)
    if kind != SIMPLE_SIGNING_TYPE:
        raise fail(
            WRONG_TYPE, f"signed payload is a {kind!r}, not a {SIMPLE_SIGNING_TYPE}", subject
        )
    image = critical.get("image")
    named = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    if not isinstance(named, str):
        raise fail(
            MALFORMED, "signed payload has no critical.image.docker-manifest-digest", subject
        )
    # Exact string comparison, as cosign does: the signer named these bytes, not a parse of them.
    if named != str(subject):
        raise fail(
            WRONG_DIGEST, f"signature by {signer} names {named[:80]}, not {subject}", subject
        )
    identity = critical.get("identity")
    reference = identity.get("docker-reference") if isinstance(identity, dict) else None
    return reference if isinstance(reference, str) else ""


def _no_key_verifies(
    payload: bytes, signature: bytes, subject: Digest, policy: TrustPolicy, bundle: str | None
) -> VerificationError:
    digest = hashlib.sha256(payload).hexdigest()
    if bundle is not None and (foreign := foreign_signer(bundle, payload, signature, subject)):
        return fail(
            UNKNOWN_KEY,
            f"payload sha256:{digest} is signed by key {foreign.fingerprint[:16]}…,"
            f" not trusted by policy {policy.name}",
            subject,
        )
    return fail(
        BAD_SIGNATURE,
        f"signature over payload sha256:{digest} verifies under no key of policy {policy.name}",
        subject,
    )


def _rekor_entry(
    payload: bytes,
    signature: bytes,
    signer: TrustKey,
    policy: TrustPolicy,
    subject: Digest,
    bundle: str | None,
) -> RekorEntry | None:
    if bundle is not None and policy.rekor_keys:
        return verify_cosign_bundle(bundle, payload, signature, signer, policy, subject)
    if policy.require_rekor:
        raise fail(
            REKOR, f"policy {policy.name} requires a rekor bundle; the signature has none", subject
        )
    return None


def signature_layers(manifest: Manifest) -> tuple[Descriptor, ...]:
    """The simple-signing layers of a ``.sig`` manifest, at most `MAX_SIGNATURES`."""
    if manifest.is_index:
        return ()
    layers = (d for d in manifest.layers if d.media_type == mediatype.COSIGN_SIMPLESIGNING)
    return tuple(layers)[:MAX_SIGNATURES]


def verify_signature_layer(
    layer: Descriptor, payload: bytes | None, subject: Digest, policy: TrustPolicy
) -> Verified:
    """
    Verify one simple-signing layer whose blob is *payload* (None: not found).

    The blob must be within 1 MiB and hash to the layer's digest; the layer
    must carry its signature annotation. Raises `VerificationError`.
    """
    where = f"signature layer {layer.digest}"
    if layer.media_type != mediatype.COSIGN_SIMPLESIGNING:
        raise fail(MALFORMED, f"{where} is {layer.media_type[:80]!r}, not simple signing", subject)
    if layer.size > MAX_PAYLOAD_BYTES or (payload is not None and len(payload) > MAX_PAYLOAD_BYTES):
        raise fail(
            PAYLOAD_TOO_LARGE, f"{where} is over the {MAX_PAYLOAD_BYTES} byte limit", subject
        )
    if payload is None:
        raise fail(MISSING_BLOB, f"{where}: blob not found", subject)
    if not layer.digest.matches(payload):
        raise fail(MALFORMED, f"{where}: blob does not hash to its digest", subject)
    signature = layer.annotations.get(SIGNATURE_ANNOTATION)
    if not signature:
        raise fail(MALFORMED, f"{where} has no {SIGNATURE_ANNOTATION} annotation", subject)
    keyless_error: VerificationError | None = None
    if CERTIFICATE_ANNOTATION in layer.annotations and policy.keyless is not None:
        try:
            verified = verify_cosign_keyless(
                payload, signature, dict(layer.annotations), subject, policy
            )
            return replace(verified, signature_digest=layer.digest)
        except VerificationError as exc:
            # A certificate may also accompany a key-based signature: the keys decide then.
            if not policy.keys:
                raise
            keyless_error = exc
    try:
        verified = verify_simple_signing(
            payload, signature, subject, policy, layer.annotations.get(BUNDLE_ANNOTATION)
        )
    except VerificationError as exc:
        if keyless_error is not None:
            raise most_specific(subject, [keyless_error, exc]) from None
        if CERTIFICATE_ANNOTATION in layer.annotations and exc.reason == BAD_SIGNATURE:
            # Say why a keyless signature does not count here, not merely "bad".
            raise fail(
                UNTRUSTED_ROOT,
                f"{where} is keyless (a Fulcio certificate) and verifies under no key;"
                f" policy {policy.name} has no fulcio_roots or sigstore_root",
                subject,
            ) from exc
        raise
    return replace(verified, signature_digest=layer.digest)


def verify_signature_manifest(
    sig_manifest: Manifest,
    payloads: Mapping[Digest, bytes],
    subject: Digest,
    policy: TrustPolicy,
) -> Verified:
    """
    Verify a ``.sig`` manifest: the first of its signatures that verifies wins.

    *payloads* maps layer digests to blob bytes (a missing one is reason
    ``missing-blob``). When none verifies, the error carries the most specific
    reason seen, e.g. ``wrong-digest`` for a trusted signature of another image;
    ``no-signature`` when the manifest has no simple-signing layer.
    """
    layers = signature_layers(sig_manifest)
    if not layers:
        raise fail(
            NO_SIGNATURE,
            f"signature manifest {sig_manifest.digest} has no simple-signing layer",
            subject,
        )
    failures: list[VerificationError] = []
    for layer in layers:
        try:
            return verify_signature_layer(layer, payloads.get(layer.digest), subject, policy)
        except VerificationError as exc:
            failures.append(exc)
    raise most_specific(subject, failures)
