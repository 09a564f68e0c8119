"""
Attached tags on a trusted policy, between two real registries: only what the name claims,
only what verifies, only next to its subject.

Each attack pushes content under a cosign-looking or referrers tag beside a signed
``v1`` and checks by digest, by tag and with skopeo that none of it reached the
target, while ``v1`` and its real signature did.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog

from drd.config import load_settings
from drd.errors import VerificationError
from drd.oci import mediatype
from drd.oci.digest import Digest
from drd.oci.referrers import fallback_tag
from drd.resources import verifier_for
from drd.trust.policy import attestation_tag, sbom_tag
from drd.trust.verify import verify_artifact
from tests.clients import open_client
from tests.images import (
    Image,
    RegistryWriter,
    make_image,
    make_index,
    make_referrer,
    push_image,
    push_index,
    signature_tag,
)
from tests.replicate.test_trusted import (
    KEY,
    OTHER,
    push_signature,
    push_signed,
    replicate,
    signed_layer,
    tag_at,
    write_config,
)
from tests.servers import LocalRegistry
from tests.skopeo import SkopeoError, inspect_raw, list_tags
from tests.trust.signing import attestation_manifest, intoto_statement, policy_for


async def push_raw(
    registry: LocalRegistry, repo: str, tag: str, raw: bytes, blobs: dict[Digest, bytes]
) -> Digest:
    """Push *blobs*, then *raw* (an OCI manifest or index) under *tag*; its digest."""
    media_type = json.loads(raw)["mediaType"]
    async with RegistryWriter(registry) as w:
        for data in blobs.values():
            await w.push_blob(repo, data)
        await w.push_manifest(repo, tag, raw, media_type)
    return Digest.of(raw)


async def assert_absent(target: LocalRegistry, repo: str, tag: str, *images: Image) -> None:
    """*tag* is unknown at *target* (to skopeo too), and every manifest and blob of *images*."""
    async with RegistryWriter(target) as w:
        assert tag not in await w.list_tags(repo)
        for image in images:
            assert not await w.manifest_exists(repo, image.digest), image.digest
            for blob in image.blobs:
                assert not await w.blob_exists(repo, blob.digest), blob.digest
    with pytest.raises(SkopeoError) as missing:
        inspect_raw(target, repo, tag)
    assert "manifest unknown" in str(missing.value).lower(), missing.value


# --- item 1: content under cosign-looking tags ------------------------------------------


@pytest.mark.parametrize(
    "suffix",
    [
        pytest.param(".att", id="att"),
        pytest.param(".sbom", id="sbom"),
        pytest.param("", id="bare-referrers-tag"),
        pytest.param(".latest", id="other-suffix"),
    ],
)
async def test_unsigned_image_under_cosign_looking_tag_is_not_copied(
    suffix: str,
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
) -> None:
    """
    An unsigned image pushed as ``sha256-<D>.att`` (or ``.sbom``, bare ``sha256-<D>``,
    ``.latest``) next to a signed ``v1`` with digest D never reaches a trusted target:
    it is not what an attached tag holds (or not an attached name at all), so it is an
    ordinary tag, verified, and rejected as ``no-signature``. ``v1`` and its real
    ``.sig`` still arrive.
    """
    signed = make_image(f"{repo}/signed")
    sig = await push_signed(source_registry, repo, signed, "v1")
    smuggled = make_image(f"{repo}/smuggled", layers=2)
    bad_tag = f"{signed.digest.tag_form}{suffix}"
    await push_image(source_registry, repo, smuggled, bad_tag)
    settings = load_settings(write_config(tmp_path, source_registry, target_registry, repo))

    with structlog.testing.capture_logs() as logs:
        report = await replicate(settings, source_registry, target_registry)

    items = {i.tag: i for i in report.items}
    assert (items[bad_tag].outcome, items[bad_tag].reason) == ("rejected", "no-signature")
    assert items[bad_tag].digest == str(smuggled.digest)
    events = {(e["event"], e.get("tag")) for e in logs}
    assert ("replicate.rejected", bad_tag) in events
    assert (("replicate.not_attached", bad_tag) in events) is (suffix != ".latest")
    await assert_absent(target_registry, repo, bad_tag, smuggled)
    assert (items["v1"].outcome, items["v1"].digest) == ("copied", str(signed.digest))
    assert items[signature_tag(signed.digest)].outcome == "copied"
    assert list_tags(target_registry, repo) == sorted(["v1", signature_tag(signed.digest)])
    assert Digest.of(inspect_raw(target_registry, repo, "v1")) == signed.digest
    assert Digest.of(inspect_raw(target_registry, repo, signature_tag(signed.digest))) == sig


async def test_referrers_tag_listing_an_unsigned_image_is_not_copied(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    A bare ``sha256-<D>`` tag holding an index that lists an unsigned image (not a
    referrer of D) is an ordinary tag, rejected unsigned: neither index nor image arrives.
    """
    signed = make_image(f"{repo}/signed")
    await push_signed(source_registry, repo, signed, "v1")
    smuggled = make_image(f"{repo}/listed")
    await push_image(source_registry, repo, smuggled)
    listing = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatype.OCI_INDEX,
            "manifests": [smuggled.descriptor(with_platform=False)],
        }
    ).encode()
    index = await push_raw(source_registry, repo, fallback_tag(signed.digest), listing, {})
    settings = load_settings(write_config(tmp_path, source_registry, target_registry, repo))

    report = await replicate(settings, source_registry, target_registry)

    items = {i.tag: i for i in report.items}
    bad = items[fallback_tag(signed.digest)]
    assert (bad.outcome, bad.reason, bad.digest) == ("rejected", "no-signature", str(index))
    assert items["v1"].outcome == "copied"
    await assert_absent(target_registry, repo, fallback_tag(signed.digest), smuggled)
    async with RegistryWriter(target_registry) as w:
        assert not await w.manifest_exists(repo, index)


