"""Self-tests of the test infrastructure: local servers, image builders, layout pushers, skopeo."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from drd.oci import mediatype
from drd.oci.digest import Digest
from tests import skopeo
from tests.images import (
    COSIGN_SIGNATURE_ANNOTATION,
    RegistryRequestError,
    RegistryWriter,
    delete_manifest,
    delete_tag,
    get_manifest,
    large_blob_chunks,
    large_blob_digest,
    list_tags,
    make_cosign_signature,
    make_image,
    make_index,
    make_multiarch,
    make_referrer,
    push_image,
    push_index,
    push_large_blob,
    signature_tag,
)
from tests.layouts import CASES, fixture_path, push_layout, read_layout
from tests.servers import LocalRegistry, free_port, make_tls, s3_client, write_htpasswd

# ---------------------------------------------------------------------------
# builders (pure)


def test_same_seed_gives_same_bytes_and_other_seeds_differ() -> None:
    """Images are a function of their seed: equal seeds, equal digests; other seeds, others."""
    assert make_image("a", layers=2).raw == make_image("a", layers=2).raw
    assert make_image("a").digest != make_image("b").digest
    assert make_image("a").layers[0].digest != make_image("b").layers[0].digest


def test_image_config_matches_its_layers() -> None:
    """The config's diff_ids are the digests of the uncompressed layer tars."""
    image = make_image("cfg", layers=3, layer_size=4096, platform="linux/arm64")
    config = json.loads(image.config.data)
    assert [str(b.digest) for b in image.layers] == config["rootfs"]["diff_ids"]
    assert (config["os"], config["architecture"]) == ("linux", "arm64")
    manifest = image.json()
    assert manifest["mediaType"] == mediatype.OCI_MANIFEST
    assert [b.size for b in image.layers] == [d["size"] for d in manifest["layers"]]


def test_docker_images_use_docker_media_types() -> None:
    """A Docker image has schema 2 manifest, config and gzip layer types; its list too."""
    index = make_multiarch("dock", docker=True)
    assert index.media_type == mediatype.DOCKER_LIST
    image = index.images[0]
    assert image.media_type == mediatype.DOCKER_MANIFEST
    assert image.config.media_type == mediatype.DOCKER_CONFIG
    assert image.layers[0].data[:2] == b"\x1f\x8b"
    platforms = [m["platform"]["architecture"] for m in index.json()["manifests"]]
    assert platforms == ["amd64", "arm64"]


def test_index_gives_unplatformed_images_default_platforms() -> None:
    """Images without a platform are listed as linux/amd64, linux/arm64, … in order."""
    index = make_index([make_image("x"), make_image("y")])
    entries = index.json()["manifests"]
    assert [str(i.digest) for i in index.images] == [e["digest"] for e in entries]
    assert [e["platform"]["architecture"] for e in entries] == ["amd64", "arm64"]


def test_large_blob_content_does_not_depend_on_chunk_size() -> None:
    """The seeded large blob has the same bytes and digest whatever the chunking."""
    size = 3 * 1024 * 1024 + 123
    whole = b"".join(large_blob_chunks(size, "big"))
    assert size == len(whole)
    assert whole == b"".join(large_blob_chunks(size, "big", chunk_size=65_537))
    assert Digest.of(whole) == large_blob_digest(size, "big")
    assert large_blob_digest(size, "big") != large_blob_digest(size, "other")


def test_cosign_signature_verifies_over_the_payload_naming_the_subject() -> None:
    """The signature layer's annotation verifies with the public key over the payload."""
    key = ec.generate_private_key(ec.SECP256R1())
    image = make_image("signed")
    sig = make_cosign_signature(image, key, docker_reference="127.0.0.1:1/t/app")
    layer = sig.json()["layers"][0]
    payload = json.loads(sig.layers[0].data)
    assert str(image.digest) == payload["critical"]["image"]["docker-manifest-digest"]
    assert layer["mediaType"] == mediatype.COSIGN_SIMPLESIGNING
    signature = base64.b64decode(layer["annotations"][COSIGN_SIGNATURE_ANNOTATION])
    key.public_key().verify(signature, sig.layers[0].data, ec.ECDSA(hashes.SHA256()))
    assert f"sha256-{image.digest.hex}.sig" == signature_tag(image.digest)


