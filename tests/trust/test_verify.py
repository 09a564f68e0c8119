"""
verify_artifact against an in-memory signature source.

The fake implements only the three reads `drd.trust.verify.SignatureSource`
names, with the real client's failure vocabulary (NotFound, SizeMismatch,
DigestMismatch, UnsupportedAPI); registry-protocol behaviour is tested with the
real client against real registries elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from drd.errors import (
    DigestMismatch,
    NotFound,
    RegistryUnavailable,
    SizeMismatch,
    UnsupportedAPI,
    VerificationError,
)
from drd.oci import mediatype
from drd.oci.descriptor import Descriptor
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest
from drd.trust.keys import TrustPolicy, load_public_key
from drd.trust.policy import Rejected, Verified
from drd.trust.verify import fingerprint_verifier, judge_artifact, verify_artifact
from tests.layouts import fixture_path
from tests.trust.signing import (
    bundle_referrer,
    cached_key,
    dsse_bundle,
    intoto_statement,
    policy_for,
    sign,
    signature_manifest,
    simple_signing_payload,
)

REPO = "team/app"
IMAGE_MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": mediatype.OCI_MANIFEST,
        "config": {"mediaType": mediatype.OCI_CONFIG, "digest": str(Digest.of(b"{}")), "size": 2},
        "layers": [],
    }
).encode()
IMAGE = Digest.of(IMAGE_MANIFEST)
OTHER_IMAGE = Digest.of(b"another image")


@dataclass
class FakeSource:
    """Manifests by (repository, tag or digest), blobs by digest, referrers by subject."""

    manifests: dict[tuple[str, str], bytes] = field(default_factory=dict)
    blobs: dict[Digest, bytes] = field(default_factory=dict)
    referrer_lists: dict[Digest, list[Descriptor]] = field(default_factory=dict)
    referrers_error: Exception | None = None
    manifest_error: Exception | None = None
    calls: list[tuple[str, str]] = field(default_factory=list)

    def put(self, raw: bytes, blobs: dict[Digest, bytes], tag: str | None = None) -> Digest:
        digest = Digest.of(raw)
        self.manifests[(REPO, str(digest))] = raw
        if tag is not None:
            self.manifests[(REPO, tag)] = raw
        self.blobs.update(blobs)
        return digest

    async def get_manifest(self, repository: str, reference: str) -> Manifest:
        self.calls.append(("manifest", reference))
        if self.manifest_error is not None:
            raise self.manifest_error
        raw = self.manifests.get((repository, reference))
        if raw is None:
            raise NotFound(
                f"manifest {reference} not found", registry="fake", repository=repository
            )
        expected = Digest.parse(reference) if ":" in reference else None
        return Manifest.parse(raw, expected=expected)

    async def get_blob_bytes(self, repository: str, digest: Digest, max_size: int) -> bytes:
        self.calls.append(("blob", str(digest)))
        data = self.blobs.get(digest)
        if data is None:
            raise NotFound(f"blob {digest} not found", registry="fake", repository=repository)
        if len(data) > max_size:
            raise SizeMismatch("blob over the limit", expected=max_size, actual=len(data))
        if not digest.matches(data):
            raise DigestMismatch("blob digest mismatch", expected=str(digest), actual="sha256:…")
        return data

    async def referrers(self, repository: str, digest: Digest) -> list[Descriptor]:
        self.calls.append(("referrers", str(digest)))
        if self.referrers_error is not None:
            raise self.referrers_error
        return list(self.referrer_lists.get(digest, []))

    def blob_fetches(self) -> int:
        return sum(1 for kind, _ in self.calls if kind == "blob")


def _signed(key_index: int = 0, digest: Digest = IMAGE) -> tuple[bytes, str]:
    payload = simple_signing_payload(digest, f"registry.example/{REPO}")
    return payload, sign(payload, cached_key("ecdsa-p256", key_index))


def _sig_tag(digest: Digest = IMAGE) -> str:
    return f"{digest.tag_form}.sig"


POLICY = policy_for(cached_key("ecdsa-p256"))


async def test_tag_form_signature_verifies() -> None:
    """A .sig tag holding a trusted signature of the digest verifies it."""
    source = FakeSource()
    raw, blobs = signature_manifest([_signed()])
    source.put(raw, blobs, tag=_sig_tag())

    verified = await verify_artifact(source, REPO, IMAGE, POLICY)

    assert verified.digest == IMAGE
    assert verified.form == "cosign"
    assert verified.key_fingerprint == POLICY.keys[0].fingerprint
    assert ("manifest", _sig_tag()) in source.calls


async def test_first_good_layer_stops_the_fetching() -> None:
    """With several signatures, blobs are fetched one at a time until one verifies."""
    source = FakeSource()
    raw, blobs = signature_manifest([_signed(), _signed(1), _signed(2)])
    source.put(raw, blobs, tag=_sig_tag())

    await verify_artifact(source, REPO, IMAGE, POLICY)

    assert source.blob_fetches() == 1


async def test_unsigned_artifact_is_no_signature() -> None:
    """No .sig tag and no bundle referrer: reason no-signature, naming where it looked."""
    source = FakeSource()

    with pytest.raises(VerificationError) as exc:
        await verify_artifact(source, REPO, IMAGE, POLICY)

    assert exc.value.reason == "no-signature"
    assert _sig_tag() in exc.value.message
    assert "no sigstore bundle referrer" in exc.value.message


async def test_missing_signature_blob_is_missing_blob() -> None:
    """A .sig manifest whose payload blob is gone is missing-blob."""
    source = FakeSource()
    raw, _ = signature_manifest([_signed()])
    source.put(raw, {}, tag=_sig_tag())

    with pytest.raises(VerificationError) as exc:
        await verify_artifact(source, REPO, IMAGE, POLICY)

    assert exc.value.reason == "missing-blob"


async def test_oversized_layer_is_not_fetched() -> None:
    """A layer declaring more than 1 MiB is payload-too-large and never downloaded."""
    source = FakeSource()
    raw, blobs = signature_manifest([_signed()])
    doc = json.loads(raw)
    doc["layers"][0]["size"] = 5 * 1024 * 1024
    source.put(json.dumps(doc).encode(), blobs, tag=_sig_tag())

    with pytest.raises(VerificationError) as exc:
        await verify_artifact(source, REPO, IMAGE, POLICY)

    assert exc.value.reason == "payload-too-large"
    assert source.blob_fetches() == 0


async def test_blob_larger_than_declared_is_payload_too_large() -> None:
    """A payload blob that turns out over 1 MiB, whatever its descriptor said, is refused."""
    source = FakeSource()
    huge = b"{" + b" " * (2 * 1024 * 1024) + b"}"
    raw, blobs = signature_manifest([(huge, "c2ln")])
    doc = json.loads(raw)
    doc["layers"][0]["size"] = 100
    source.put(json.dumps(doc).encode(), blobs, tag=_sig_tag())

    with pytest.raises(VerificationError) as exc:
        await verify_artifact(source, REPO, IMAGE, POLICY)

    assert exc.value.reason == "payload-too-large"


async def test_corrupt_blob_is_malformed() -> None:
    """A payload blob that does not match its digest is malformed."""
    source = FakeSource()
    raw, blobs = signature_manifest([_signed()])
    source.put(raw, {d: b + b" " for d, b in blobs.items()}, tag=_sig_tag())

    with pytest.raises(VerificationError) as exc:
        await verify_artifact(source, REPO, IMAGE, POLICY)

    assert exc.value.reason == "malformed"
    assert "integrity" in exc.value.message


async def test_signature_of_another_image_is_wrong_digest() -> None:
    """A .sig tag whose only trusted signature names another digest is wrong-digest."""
    source = FakeSource()
    raw, blobs = signature_manifest([_signed(digest=OTHER_IMAGE)])
    source.put(raw, blobs, tag=_sig_tag())

    with pytest.raises(VerificationError) as exc:
        await verify_artifact(source, REPO, IMAGE, POLICY)

    assert exc.value.reason == "wrong-digest"


def _add_bundle_referrer(source: FakeSource, bundle: bytes, subject: Digest = IMAGE) -> Digest:
    raw, blobs = bundle_referrer(mediatype.OCI_MANIFEST, IMAGE_MANIFEST, bundle)
    digest = source.put(raw, blobs)
    desc = Descriptor(
        mediatype.OCI_MANIFEST, digest, len(raw), artifact_type=mediatype.SIGSTORE_BUNDLE_V03
    )
    source.referrer_lists.setdefault(subject, []).append(desc)
    return digest


async def test_sigstore_bundle_referrer_verifies() -> None:
    """Without a .sig tag, an OCI 1.1 referrer holding a trusted bundle verifies the digest."""
    source = FakeSource()
    referrer = _add_bundle_referrer(
        source, dsse_bundle(intoto_statement(IMAGE), cached_key("ecdsa-p256"))
    )

    verified = await verify_artifact(source, REPO, IMAGE, POLICY)

    assert verified.form == "sigstore-bundle"
    assert verified.signature_digest == referrer
    assert verified.key_fingerprint == POLICY.keys[0].fingerprint


async def test_bundle_referrer_rescues_a_failed_tag_form() -> None:
    """A bad .sig tag does not hide a good bundle referrer."""
    source = FakeSource()
    raw, blobs = signature_manifest([_signed(key_index=5)])
    source.put(raw, blobs, tag=_sig_tag())
    _add_bundle_referrer(source, dsse_bundle(intoto_statement(IMAGE), cached_key("ecdsa-p256")))

    verified = await verify_artifact(source, REPO, IMAGE, POLICY)

    assert verified.form == "sigstore-bundle"


async def test_failures_in_both_forms_report_the_most_specific() -> None:
    """A replayed .sig signature and a foreign bundle report wrong-digest, the more specific."""
    source = FakeSource()
    raw, blobs = signature_manifest([_signed(digest=OTHER_IMAGE)])
    source.put(raw, blobs, tag=_sig_tag())
    _add_bundle_referrer(source, dsse_bundle(intoto_statement(IMAGE), cached_key("ed25519")))

    with pytest.raises(VerificationError) as exc:
        await verify_artifact(source, REPO, IMAGE, POLICY)

    assert exc.value.reason == "wrong-digest"
    assert "bad-signature" in exc.value.message


async def test_non_bundle_referrers_are_ignored() -> None:
    """An SBOM referrer is not a signature."""
    source = FakeSource()
    sbom = Descriptor(
        mediatype.OCI_MANIFEST, Digest.of(b"sbom"), 4, artifact_type="application/spdx+json"
    )
    source.referrer_lists[IMAGE] = [sbom]

    with pytest.raises(VerificationError) as exc:
        await verify_artifact(source, REPO, IMAGE, POLICY)

    assert exc.value.reason == "no-signature"
    assert ("manifest", str(sbom.digest)) not in source.calls


async def test_listed_referrer_that_is_gone_is_missing_blob() -> None:
    """A referrer listed for the digest but absent from the registry is missing-blob."""
    source = FakeSource()
    source.referrer_lists[IMAGE] = [
        Descriptor(
            mediatype.OCI_MANIFEST,
            Digest.of(b"gone"),
            4,
            artifact_type=mediatype.SIGSTORE_BUNDLE_V03,
        )
    ]

    with pytest.raises(VerificationError) as exc:
        await verify_artifact(source, REPO, IMAGE, POLICY)

    assert exc.value.reason == "missing-blob"


async def test_registry_without_referrers_api_is_no_signature() -> None:
    """A registry that has no referrers API simply has no bundle referrers."""
    source = FakeSource(referrers_error=UnsupportedAPI("no referrers API", registry="fake"))

    with pytest.raises(VerificationError) as exc:
        await verify_artifact(source, REPO, IMAGE, POLICY)

    assert exc.value.reason == "no-signature"


async def test_unavailable_registry_is_not_a_verification_failure() -> None:
    """A registry outage propagates as itself: it says nothing about the signature."""
    source = FakeSource(manifest_error=RegistryUnavailable("fake answered 503", registry="fake"))

    with pytest.raises(RegistryUnavailable):
        await verify_artifact(source, REPO, IMAGE, POLICY)


async def test_judge_returns_verdicts() -> None:
    """judge_artifact gives Verified for a signed digest, otherwise Rejected with the reason."""
    source = FakeSource()
    raw, blobs = signature_manifest([_signed()])
    source.put(raw, blobs, tag=_sig_tag())

    good = await judge_artifact(source, REPO, IMAGE, POLICY)
    bad = await judge_artifact(source, REPO, OTHER_IMAGE, POLICY)

    assert isinstance(good, Verified)
    assert isinstance(bad, Rejected)
    assert (bad.digest, bad.reason) == (OTHER_IMAGE, "no-signature")


async def test_fingerprint_verifier_returns_the_signing_key() -> None:
    """The runner's verifier answers with the fingerprint of the key that verified."""
    source = FakeSource()
    raw, blobs = signature_manifest([_signed()])
    source.put(raw, blobs, tag=_sig_tag())

    verify = fingerprint_verifier(POLICY)

    assert await verify(source, REPO, IMAGE) == POLICY.keys[0].fingerprint