async def test_attached_looking_tag_holding_an_image_is_an_ordinary_tag_without_trust(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    Without ``require_signature`` an image under ``sha256-<D>.att`` is an ordinary tag:
    copied when the tag filters select it, left alone (no item) when they do not.
    """
    signed = make_image(f"{repo}/signed")
    await push_signed(source_registry, repo, signed, "v1")
    image = make_image(f"{repo}/under-att")
    tag = attestation_tag(signed.digest)
    await push_image(source_registry, repo, image, tag)
    config = write_config(tmp_path, source_registry, target_registry, repo, trusted=False)
    config.write_text(config.read_text() + "tags = ['^v']\n")

    filtered = await replicate(load_settings(config), source_registry, target_registry)

    assert filtered.ok, filtered.to_json()
    assert tag not in {i.tag for i in filtered.items}
    async with RegistryWriter(target_registry) as w:
        assert not await w.manifest_exists(repo, image.digest)

    config = write_config(tmp_path, source_registry, target_registry, repo, trusted=False)
    unfiltered = await replicate(load_settings(config), source_registry, target_registry)

    assert unfiltered.ok, unfiltered.to_json()
    [item] = [i for i in unfiltered.items if i.tag == tag]
    assert (item.outcome, item.digest) == ("copied", str(image.digest))
    assert await tag_at(target_registry, repo, tag) == image.digest


async def test_attached_tag_whose_subject_is_in_another_repository_is_not_copied(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    A ``.sig`` for digest D in a repository that does not hold D does not ride on D
    being copied into another repository in the same pass.
    """
    first, second = f"{repo}/a", f"{repo}/b"
    signed = make_image(f"{repo}/signed")
    sig = await push_signed(source_registry, first, signed, "v1")
    await push_signature(
        source_registry, second, signed.digest, [signed_layer(signed.digest, repo)]
    )
    config = write_config(
        tmp_path, source_registry, target_registry, repo, repositories=[first, second]
    )
    # One repository at a time, the one holding D first: D is copied before b is planned.
    config.write_text(config.read_text() + "concurrency = 1\n")
    settings = load_settings(config)

    report = await replicate(settings, source_registry, target_registry)

    assert report.ok, report.to_json()
    assert {(i.repository, i.tag, i.outcome) for i in report.items} == {
        (first, "v1", "copied"),
        (first, signature_tag(signed.digest), "copied"),
    }
    assert await tag_at(target_registry, first, signature_tag(signed.digest)) == sig
    async with RegistryWriter(target_registry) as w:
        assert await w.list_tags(second) == []
        assert not await w.manifest_exists(second, signed.digest)


# --- item 2: a signature at the target is never replaced by one that does not verify -----


@pytest.mark.parametrize("immutable", [False, True], ids=["mutable", "immutable"])
async def test_signature_that_does_not_verify_does_not_replace_a_valid_one(
    immutable: bool,
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
) -> None:
    """
    A ``.sig`` pushed at the source that does not verify (another key) is rejected
    (``bad-signature``, reported, the pass not ok) and the target keeps its valid one;
    a replacement that still holds a valid signature of the digest is copied.
    """
    image = make_image(f"{repo}/signed")
    good = await push_signed(source_registry, repo, image, "v1")
    settings = load_settings(
        write_config(tmp_path, source_registry, target_registry, repo, immutable_tags=immutable)
    )
    first = await replicate(settings, source_registry, target_registry)
    assert first.ok, first.to_json()
    sig_tag = signature_tag(image.digest)
    assert await tag_at(target_registry, repo, sig_tag) == good

    bad, _ = await push_signature(
        source_registry, repo, image.digest, [signed_layer(image.digest, repo, OTHER)]
    )
    with structlog.testing.capture_logs() as logs:
        second = await replicate(settings, source_registry, target_registry)

    assert second.ok, second.to_json()
    [item] = [i for i in second.items if i.tag == sig_tag]
    assert (item.outcome, item.reason, item.digest, item.moved_from) == (
        "rejected",
        "bad-signature",
        str(bad),
        str(good),
    )
    assert second.count("rejected") == 1
    assert [(e["tag"], e["reason"]) for e in logs if e["event"] == "replicate.rejected"] == [
        (sig_tag, "bad-signature")
    ]
    assert await tag_at(target_registry, repo, sig_tag) == good
    assert Digest.of(inspect_raw(target_registry, repo, sig_tag)) == good
    async with RegistryWriter(target_registry) as w:
        assert not await w.manifest_exists(repo, bad)
    async with open_client(target_registry, "target") as dst:
        verified = await verify_artifact(dst, repo, image.digest, policy_for(KEY))
    assert verified.key_fingerprint == KEY.trust_key().fingerprint

    both, _ = await push_signature(
        source_registry,
        repo,
        image.digest,
        [signed_layer(image.digest, repo, OTHER), signed_layer(image.digest, repo)],
    )
    third = await replicate(settings, source_registry, target_registry)

    assert third.ok, third.to_json()
    [item] = [i for i in third.items if i.tag == sig_tag]
    assert (item.outcome, item.digest, item.key) == (
        "copied",
        str(both),
        KEY.trust_key().fingerprint,
    )
    assert await tag_at(target_registry, repo, sig_tag) == both


async def test_attestation_is_copied_only_when_it_verifies(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    A ``.att`` whose DSSE envelope is signed by the trusted key and names the image
    arrives; a replacement signed by another key, or naming another image, is rejected
    and the target keeps the attestation that verifies.
    """
    image = make_image(f"{repo}/attested")
    await push_signed(source_registry, repo, image, "v1")
    att_tag = attestation_tag(image.digest)
    raw, blobs = attestation_manifest(intoto_statement(image.digest), KEY)
    good = await push_raw(source_registry, repo, att_tag, raw, blobs)
    settings = load_settings(write_config(tmp_path, source_registry, target_registry, repo))

    first = await replicate(settings, source_registry, target_registry)

    assert first.ok, first.to_json()
    items = {i.tag: i for i in first.items}
    assert (items[att_tag].outcome, items[att_tag].key) == ("copied", KEY.trust_key().fingerprint)
    assert Digest.of(inspect_raw(target_registry, repo, att_tag)) == good

    for statement, key, reason in [
        (intoto_statement(image.digest), OTHER, "bad-signature"),
        (intoto_statement(Digest.of(b"another image")), KEY, "wrong-digest"),
    ]:
        raw, blobs = attestation_manifest(statement, key)
        bad = await push_raw(source_registry, repo, att_tag, raw, blobs)
        again = await replicate(settings, source_registry, target_registry)
        [item] = [i for i in again.items if i.tag == att_tag]
        assert (item.outcome, item.reason, item.moved_from) == ("rejected", reason, str(good))
        assert await tag_at(target_registry, repo, att_tag) == good
        async with RegistryWriter(target_registry) as w:
            assert not await w.manifest_exists(repo, bad)


async def test_sbom_arrives_only_once_it_is_signed_and_brings_its_signature(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    An unsigned ``.sbom`` is rejected (``no-signature``) and stays away; once the SBOM
    manifest is signed, it arrives with its own ``.sig`` in the same pass.
    """
    image = make_image(f"{repo}/with-sbom")
    await push_signed(source_registry, repo, image, "v1")
    sbom = make_image(f"{repo}/sbom")
    sbom_doc = json.dumps({"spdxVersion": "SPDX-2.3", "name": repo}).encode()
    sbom_raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatype.OCI_MANIFEST,
            "config": sbom.config.descriptor(),
            "layers": [
                {
                    "mediaType": "text/spdx+json",
                    "digest": str(Digest.of(sbom_doc)),
                    "size": len(sbom_doc),
                }
            ],
        }
    ).encode()
    blobs = {sbom.config.digest: sbom.config.data, Digest.of(sbom_doc): sbom_doc}
    sbom_digest = await push_raw(source_registry, repo, sbom_tag(image.digest), sbom_raw, blobs)
    settings = load_settings(write_config(tmp_path, source_registry, target_registry, repo))

    first = await replicate(settings, source_registry, target_registry)

    items = {i.tag: i for i in first.items}
    assert (items[sbom_tag(image.digest)].outcome, items[sbom_tag(image.digest)].reason) == (
        "rejected",
        "no-signature",
    )
    async with RegistryWriter(target_registry) as w:
        assert not await w.manifest_exists(repo, sbom_digest)
        assert not await w.blob_exists(repo, Digest.of(sbom_doc))

    sbom_sig, _ = await push_signature(
        source_registry, repo, sbom_digest, [signed_layer(sbom_digest, repo)]
    )
    second = await replicate(settings, source_registry, target_registry)

    assert second.ok, second.to_json()
    copied = {(i.tag, i.outcome, i.digest) for i in second.items if i.outcome == "copied"}
    assert copied == {
        (sbom_tag(image.digest), "copied", str(sbom_digest)),
        (signature_tag(sbom_digest), "copied", str(sbom_sig)),
    }
    assert await tag_at(target_registry, repo, sbom_tag(image.digest)) == sbom_digest
    assert await tag_at(target_registry, repo, signature_tag(sbom_digest)) == sbom_sig


