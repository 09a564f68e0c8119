"""
Verify what an attached tag holds, under a trust policy, before a trusted target receives it.

A ``.sig`` must hold a signature of its subject that verifies (one is enough: cosign
appends a layer per signer); a ``.att`` a DSSE attestation of its subject, signed by a
trusted key; a ``.sbom`` carries no signature of its own, so the SBOM manifest itself
must be signed; every referrer a referrers index lists must be a referrer of the
subject and verify: a sigstore bundle or a Notation signature as a signature of the
subject, anything else by its own signature.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from drd.errors import IntegrityError, InvalidManifest, NotFound, VerificationError
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest
from drd.oci.mediatype import SIGSTORE_BUNDLE_V03
from drd.oci.referrers import (
    ATTESTATION,
    DSSE_ENVELOPE,
    NOT_ATTACHED,
    REFERRERS,
    SBOM,
    SIGNATURE,
    AttachedTag,
    claim_mismatch,
)
from drd.trust.bundle import BUNDLE_MEDIA_PREFIX, verify_sigstore_bundle
from drd.trust.cosign import MAX_SIGNATURES, signature_layers, verify_signature_layer
from drd.trust.decode import fail, load_json
from drd.trust.keys import TrustPolicy
from drd.trust.notation import SIGNATURE_ARTIFACT_TYPE
from drd.trust.policy import MALFORMED, MISSING_BLOB, NO_SIGNATURE, most_specific
from drd.trust.verify import SignatureSource, _fetch, verify_notation_referrer

# Verifies a digest by its own signature (the replication verifier): its key's fingerprint.
OwnSignature = Callable[[SignatureSource, str, Digest], Awaitable[str]]


async def verify_attached(
    client: SignatureSource,
    repository: str,
    tag: AttachedTag,
    manifest: Manifest,
    policy: TrustPolicy,
    own_signature: OwnSignature,
) -> str:
    """
    Verify *manifest*, what *tag* holds in *repository*, as its kind requires.

    Returns the fingerprint of a key that verified. Raises `VerificationError`:
    ``not-attached`` when the manifest is not what the tag's name claims, else the most
    specific reason its signatures failed with. Registry outages propagate.
    """
    subject = tag.subject
    if (why := claim_mismatch(tag, manifest)) is not None:
        raise fail(NOT_ATTACHED, why, subject)
    if tag.kind == SIGNATURE:
        return await _signature(client, repository, tag, manifest, policy)
    if tag.kind == ATTESTATION:
        return await _attestation(client, repository, tag, manifest, policy)
    if tag.kind == SBOM:
        return await _own(client, repository, tag, manifest.digest, own_signature)
    assert tag.kind == REFERRERS, tag  # noqa: S101 - parse_attached knows no other kind
    return await _referrers(client, repository, tag, manifest, policy, own_signature)


async def _signature(
    client: SignatureSource,
    repository: str,
    tag: AttachedTag,
    manifest: Manifest,
    policy: TrustPolicy,
) -> str:
    failures: list[VerificationError] = []
    for layer in signature_layers(manifest):
        try:
            payload = await _fetch(client, repository, layer, tag.subject)
            return verify_signature_layer(layer, payload, tag.subject, policy).key_fingerprint
        except VerificationError as exc:
            failures.append(exc)
    raise most_specific(tag.subject, failures)


async def _attestation(
    client: SignatureSource,
    repository: str,
    tag: AttachedTag,
    manifest: Manifest,
    policy: TrustPolicy,
) -> str:
    failures: list[VerificationError] = []
    for layer in [d for d in manifest.layers if d.media_type == DSSE_ENVELOPE][:MAX_SIGNATURES]:
        try:
            envelope = load_json(
                await _fetch(client, repository, layer, tag.subject), "DSSE envelope", tag.subject
            )
            # A cosign .att layer is a bare DSSE envelope: checked as a key-based bundle
            # without log entries, the same code and reasons as an OCI 1.1 attestation.
            bundle = {
                "mediaType": SIGSTORE_BUNDLE_V03,
                "verificationMaterial": {"publicKey": {"hint": ""}},
                "dsseEnvelope": envelope,
            }
            verified = verify_sigstore_bundle(json.dumps(bundle).encode(), tag.subject, policy)
        except VerificationError as exc:
            failures.append(exc)
        else:
            return verified.key_fingerprint
    raise most_specific(tag.subject, failures, what="attestation")


async def _referrers(
    client: SignatureSource,
    repository: str,
    tag: AttachedTag,
    index: Manifest,
    policy: TrustPolicy,
    own_signature: OwnSignature,
) -> str:
    """Every listed referrer must refer to the subject and verify; the first key found."""
    keys: list[str] = []
    for desc in index.manifests:
        try:
            referrer = await client.get_manifest(repository, str(desc.digest))
        except NotFound as exc:
            raise fail(
                MISSING_BLOB, f"{tag} lists {desc.digest}, which is not found", tag.subject
            ) from exc
        except (InvalidManifest, IntegrityError) as exc:
            raise fail(
                MALFORMED, f"{tag} lists an unusable {desc.digest}: {exc}", tag.subject
            ) from exc
        if referrer.is_index or referrer.subject is None or referrer.subject.digest != tag.subject:
            raise fail(
                NOT_ATTACHED,
                f"{tag} lists {desc.digest}, not a referrer of the subject",
                tag.subject,
            )
        bundle = next(
            (d for d in referrer.layers if d.media_type.startswith(BUNDLE_MEDIA_PREFIX)), None
        )
        if bundle is not None:
            raw = await _fetch(client, repository, bundle, tag.subject)
            keys.append(verify_sigstore_bundle(raw, tag.subject, policy).key_fingerprint)
        elif referrer.artifact_type == SIGNATURE_ARTIFACT_TYPE:
            verified = await verify_notation_referrer(client, repository, desc, tag.subject, policy)
            keys.append(verified.key_fingerprint)
        else:
            keys.append(await _own(client, repository, tag, referrer.digest, own_signature))
    if not keys:
        raise fail(NO_SIGNATURE, f"{tag} lists no referrer", tag.subject)
    return keys[0]


async def _own(
    client: SignatureSource,
    repository: str,
    tag: AttachedTag,
    digest: Digest,
    own_signature: OwnSignature,
) -> str:
    try:
        return await own_signature(client, repository, digest)
    except VerificationError as exc:
        raise VerificationError(
            f"{tag}: {digest} is not signed: {exc.message}",
            reason=exc.reason,
            digest=str(tag.subject),
        ) from exc
