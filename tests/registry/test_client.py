"""
RegistryClient against a real registry (distribution 2.8): pagination with small pages,
manifests byte for byte, blobs monolithic and chunked, mounts, deletes, referrers.

A `FaultProxy` that injects nothing sits in front where a test counts requests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

import drd.registry.client
from drd.errors import NotFound, RegistryError, SizeMismatch
from drd.oci import mediatype
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest
from drd.registry.client import Limits
from tests.clients import open_client
from tests.faults import Fault, FaultProxy, fault_proxy
from tests.images import (
    RegistryWriter,
    make_image,
    make_index,
    make_multiarch,
    make_referrer,
    pseudo_random,
    push_blob,
    push_image,
    push_index,
    referrers_tag,
)
from tests.servers import LocalRegistry


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    """*data* as an async stream of *size*-byte pieces."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


# ---------------------------------------------------------------------------
# discovery


async def test_every_tag_is_listed_once(
    monkeypatch: pytest.MonkeyPatch, source_registry: LocalRegistry, repo: str
) -> None:
    """
    Every tag arrives exactly once. (distribution 2.8 ignores ``n`` on tag lists and
    sends them all, unsorted, in one page; the catalog below does page.)
    """
    monkeypatch.setattr(drd.registry.client, "PAGE_SIZE", 4)
    image = make_image(repo)
    tags = [f"t{n:02d}" for n in range(11)]
    async with RegistryWriter(source_registry) as writer:
        await writer.push_image(repo, image)
        for tag in tags:
            await writer.push_manifest(repo, tag, image.raw, image.media_type)

    with fault_proxy(source_registry.url) as proxy:
        async with open_client(proxy.url) as client:
            listed = await client.list_tags(repo)

    assert sorted(listed) == tags
    assert len(listed) == len(set(listed))
    assert [page.query for page in proxy.requests("tags_list")] == ["n=4"]


async def test_tag_pages_are_followed_through_link(
    monkeypatch: pytest.MonkeyPatch, source_registry: LocalRegistry, repo: str
) -> None:
    """A registry that pages tags (``Link: <…>; rel="next"``) is read to the last page."""
    monkeypatch.setattr(drd.registry.client, "PAGE_SIZE", 4)
    first = json.dumps({"name": repo, "tags": ["a", "b", "c", "d"]}).encode()
    rest = json.dumps({"name": repo, "tags": ["d", "e", "f"]}).encode()
    link = f'</v2/{repo}/tags/list?n=4&last=d>; rel="next"'
    with fault_proxy(source_registry.url) as proxy:
        proxy.add(Fault.respond(200, rest), kinds="tags_list", path="last=d")
        proxy.add(Fault.respond(200, first, {"Link": link}), kinds="tags_list")
        async with open_client(proxy.url) as client:
            listed = await client.list_tags(repo)

    assert listed == ["a", "b", "c", "d", "e", "f"]
    assert [page.query for page in proxy.requests("tags_list")] == ["n=4", "n=4&last=d"]


async def test_the_catalog_comes_in_pages(
    monkeypatch: pytest.MonkeyPatch, source_registry: LocalRegistry, repo: str
) -> None:
    """The catalog follows Link pages of n entries and lists every repository."""
    monkeypatch.setattr(drd.registry.client, "PAGE_SIZE", 3)
    base = repo.partition("/")[0]
    names = [f"{base}/r{n}" for n in range(5)]
    for name in names:
        await push_image(source_registry, name, make_image(name), "v1")

    with fault_proxy(source_registry.url) as proxy:
        async with open_client(proxy.url) as client:
            catalog = await client.catalog()

    assert set(names) <= set(catalog)
    assert catalog == sorted(catalog)
    assert proxy.calls("catalog") >= 2
    assert all("n=3" in page.query for page in proxy.requests("catalog"))


async def test_an_unknown_repository_has_no_tags(source_registry: LocalRegistry, repo: str) -> None:
    """list_tags of a repository that does not exist is empty, not an error."""
    async with open_client(source_registry) as client:
        assert await client.list_tags(repo) == []


# ---------------------------------------------------------------------------
# manifests


@pytest.mark.parametrize("kind", ["oci-image", "docker-image", "oci-index", "docker-list"])
async def test_manifests_come_back_byte_for_byte(
    kind: str, source_registry: LocalRegistry, repo: str
) -> None:
    """HEAD names digest, type and size; GET by tag and by digest returns the pushed bytes."""
    docker = kind.startswith("docker")
    if kind.endswith("image"):
        pushed = make_image(repo, docker=docker)
        await push_image(source_registry, repo, pushed, "v1")
    else:
        pushed = make_multiarch(repo, docker=docker)  # type: ignore[assignment]
        await push_index(source_registry, repo, pushed, "v1")  # type: ignore[arg-type]

    async with open_client(source_registry) as client:
        head = await client.head_manifest(repo, "v1")
        by_tag = await client.get_manifest(repo, "v1")
        by_digest = await client.get_manifest(repo, pushed.digest)
        assert await client.head_manifest(repo, "missing") is None
        with pytest.raises(NotFound):
            await client.get_manifest(repo, "missing")

    assert head is not None
    assert (head.digest, head.media_type, head.size) == (
        pushed.digest,
        pushed.media_type,
        pushed.size,
    )
    assert by_tag.raw == by_digest.raw == pushed.raw
    assert by_tag.digest == pushed.digest
    assert by_tag.media_type == pushed.media_type


