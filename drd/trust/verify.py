"""Fetch an artifact's signatures through a registry client and verify them."""

from __future__ import annotations

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
from drd.trust.bundle import BUNDLE_MEDIA_PREFIX, verify_sigstore_bundle
from drd.trust.cosign import MAX_SIGNATURES, signature_layers, verify_signature_layer
from drd.trust.decode import MAX_PAYLOAD_BYTES, fail
from drd.trust.keys import TrustPolicy
from drd.trust.policy import (
    MALFORMED,
    MISSING_BLOB,
    NO_SIGNATURE,
    PAYLOAD_TOO_LARGE,
    Rejected,
    Verdict,
    Verified,
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
    Verify *digest* in *repository* under *policy*: the ``.sig`` tag, then OCI 1.1 referrers.

    The first signature that verifies wins. Raises `VerificationError` with the
    most specific reason found (``no-signature`` when there is none at all).
    Registry failures other than "not found" (unauthorized, unavailable)
    propagate unchanged: they say nothing about the signature.
    """
    failures: list[VerificationError] = []
    for attempt in (_verify_tag_form, _verify_referrers):
        try:
            return await attempt(client, repository, digest, policy)
        except VerificationError as exc:
            failures.append(exc)
    found = [f for f in failures if f.reason != NO_SIGNATURE]
    if not found:
        raise fail(
            NO_SIGNATURE,
            f"{repository}@{digest} has no signature (no {signature_tag(digest)} tag,"
            " no sigstore bundle referrer)",
            digest,
        )
    raise most_specific(digest, found)


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
            return verify_signature_layer(layer, payload, digest, policy)
        except VerificationError as exc:
            failures.append(exc)
    raise most_specific(digest, failures)


async def _verify_referrers(
    client: SignatureSource, repository: str, digest: Digest, policy: TrustPolicy
) -> Verified:
    try:
        listed = await client.referrers(repository, digest)
    except (NotFound, UnsupportedAPI):
        listed = []
    bundles = [d for d in listed if d.artifact_type.startswith(BUNDLE_MEDIA_PREFIX)]
    if not bundles:
        raise fail(NO_SIGNATURE, f"no sigstore bundle refers to {digest} in {repository}", digest)
    failures: list[VerificationError] = []
    for desc in bundles[:MAX_SIGNATURES]:
        try:
            verified = await _verify_referrer(client, repository, desc, digest, policy)
        except VerificationError as exc:
            failures.append(exc)
            continue
        return replace(verified, signature_digest=desc.digest)
    raise most_specific(digest, failures)


async def _verify_referrer(
    client: SignatureSource,
    repository: str,
    desc: Descriptor,
    digest: Digest,
    policy: TrustPolicy,
) -> Verified:
    try:
        manifest = await client.get_manifest(repository, str(desc.digest))
    except NotFound as exc:
        raise fail(MISSING_BLOB, f"referrer {desc.digest} is listed but not found", digest) from exc
    except (InvalidManifest, IntegrityError) as exc:
        raise fail(MALFORMED, f"referrer {desc.digest} is unusable: {exc}", digest) from exc
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