async def test_real_fixture_signature_verifies_through_the_source() -> None:
    """The fixture's real cosign signature and Rekor bundle verify when served by tag and digest."""
    path = fixture_path("ocmirror-cosign-single")
    source = FakeSource()
    for file in (path / "blobs" / "sha256").iterdir():
        source.blobs[Digest("sha256", file.name)] = file.read_bytes()
    for desc in json.loads((path / "index.json").read_bytes())["manifests"]:
        digest = Digest.parse(desc["digest"])
        tag = desc["annotations"]["org.opencontainers.image.ref.name"]
        source.put(source.blobs[digest], {}, tag=tag)
    image = Digest.parse("sha256:7d27ba1da0f64410102468d138f9ec8f61f2cc23bb58ff4cd63243a4434e3d99")
    policy = TrustPolicy(
        name="fixture",
        keys=(load_public_key((path / "trust" / "cosign.pub").read_bytes(), "cosign.pub"),),
        rekor_keys=(
            load_public_key((path / "trust" / "rekor-public-good.pub").read_bytes(), "rekor.pub"),
        ),
        require_rekor=True,
    )

    verified = await verify_artifact(source, REPO, image, policy)

    assert verified.rekor is True
    assert verified.key_fingerprint.startswith("e8ed5dd0")


async def test_keyless_bundle_referrer_verifies_over_the_manifest_digest() -> None:
    """A certificate bundle referrer (cosign v3's form) verifies with only the digest at hand."""
    from tests.trust.keyless_signing import WORKFLOW, FakeFulcio, KeylessSigner, keyless_policy

    fulcio, log = FakeFulcio.create(), cached_key("ecdsa-p256", 7)
    source = FakeSource()
    referrer = _add_bundle_referrer(
        source, KeylessSigner(fulcio, log).message_bundle(IMAGE_MANIFEST)
    )

    verified = await verify_artifact(source, REPO, IMAGE, keyless_policy(fulcio, log))

    assert (verified.form, verified.identity, verified.signature_digest) == (
        "sigstore-bundle",
        WORKFLOW,
        referrer,
    )
    with pytest.raises(VerificationError) as caught:
        await verify_artifact(source, REPO, IMAGE, POLICY)
    assert caught.value.reason == "untrusted-root"