async def test_put_keeps_every_byte_of_a_non_canonical_manifest(
    source_registry: LocalRegistry, repo: str
) -> None:
    """
    Odd spacing, key order and a trailing newline survive a PUT: the registry stores,
    and GET returns, exactly the bytes sent, under the digest of those bytes.
    """
    image = make_image(repo)
    for blob in image.blobs:
        await push_blob(source_registry, repo, blob)
    doc = image.json()
    raw = (
        "{\n  "
        + ",\n  ".join(f'"{k}" :  {json.dumps(v)}' for k, v in reversed(doc.items()))
        + "}\n"
    ).encode()
    manifest = Manifest.parse(raw, mediatype.OCI_MANIFEST)

    async with open_client(source_registry) as client:
        by_digest = await client.put_manifest(repo, str(manifest.digest), manifest)
        by_tag = await client.put_manifest(repo, "odd", manifest)
        back = await client.get_manifest(repo, "odd")

    assert by_digest == by_tag == Digest.of(raw)
    assert back.raw == raw


async def test_a_manifest_with_a_missing_blob_is_refused(
    source_registry: LocalRegistry, repo: str
) -> None:
    """The registry refuses a manifest whose layer it lacks; the error carries its code."""
    image = make_image(repo)
    await push_blob(source_registry, repo, image.config)  # the layer is never pushed
    async with open_client(source_registry) as client:
        with pytest.raises(RegistryError) as caught:
            await client.put_manifest(repo, "v1", Manifest.parse(image.raw, image.media_type))
    assert caught.value.code == "MANIFEST_BLOB_UNKNOWN"
    assert caught.value.status == 400


async def test_delete_removes_the_manifest_and_is_idempotent(
    source_registry: LocalRegistry, repo: str
) -> None:
    """DELETE by digest removes it (and its tags); deleting it again is not an error."""
    image = make_image(repo)
    await push_image(source_registry, repo, image, "v1")
    async with open_client(source_registry) as client:
        await client.delete_manifest(repo, image.digest)
        assert await client.head_manifest(repo, str(image.digest)) is None
        assert await client.head_manifest(repo, "v1") is None
        await client.delete_manifest(repo, image.digest)


# ---------------------------------------------------------------------------
# blobs


async def test_blobs_monolithic_upload_head_get_and_stream(
    source_registry: LocalRegistry, repo: str
) -> None:
    """A blob uploaded in one PUT is there by HEAD, whole by GET, and the same streamed."""
    data = pseudo_random(repo, 300_000)
    digest = Digest.of(data)
    async with open_client(source_registry) as client:
        assert await client.has_blob(repo, digest) is None
        await client.upload_blob_bytes(repo, digest, data)
        assert await client.has_blob(repo, digest) == len(data)
        assert await client.get_blob_bytes(repo, digest, len(data)) == data
        async with client.open_blob(repo, digest) as reader:
            streamed = b"".join([chunk async for chunk in reader.iter_chunked(65536)])
        assert streamed == data
        with pytest.raises(SizeMismatch):
            await client.get_blob_bytes(repo, digest, len(data) - 1)


async def test_an_upload_under_the_wrong_digest_is_refused(
    source_registry: LocalRegistry, repo: str
) -> None:
    """The registry checks the digest of what it received; nothing is stored under it."""
    claimed = Digest.of(b"what it should have been")
    async with open_client(source_registry) as client:
        with pytest.raises(RegistryError) as caught:
            await client.upload_blob_bytes(repo, claimed, b"what it was")
        assert caught.value.code == "DIGEST_INVALID"
        assert await client.has_blob(repo, claimed) is None


