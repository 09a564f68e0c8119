"""Fetch an artifact's signatures through a registry client and verify them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Protocol

from drd.errors import (
    IntegrityError,
    InvalidManifest,
    NotFound,
    SizeMismatch,
    UnsupportedAPI,
    VerificationError,
)
from drd.oci.descriptor import Descriptor
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest
from drd.trust.attest import (
    DSSE_MEDIA_TYPE,
    is_signature_predicate,
    missing_attestations,
    names_repository,
    refuse_attestation,
    verify_attestation_layer,
)
from drd.trust.bundle import BUNDLE_MEDIA_PREFIX, verify_sigstore_bundle
from drd.trust.cosign import MAX_SIGNATURES, signature_layers, verify_signature_layer
from drd.trust.decode import MAX_PAYLOAD_BYTES, fail
from drd.trust.keys import TrustPolicy
from drd.trust.notation import SIGNATURE_ARTIFACT_TYPE, envelope_layer, verify_notation
from drd.trust.notation_trust import notation_for
from drd.trust.policy import (
    MALFORMED,
    MISSING_BLOB,
    NO_SIGNATURE,
    PAYLOAD_TOO_LARGE,
    UNTRUSTED_ROOT,
    WRONG_DIGEST,
    WRONG_REFERENCE,
    Rejected,
    Verdict,
    Verified,
    attestation_tag,
    most_specific,
    signature_tag,
)


class SignatureSource(Protocol):
    """The three reads verification needs; `drd.registry.client.RegistryClient` has them."""

    async def get_manifest(self, repository: str, reference: str) -> Manifest: ...

    async def get_blob_bytes(self, repository: str, digest: Digest, max_size: int) -> bytes: ...

    async def referrers(self, repository: str, digest: Digest) -> list[Descriptor]: ...


async def verify_artifact(
    client: SignatureSource, repository: str, digest: Digest, policy: TrustPolicy
) -> Verified:
    """
    Verify *digest* in *repository* under *policy*: the ``.sig`` tag, then OCI 1.1 referrers
    (sigstore bundles and Notation signatures, through the referrers API or its fallback tag).

    The first signature that verifies wins; an attestation is never a signature.
    Then each predicate type the policy requires must be attested under the same
    policy (``missing-attestation`` otherwise). Raises `VerificationError` with the
    most specific reason found (``no-signature`` when there is none at all).
    Registry failures other than "not found" (unauthorized, unavailable)
    propagate unchanged: they say nothing about the signature.
    """
    failures: list[VerificationError] = []
    verified: Verified | None = None
    for attempt in (_verify_tag_form, _verify_referrers):
        try:
            verified = await attempt(client, repository, digest, policy)
            break
        except VerificationError as exc:
            failures.append(exc)
    if verified is None:
        found = [f for f in failures if f.reason != NO_SIGNATURE]
        if not found:
            raise fail(
                NO_SIGNATURE,
                f"{repository}@{digest} has no signature (no {signature_tag(digest)} tag,"
                " no sigstore bundle referrer, no notation signature)",
                digest,
            )
        raise most_specific(digest, found)
    if policy.require_attestations:
        attested = await _verify_attestations(client, repository, digest, policy)
        verified = replace(verified, attestations=attested)
    return verified


async def judge_artifact(
    client: SignatureSource, repository: str, digest: Digest, policy: TrustPolicy
) -> Verdict:
    """`verify_artifact` as a report value: `Verified`, or `Rejected` with the reason."""
    try:
        return await verify_artifact(client, repository, digest, policy)
    except VerificationError as exc:
        return Rejected.from_error(digest, exc)


def fingerprint_verifier(
    policy: TrustPolicy,
) -> Callable[[SignatureSource, str, Digest], Awaitable[str]]:
    """A verifier for the replication runner: the trusted key's fingerprint, or raise."""

    async def verify(client: SignatureSource, repository: str, digest: Digest) -> str:
        verified = await verify_artifact(client, repository, digest, policy)
        return verified.key_fingerprint

    return verify