# ---------------------------------------------------------------------------
# the registry


async def test_pushed_image_is_served_byte_for_byte(
    source_registry: LocalRegistry, repo: str
) -> None:
    """Manifest and blobs read back with exactly the pushed bytes, under tag and digest."""
    image = make_image("served", layers=2)
    assert image.digest == await push_image(source_registry, repo, image, "v1")
    raw, content_type = await get_manifest(source_registry, repo, "v1")
    assert image.raw == raw
    assert content_type == mediatype.OCI_MANIFEST
    async with RegistryWriter(source_registry.url) as w:
        assert image.raw == (await w.get_manifest(repo, image.digest))[0]
        for blob in image.blobs:
            assert blob.data == await w.get_blob(repo, blob.digest)
    assert await list_tags(source_registry, repo) == ["v1"]


async def test_docker_index_and_referrer_are_accepted(
    source_registry: LocalRegistry, repo: str
) -> None:
    """distribution 2.8 stores a Docker list and an OCI referrer (subject kept in the bytes)."""
    index = make_multiarch("multi", docker=True)
    assert index.digest == await push_index(source_registry, repo, index, "multi")
    oci_index = make_multiarch("multi-oci", platforms=("linux/amd64", "linux/arm/v7"))
    await push_index(source_registry, repo, oci_index, "multi-oci")
    referrer = make_referrer(oci_index, "sbom")
    await push_image(source_registry, repo, referrer)
    raw, _ = await get_manifest(source_registry, repo, referrer.digest)
    assert str(oci_index.digest) == json.loads(raw)["subject"]["digest"]
    assert index.raw == (await get_manifest(source_registry, repo, "multi"))[0]


async def test_refused_manifest_push_is_reported(source_registry: LocalRegistry, repo: str) -> None:
    """A manifest whose blobs are missing is refused; the error carries status and body."""
    async with RegistryWriter(source_registry) as w:
        with pytest.raises(RegistryRequestError, match=r"(MANIFEST_)?BLOB_UNKNOWN") as err:
            await w.push_manifest(repo, "v1", make_image("nolayers").raw, mediatype.OCI_MANIFEST)
    assert err.value.status == 400


async def test_delete_tag_keeps_manifest_and_delete_manifest_removes_it(
    source_registry: LocalRegistry, repo: str
) -> None:
    """Deleting a tag leaves its manifest by digest; deleting the manifest removes both."""
    image = make_image("deletable")
    await push_image(source_registry, repo, image, "v1")
    await push_image(source_registry, repo, image, "v2")
    await delete_tag(source_registry, repo, "v1")
    assert await list_tags(source_registry, repo) == ["v2"]
    assert image.raw == (await get_manifest(source_registry, repo, image.digest))[0]
    await delete_manifest(source_registry, repo, image.digest)
    async with RegistryWriter(source_registry) as w:
        assert not await w.manifest_exists(repo, image.digest)
        assert not await w.manifest_exists(repo, "v2")


async def test_large_blob_streams_into_the_registry(
    source_registry: LocalRegistry, repo: str
) -> None:
    """A streamed seeded blob is stored under the digest computed independently."""
    size = 5 * 1024 * 1024 + 7
    digest = await push_large_blob(source_registry, repo, size, "stream")
    assert large_blob_digest(size, "stream") == digest
    async with RegistryWriter(source_registry) as w:
        data = await w.get_blob(repo, digest)
    assert size == len(data)
    assert digest.hex == hashlib.sha256(data).hexdigest()