async def test_referrers_index_arrives_only_when_every_referrer_verifies(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    A referrers index listing an unsigned SBOM referrer of the image is rejected and
    nothing of it arrives; once that referrer is signed, index and referrer arrive.
    """
    image = make_image(f"{repo}/referred")
    await push_signed(source_registry, repo, image, "v1")
    referrer = make_referrer(image, f"{repo}/sbom")
    await push_image(source_registry, repo, referrer)
    listing = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatype.OCI_INDEX,
            "manifests": [referrer.descriptor()],
        }
    ).encode()
    tag = fallback_tag(image.digest)
    index = await push_raw(source_registry, repo, tag, listing, {})
    settings = load_settings(write_config(tmp_path, source_registry, target_registry, repo))

    first = await replicate(settings, source_registry, target_registry)

    [item] = [i for i in first.items if i.tag == tag]
    assert (item.outcome, item.reason) == ("rejected", "no-signature")
    await assert_absent(target_registry, repo, tag, referrer)

    await push_signature(
        source_registry, repo, referrer.digest, [signed_layer(referrer.digest, repo)]
    )
    second = await replicate(settings, source_registry, target_registry)

    assert second.ok, second.to_json()
    assert await tag_at(target_registry, repo, tag) == index
    async with RegistryWriter(target_registry) as w:
        assert await w.manifest_exists(repo, referrer.digest)


# --- item 8: require_children to any depth -------------------------------------------------


async def test_unsigned_platform_image_under_signed_nested_index_is_not_copied(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    With ``require_children``, an outer index (signed) over an inner index (signed) over
    one signed and one unsigned platform image is rejected, naming the unsigned image;
    nothing reaches the target. Once that image is signed, the whole tree arrives with
    every ``.sig`` and verifies there.
    """
    signed = make_image(f"{repo}/amd64", platform="linux/amd64")
    unsigned = make_image(f"{repo}/arm64", platform="linux/arm64")
    inner = make_index([signed, unsigned])
    await push_index(source_registry, repo, inner)
    outer_raw = json.dumps(
        {"schemaVersion": 2, "mediaType": mediatype.OCI_INDEX, "manifests": [inner.descriptor()]}
    ).encode()
    outer = await push_raw(source_registry, repo, "v1", outer_raw, {})
    for digest in (outer, inner.digest, signed.digest):
        await push_signature(source_registry, repo, digest, [signed_layer(digest, repo)])
    settings = load_settings(
        write_config(tmp_path, source_registry, target_registry, repo, require_children=True)
    )

    report = await replicate(settings, source_registry, target_registry)

    [item] = [i for i in report.items if i.tag == "v1"]
    assert (item.outcome, item.reason) == ("rejected", "no-signature")
    assert report.count("copied") == 0, report.to_json()
    async with RegistryWriter(target_registry) as w:
        assert await w.list_tags(repo) == []
        for digest in (outer, inner.digest, signed.digest, unsigned.digest):
            assert not await w.manifest_exists(repo, digest), digest

    await push_signature(
        source_registry, repo, unsigned.digest, [signed_layer(unsigned.digest, repo)]
    )
    again = await replicate(settings, source_registry, target_registry)

    assert again.ok, again.to_json()
    copied = {i.tag for i in again.items if i.outcome == "copied"}
    assert copied == {
        "v1",
        *(signature_tag(d) for d in (outer, inner.digest, signed.digest, unsigned.digest)),
    }
    assert Digest.of(inspect_raw(target_registry, repo, "v1")) == outer
    check = verifier_for(settings, settings.replication[0])
    assert check is not None
    async with open_client(target_registry, "target") as dst:
        assert await check(dst, repo, outer) == KEY.trust_key().fingerprint


async def test_require_children_refuses_an_index_nested_deeper_than_the_cap(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    Ten indexes nested in one another over one image, every one signed: with
    ``require_children`` the walk stops at the cap and the root is rejected as
    ``malformed``, naming the depth; nothing reaches the target.
    """
    image = make_image(f"{repo}/deep", platform="linux/amd64")
    await push_image(source_registry, repo, image)
    await push_signature(source_registry, repo, image.digest, [signed_layer(image.digest, repo)])
    child: dict[str, object] = {
        "mediaType": image.media_type,
        "digest": str(image.digest),
        "size": image.size,
    }
    digests = [image.digest]
    for level in range(10):
        raw = json.dumps(
            {"schemaVersion": 2, "mediaType": mediatype.OCI_INDEX, "manifests": [child]}
        ).encode()
        tag = "v1" if level == 9 else f"level-{level}"
        digest = await push_raw(source_registry, repo, tag, raw, {})
        await push_signature(source_registry, repo, digest, [signed_layer(digest, repo)])
        child = {"mediaType": mediatype.OCI_INDEX, "digest": str(digest), "size": len(raw)}
        digests.append(digest)
    config = write_config(tmp_path, source_registry, target_registry, repo, require_children=True)
    config.write_text(config.read_text() + "tags = ['^v1$']\n")
    settings = load_settings(config)

    report = await replicate(settings, source_registry, target_registry)

    [item] = report.items
    assert (item.tag, item.outcome, item.reason) == ("v1", "rejected", "malformed")
    check = verifier_for(settings, settings.replication[0])
    assert check is not None
    async with open_client(source_registry, "source") as src:
        with pytest.raises(VerificationError, match="nests deeper than 8"):
            await check(src, repo, digests[-1])
    async with RegistryWriter(target_registry) as w:
        assert await w.list_tags(repo) == []
        for digest in digests:
            assert not await w.manifest_exists(repo, digest), digest