async def _verify_tag_form(
    client: SignatureSource, repository: str, digest: Digest, policy: TrustPolicy
) -> Verified:
    tag = signature_tag(digest)
    try:
        manifest = await client.get_manifest(repository, tag)
    except NotFound as exc:
        raise fail(NO_SIGNATURE, f"no signature tag {tag} in {repository}", digest) from exc
    except (InvalidManifest, IntegrityError) as exc:
        raise fail(MALFORMED, f"signature manifest {tag} is unusable: {exc}", digest) from exc
    layers = signature_layers(manifest)
    if not layers:
        raise fail(NO_SIGNATURE, f"signature manifest {tag} has no simple-signing layer", digest)
    failures: list[VerificationError] = []
    # One blob at a time, stopping at the first good signature: most .sig manifests
    # hold one layer, and a long one should not cost a fetch per layer when the first verifies.
    for layer in layers:
        try:
            payload = await _fetch(client, repository, layer, digest)
            verified = verify_signature_layer(layer, payload, digest, policy)
            _check_reference(verified, repository, policy)
        except VerificationError as exc:
            failures.append(exc)
        else:
            return verified
    raise most_specific(digest, failures)


def _check_reference(verified: Verified, repository: str, policy: TrustPolicy) -> None:
    """With ``match_reference``, the signed ``docker-reference`` must name *repository*."""
    if policy.match_reference and not names_repository(verified.docker_reference, repository):
        raise fail(
            WRONG_REFERENCE,
            f"signature names {verified.docker_reference[:120]!r}, not repository {repository}",
            verified.digest,
        )


async def _verify_referrers(
    client: SignatureSource, repository: str, digest: Digest, policy: TrustPolicy
) -> Verified:
    try:
        listed = await client.referrers(repository, digest)
    except (NotFound, UnsupportedAPI):
        listed = []
    bundles = [d for d in listed if d.artifact_type.startswith(BUNDLE_MEDIA_PREFIX)]
    notations = [d for d in listed if d.artifact_type == SIGNATURE_ARTIFACT_TYPE]
    if not bundles and not notations:
        raise fail(
            NO_SIGNATURE,
            f"no sigstore bundle or notation signature refers to {digest} in {repository}",
            digest,
        )
    failures: list[VerificationError] = []
    for desc in bundles[:MAX_SIGNATURES]:
        try:
            verified = await _verify_referrer(client, repository, desc, digest, policy)
            if not is_signature_predicate(verified.predicate_type):
                raise refuse_attestation(verified.predicate_type, digest)
        except VerificationError as exc:
            failures.append(exc)
            continue
        return replace(verified, signature_digest=desc.digest)
    if notations:
        subject = await _subject_descriptor(client, repository, digest)
        for desc in notations[:MAX_SIGNATURES]:
            try:
                verified = await _verify_notation_referrer(
                    client, repository, desc, subject, policy
                )
            except VerificationError as exc:
                failures.append(exc)
                continue
            return replace(verified, signature_digest=desc.digest)
    raise most_specific(digest, failures)


async def _subject_descriptor(
    client: SignatureSource, repository: str, digest: Digest
) -> Descriptor:
    """The verified artifact as a descriptor: a Notation payload must name its size and type."""
    try:
        manifest = await client.get_manifest(repository, str(digest))
    except NotFound as exc:
        raise fail(MISSING_BLOB, f"{digest} is not in {repository}", digest) from exc
    except (InvalidManifest, IntegrityError) as exc:
        raise fail(MALFORMED, f"{digest} is unusable: {exc}", digest) from exc
    return manifest.descriptor()


async def verify_notation_referrer(
    client: SignatureSource,
    repository: str,
    desc: Descriptor,
    digest: Digest,
    policy: TrustPolicy,
) -> Verified:
    """
    Verify the Notation signature manifest *desc* as a signature of *digest* under *policy*.

    For a referrers index (the ``sha256-<hex>`` fallback tag) that lists it. Raises
    `VerificationError`; registry outages propagate.
    """
    subject = await _subject_descriptor(client, repository, digest)
    verified = await _verify_notation_referrer(client, repository, desc, subject, policy)
    return replace(verified, signature_digest=desc.digest)


async def _verify_notation_referrer(
    client: SignatureSource,
    repository: str,
    desc: Descriptor,
    subject: Descriptor,
    policy: TrustPolicy,
) -> Verified:
    digest = subject.digest
    trust = notation_for(policy.notation, repository)
    if trust is None:
        raise fail(
            UNTRUSTED_ROOT,
            f"policy {policy.name} has no notation trust store for {repository}",
            digest,
        )
    manifest = await _referrer_manifest(client, repository, desc, digest)
    if manifest.subject is None or manifest.subject.digest != digest:
        raise fail(WRONG_DIGEST, f"notation signature {desc.digest} is not about {digest}", digest)
    layer = envelope_layer(manifest.layers)
    if layer is None:
        raise fail(MALFORMED, f"notation signature {desc.digest} has no envelope layer", digest)
    raw = await _fetch(client, repository, layer, digest)
    now = dt.datetime.now(dt.UTC)
    return verify_notation(raw, layer.media_type, subject, trust, policy.name, now)