async def test_registry_stops_and_comes_back_with_its_content(
    registry_factory: Callable[..., LocalRegistry], repo: str
) -> None:
    """A stopped registry refuses connections; resumed, it serves the same port and content."""
    registry = registry_factory()
    image = make_image("outage")
    await push_image(registry, repo, image, "v1")
    assert registry.process is not None
    pid = registry.process.pid
    registry.stop()
    assert registry.process.pid is None
    with pytest.raises(aiohttp.ClientConnectionError):
        await get_manifest(registry, repo, "v1")
    registry.resume()
    assert pid != registry.process.pid
    assert image.raw == (await get_manifest(registry, repo, "v1"))[0]
    registry.kill()
    registry.restart()
    assert await list_tags(registry, repo) == ["v1"]


async def test_notifications_reach_the_endpoint_with_their_headers(
    registry_factory: Callable[..., LocalRegistry], repo: str
) -> None:
    """A push is announced to the configured endpoint with the configured Authorization."""
    events: list[dict[str, Any]] = []
    auth_headers: list[str] = []
    tagged = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        auth_headers.append(request.headers.get("Authorization", ""))
        for event in json.loads(await request.read())["events"]:
            events.append(event)
            if event.get("action") == "push" and event["target"].get("tag") == "v1":
                tagged.set()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/webhook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        registry = registry_factory(
            notifications_url=f"http://127.0.0.1:{port}/webhook",
            notification_headers={"Authorization": "Bearer s3cret"},
        )
        image = make_image("notified")
        await push_image(registry, repo, image, "v1")
        async with asyncio.timeout(15):
            await tagged.wait()
    finally:
        await runner.cleanup()
    assert set(auth_headers) == {"Bearer s3cret"}
    pushed = [e for e in events if e["target"].get("tag") == "v1"]
    assert pushed[0]["target"]["digest"] == str(image.digest)
    assert pushed[0]["target"]["repository"] == repo


async def test_htpasswd_registry_requires_credentials(
    registry_factory: Callable[..., LocalRegistry], repo: str, tmp_path: Path
) -> None:
    """Without or with wrong credentials the registry answers 401; with them a push works."""
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "wonderland"})
    registry = registry_factory(htpasswd=htpasswd)
    async with aiohttp.ClientSession() as session, session.get(f"{registry.url}/v2/") as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Basic")
    with pytest.raises(RegistryRequestError) as err:
        await push_image(registry, repo, make_image("x"), auth=("alice", "no"))
    assert err.value.status == 401
    image = make_image("authed")
    await push_image(registry, repo, image, "v1", auth=("alice", "wonderland"))
    assert image.raw == skopeo.inspect_raw(registry, repo, "v1", creds="alice:wonderland")


async def test_tls_registry_requires_the_client_certificate(
    registry_factory: Callable[..., LocalRegistry], repo: str, tmp_path: Path
) -> None:
    """A TLS registry with client CAs serves https to a client cert and refuses others."""
    tls = make_tls(tmp_path / "tls")
    registry = registry_factory(tls=tls, require_client_cert=True)
    assert registry.url.startswith("https://127.0.0.1:")
    image = make_image("tls")
    await push_image(registry, repo, image, "v1")
    assert image.raw == (await get_manifest(registry, repo, "v1"))[0]
    connector = aiohttp.TCPConnector(ssl=tls.client_context(with_client_cert=False))
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"{registry.url}/v2/") as resp:
                await resp.read()


# ---------------------------------------------------------------------------
# S3 and the environment


def test_bucket_is_fresh_and_usable(s3_endpoint: str, bucket: str) -> None:
    """Each test's bucket starts empty and stores objects in moto on loopback."""
    assert s3_endpoint.startswith("http://127.0.0.1:")
    client = s3_client(s3_endpoint)
    assert client.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    client.put_object(Bucket=bucket, Key="a/b", Body=b"hello")
    assert client.get_object(Bucket=bucket, Key="a/b")["Body"].read() == b"hello"


def test_environment_is_isolated(repo: str) -> None:
    """No DRD_* settings, fixed AWS test credentials, an empty docker config folder."""
    assert not [k for k in os.environ if k.startswith("DRD_")]
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
    assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"
    assert list(Path(os.environ["DOCKER_CONFIG"]).iterdir()) == []
    assert repo.startswith("t")
    assert repo.endswith("/app")
    assert len(repo) == len("t") + 12 + len("/app")