async def test_large_blobs_go_up_in_patch_chunks(source_registry: LocalRegistry, repo: str) -> None:
    """
    Above the endpoint's chunk_size a blob is sent as PATCHes of that size, then a PUT;
    whatever sizes the stream comes in, the registry holds exactly the bytes.
    """
    data = pseudo_random(repo, 200 * 1024 + 3)
    digest = Digest.of(data)
    with fault_proxy(source_registry.url) as proxy:
        async with open_client(proxy.url, limits=Limits(chunk_size=8 * 1024)) as client:
            await client.upload_blob_stream(repo, digest, len(data), chunks_of(data, 7000))

    patches = proxy.requests("upload_patch")
    assert len(patches) == -(-len(data) // (8 * 1024))
    assert sum(p.body_size for p in patches) == len(data)
    assert [s.kind for s in proxy.requests()] == [
        "upload_post",
        *["upload_patch"] * len(patches),
        "upload_put",
    ]
    async with RegistryWriter(source_registry) as writer:
        assert await writer.get_blob(repo, digest) == data


async def test_a_cross_repository_mount_shares_a_blob(
    source_registry: LocalRegistry, repo: str
) -> None:
    """A blob in one repository is mounted into another; a mount of a stranger is refused."""
    data = pseudo_random(repo, 10_000)
    digest = Digest.of(data)
    other = repo.replace("/app", "/other")
    await push_blob(source_registry, repo, data)
    with fault_proxy(source_registry.url) as proxy:
        async with open_client(proxy.url) as client:
            assert await client.mount_blob(other, digest, repo) is True
            assert await client.has_blob(other, digest) == len(data)
            stranger = Digest.of(b"nobody has this")
            assert await client.mount_blob(other, stranger, repo) is False
    # The upload session a refused mount opens is cancelled, not left behind.
    assert proxy.calls("upload_delete") == 1


async def test_a_claim_answers_present_mounted_or_opens_the_upload(
    source_registry: LocalRegistry, repo: str
) -> None:
    """One POST: None for a blob already there or mounted; else an upload URL that works."""
    data = pseudo_random(repo, 20_000)
    digest = Digest.of(data)
    other = repo.replace("/app", "/claimed")
    await push_blob(source_registry, repo, data)
    fresh = pseudo_random(repo + "/fresh", 30_000)
    fresh_digest = Digest.of(fresh)
    with fault_proxy(source_registry.url) as proxy:
        async with open_client(proxy.url) as client:
            assert await client.claim_blob(repo, digest, repo) is None
            assert await client.claim_blob(other, digest, repo) is None
            assert await client.has_blob(other, digest) == len(data)
            upload = await client.claim_blob(other, fresh_digest, other)
            assert upload is not None
            assert upload.startswith(proxy.url)
            await client.upload_blob_stream(
                other, fresh_digest, len(fresh), chunks_of(fresh, 7000), upload_url=upload
            )
    # The claim's upload carried the blob: no second POST, no HEAD.
    assert [s.kind for s in proxy.requests()] == [
        "blob_mount",
        "blob_mount",
        "blob_head",
        "blob_mount",
        "upload_put",
    ]
    async with RegistryWriter(source_registry) as writer:
        assert await writer.get_blob(other, fresh_digest) == fresh


# ---------------------------------------------------------------------------
# referrers


async def test_referrers_come_from_the_fallback_tag(
    source_registry: LocalRegistry, repo: str
) -> None:
    """
    distribution 2.8 has no referrers API: the client falls back to the sha256-<hex>
    index, and remembers, so later calls go straight to the tag.
    """
    subject = make_image(repo)
    sbom = make_referrer(subject, "sbom")
    await push_image(source_registry, repo, subject, "v1")
    await push_image(source_registry, repo, sbom)
    fallback = make_index([sbom])
    await push_index(source_registry, repo, fallback, referrers_tag(subject.digest))

    with fault_proxy(source_registry.url) as proxy:
        async with open_client(proxy.url) as client:
            first = await client.referrers(repo, subject.digest)
            second = await client.referrers(repo, subject.digest)
            none = await client.referrers(repo, sbom.digest)

    assert [d.digest for d in first] == [sbom.digest] == [d.digest for d in second]
    assert none == []
    assert proxy.calls("referrers") == 1


async def test_referrers_come_from_the_api_when_there_is_one(
    source_registry: LocalRegistry, repo: str
) -> None:
    """Behind a registry with the OCI 1.1 referrers API, the API answers; no tag is read."""
    subject = make_image(repo)
    sbom = make_referrer(subject, "sbom", artifact_type="application/spdx+json")
    with fault_proxy(source_registry.url, emulate_referrers=True) as proxy:
        await push_image(proxy.url, repo, subject, "v1")
        await push_image(proxy.url, repo, sbom)
        async with open_client(proxy.url) as client:
            found = await client.referrers(repo, subject.digest)

    assert [(d.digest, d.artifact_type) for d in found] == [(sbom.digest, "application/spdx+json")]
    assert proxy.calls("referrers") == 1
    assert not [s for s in proxy.requests("manifest_get") if "sha256-" in s.path]


@pytest.mark.parametrize("emulated", [False, True], ids=["no-referrers-api", "referrers-api"])
async def test_the_referrers_api_is_probed_by_one_call_while_the_others_wait(
    source_registry: LocalRegistry, repo: str, emulated: bool
) -> None:
    """
    Eight concurrent referrers calls on a fresh client: without the API, one request
    learns it is missing and all eight get None; with it (emulated in front of
    distribution), the first call's answer lets the other seven ask at once, one
    request each, and every call gets its subject's (empty) listing.
    """
    images = [make_image(f"{repo}/{i}") for i in range(8)]
    for i, image in enumerate(images):
        await push_image(source_registry, repo, image, f"v{i}")
    with FaultProxy(source_registry.url, emulate_referrers=emulated) as proxy:
        async with open_client(proxy.url) as client:
            found = await asyncio.gather(
                *(client.referrers_by_api(repo, image.digest) for image in images)
            )
        asked = proxy.calls("referrers")
    assert found == ([[]] * 8 if emulated else [None] * 8)
    assert asked == (8 if emulated else 1)