async def _referrer_manifest(
    client: SignatureSource, repository: str, desc: Descriptor, digest: Digest
) -> Manifest:
    try:
        return await client.get_manifest(repository, str(desc.digest))
    except NotFound as exc:
        raise fail(MISSING_BLOB, f"referrer {desc.digest} is listed but not found", digest) from exc
    except (InvalidManifest, IntegrityError) as exc:
        raise fail(MALFORMED, f"referrer {desc.digest} is unusable: {exc}", digest) from exc


async def _verify_attestations(
    client: SignatureSource, repository: str, digest: Digest, policy: TrustPolicy
) -> tuple[str, ...]:
    """
    The required predicate types, each attested under *policy*; raise ``missing-attestation``.

    Attestations are read from the cosign ``.att`` tag (DSSE layers) and from
    sigstore bundle referrers whose DSSE statement is not a signature.
    """
    found: list[str] = []
    failures: list[VerificationError] = []
    try:
        manifest: Manifest | None = await client.get_manifest(repository, attestation_tag(digest))
    except NotFound:
        manifest = None
    except (InvalidManifest, IntegrityError) as exc:
        manifest = None
        failures.append(fail(MALFORMED, f"{attestation_tag(digest)} is unusable: {exc}", digest))
    layers = [] if manifest is None or manifest.is_index else list(manifest.layers)
    for layer in [d for d in layers if d.media_type == DSSE_MEDIA_TYPE][:MAX_SIGNATURES]:
        try:
            raw = await _fetch(client, repository, layer, digest)
            found.append(verify_attestation_layer(raw, digest, policy))
        except VerificationError as exc:
            failures.append(exc)
    try:
        listed = await client.referrers(repository, digest)
    except (NotFound, UnsupportedAPI):
        listed = []
    bundles = [d for d in listed if d.artifact_type.startswith(BUNDLE_MEDIA_PREFIX)]
    for desc in bundles[:MAX_SIGNATURES]:
        try:
            verified = await _verify_referrer(client, repository, desc, digest, policy)
        except VerificationError as exc:
            failures.append(exc)
            continue
        if not is_signature_predicate(verified.predicate_type):
            found.append(verified.predicate_type)
    error = missing_attestations(digest, policy.require_attestations, found, failures)
    if error is not None:
        raise error
    return tuple(p for p in policy.require_attestations if p in found)


async def _verify_referrer(
    client: SignatureSource,
    repository: str,
    desc: Descriptor,
    digest: Digest,
    policy: TrustPolicy,
) -> Verified:
    manifest = await _referrer_manifest(client, repository, desc, digest)
    layer = next((d for d in manifest.layers if d.media_type.startswith(BUNDLE_MEDIA_PREFIX)), None)
    if layer is None:
        raise fail(MALFORMED, f"referrer {desc.digest} has no sigstore bundle layer", digest)
    raw = await _fetch(client, repository, layer, digest)
    return verify_sigstore_bundle(raw, digest, policy)


async def _fetch(
    client: SignatureSource, repository: str, layer: Descriptor, subject: Digest
) -> bytes:
    """A signature blob, at most 1 MiB; failures become verification reasons."""
    if layer.size > MAX_PAYLOAD_BYTES:
        raise fail(
            PAYLOAD_TOO_LARGE, f"signature blob {layer.digest} is {layer.size} bytes", subject
        )
    try:
        return await client.get_blob_bytes(repository, layer.digest, max_size=MAX_PAYLOAD_BYTES)
    except NotFound as exc:
        raise fail(
            MISSING_BLOB, f"signature blob {layer.digest} not found in {repository}", subject
        ) from exc
    except SizeMismatch as exc:
        reason = PAYLOAD_TOO_LARGE if exc.actual > MAX_PAYLOAD_BYTES else MALFORMED
        raise fail(reason, f"signature blob {layer.digest}: {exc}", subject) from exc
    except IntegrityError as exc:
        raise fail(
            MALFORMED, f"signature blob {layer.digest} failed its integrity check: {exc}", subject
        ) from exc