# ---------------------------------------------------------------------------
# real-world layouts and skopeo


@pytest.mark.skopeo
@pytest.mark.parametrize("case", CASES)
async def test_layout_pushes_and_reads_back_exactly(
    source_registry: LocalRegistry, repo: str, case: str
) -> None:
    """Every manifest of a real layout is stored; every tag reads back byte for byte."""
    layout = await push_layout(source_registry, repo, case)
    assert layout.tags
    async with RegistryWriter(source_registry) as w:
        for digest, raw in layout.manifests.items():
            served, content_type = await w.get_manifest(repo, digest)
            assert raw == served
            assert layout.media_types[digest] == content_type
        for digest in layout.blobs:
            assert await w.blob_exists(repo, digest)
    for tag, digest in layout.tags.items():
        assert layout.manifests[digest] == skopeo.inspect_raw(source_registry, repo, tag)
    assert sorted(layout.tags) == skopeo.list_tags(source_registry, repo)


@pytest.mark.parametrize(
    ("case", "manifests", "tags"),
    [
        pytest.param("regclient-testrepo", 48, 24, id="regclient"),
        pytest.param("oras-e2e-artifacts", 20, None, id="oras-artifacts"),
        pytest.param("ocmirror-docker-manifest-lists", 7, 2, id="docker-lists"),
        pytest.param("ocmirror-cosign-single", 2, 2, id="cosign"),
    ],
)
def test_layouts_are_read_completely(case: str, manifests: int, tags: int | None) -> None:
    """Every manifest is found, untagged ones too, and each follows what it references."""
    layout = read_layout(fixture_path(case))
    assert manifests == len(layout.manifests)
    if tags is not None:
        assert tags == len(layout.tags)
    position = {d: i for i, d in enumerate(layout.order)}
    for digest in layout.order:
        doc = layout.manifest_json(digest)
        refs = [m["digest"] for m in doc.get("manifests", [])]
        refs += [doc["subject"]["digest"]] if "subject" in doc else []
        for ref in refs:
            if Digest.parse(ref) in position:
                assert position[Digest.parse(ref)] < position[digest]


def test_docker_list_with_wrong_layout_size_is_read_as_its_real_bytes() -> None:
    """The `hello` list's layout descriptor says 743 bytes; the real 741 bytes are used."""
    layout = read_layout(fixture_path("ocmirror-docker-manifest-lists"))
    hello = layout.tags["hello"]
    assert len(layout.manifests[hello]) == 741
    assert layout.media_types[hello] == mediatype.DOCKER_LIST


@pytest.mark.skopeo
async def test_skopeo_copy_preserves_digests(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """skopeo copies a multi-arch index between the local registries without changing bytes."""
    index = make_multiarch("copy")
    await push_index(source_registry, repo, index, "v1")
    skopeo.copy(
        skopeo.image_ref(source_registry, repo, "v1"),
        skopeo.image_ref(target_registry, repo, "v1"),
    )
    assert index.raw == (await get_manifest(target_registry, repo, "v1"))[0]
    for image in index.images:
        assert image.raw == skopeo.inspect_raw(target_registry, repo, image.digest)


@pytest.mark.skopeo
async def test_skopeo_sync_copies_every_tag(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """skopeo sync puts every tag under the destination prefix with the same bytes."""
    first, second = make_image("sync-1"), make_multiarch("sync-2")
    await push_image(source_registry, repo, first, "one")
    await push_index(source_registry, repo, second, "two")
    prefix = repo.split("/")[0] + "-synced"
    skopeo.sync(source_registry, repo, target_registry, prefix)
    synced = f"{prefix}/app"
    assert await list_tags(target_registry, synced) == ["one", "two"]
    assert (await get_manifest(target_registry, synced, "one"))[0] == first.raw
    assert (await get_manifest(target_registry, synced, "two"))[0] == second.raw
