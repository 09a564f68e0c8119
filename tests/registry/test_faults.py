"""
RegistryClient under faults injected by a proxy in front of a real registry: what is
retried (429, 5xx, resets, stalls, short bodies), how often, and what is never
retried (content that fails its digest).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from drd.errors import DigestMismatch, RateLimited, RegistryUnavailable
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest
from drd.registry.client import Limits, RegistryClient
from drd.registry.transport import TLSSettings, build_http_client
from drd.retry import RetryPolicy
from tests.clients import open_client
from tests.faults import Fault, fault_proxy
from tests.images import Image, make_image, pseudo_random, push_blob, push_image
from tests.servers import LocalRegistry

RETRY = RetryPolicy.no_wait(attempts=3)


async def test_429_is_retried_then_reported(source_registry: LocalRegistry, repo: str) -> None:
    """A registry that keeps answering 429 yields RateLimited after exactly the attempts."""
    await push_image(source_registry, repo, make_image(repo), "v1")
    with fault_proxy(source_registry.url) as proxy:
        proxy.add(Fault.http(429, retry_after=0), kinds="manifest_head")
        async with open_client(proxy.url, retry=RETRY) as client:
            with pytest.raises(RateLimited) as caught:
                await client.head_manifest(repo, "v1")
    assert caught.value.retry_after == 0
    assert proxy.calls("manifest_head") == 3


@pytest.mark.parametrize(
    "fault",
    [Fault.http(500), Fault.http(502), Fault.http(503), Fault.reset(), Fault.truncate()],
    ids=lambda f: f.name,
)
async def test_a_passing_fault_is_retried_away(
    fault: Fault, source_registry: LocalRegistry, repo: str
) -> None:
    """One 5xx, reset or cut-short body costs one more request, not an error."""
    image = make_image(repo)
    await push_image(source_registry, repo, image, "v1")
    with fault_proxy(source_registry.url) as proxy:
        proxy.add(fault, kinds="manifest_get", times=1)
        async with open_client(proxy.url, retry=RETRY) as client:
            manifest = await client.get_manifest(repo, "v1")
    assert manifest.raw == image.raw
    assert [s.fault for s in proxy.requests("manifest_get")][:2] == [fault.name, ""]


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault.http(503), "answered 503"),
        (Fault.reset(), "Connection reset by peer"),
        (Fault.stall(2.0), r"no answer in time \(timeout\)"),
        (Fault.truncate(), "payload is not completed"),
    ],
    ids=["503", "reset", "stall", "truncate"],
)
async def test_a_lasting_fault_is_unavailable_after_the_attempts(
    fault: Fault, message: str, source_registry: LocalRegistry, repo: str
) -> None:
    """A fault that does not pass ends in RegistryUnavailable saying what happened."""
    data = pseudo_random(repo, 50_000)
    await push_blob(source_registry, repo, data)
    with fault_proxy(source_registry.url) as proxy:
        proxy.add(fault, kinds="blob_get")
        async with build_http_client(TLSSettings(), timeout_s=0.5) as http:
            client = RegistryClient("src", proxy.url, http, RETRY)
            with pytest.raises(RegistryUnavailable, match=message):
                await client.get_blob_bytes(repo, Digest.of(data), len(data))
    assert client.requests == 3
    # aiohttp itself resends a GET once when a kept-alive connection was reset under it.
    assert 3 <= proxy.calls("blob_get") <= 6


async def test_corrupt_content_is_never_retried(source_registry: LocalRegistry, repo: str) -> None:
    """Bytes that fail their digest raise DigestMismatch at once: retrying cannot help."""
    data = pseudo_random(repo, 50_000)
    await push_blob(source_registry, repo, data)
    image = make_image(repo)
    await push_image(source_registry, repo, image, "v1")
    with fault_proxy(source_registry.url) as proxy:
        proxy.add(Fault.corrupt(), kinds=("blob_get", "manifest_get"))
        async with open_client(proxy.url, retry=RETRY) as client:
            with pytest.raises(DigestMismatch, match="hashes to"):
                await client.get_blob_bytes(repo, Digest.of(data), len(data))
            with pytest.raises(DigestMismatch):
                await client.get_manifest(repo, image.digest)  # checked against the digest
            with pytest.raises(DigestMismatch):
                await client.get_manifest(repo, "v1")  # against Docker-Content-Digest
    assert proxy.calls("blob_get") == 1
    assert proxy.calls("manifest_get") == 2


@pytest.mark.parametrize("kind", ["manifest_put", "upload_put"])
async def test_a_registry_reporting_another_digest_is_caught(
    kind: str, target_registry: LocalRegistry, repo: str
) -> None:
    """A PUT answered with a different Docker-Content-Digest raises DigestMismatch."""
    image = make_image(repo)
    with fault_proxy(target_registry.url) as proxy:
        proxy.add(Fault.corrupt(), kinds=kind)
        async with open_client(proxy.url, retry=RETRY) as client:
            with pytest.raises(DigestMismatch, match="stored"):
                await push_through(client, repo, image)
    assert proxy.calls(kind) == 1


async def push_through(client: RegistryClient, repo: str, image: Image) -> None:
    """Blobs then the manifest, with drd's client."""
    for blob in image.blobs:
        await client.upload_blob_bytes(repo, blob.digest, blob.data)
    await client.put_manifest(repo, "v1", Manifest.parse(image.raw, image.media_type))


async def stream(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_a_failed_chunk_cancels_the_upload_session(
    target_registry: LocalRegistry, repo: str
) -> None:
    """
    A PATCH that fails mid-upload is not resent: the session is cancelled (DELETE) and
    the error raised, for the caller to restart the whole transfer.
    """
    data = pseudo_random(repo, 100_000)
    digest = Digest.of(data)
    with fault_proxy(target_registry.url) as proxy:
        proxy.add(Fault.reset(), kinds="upload_patch", skip=2, times=1)
        limits = Limits(chunk_size=8 * 1024)
        async with open_client(proxy.url, retry=RETRY, limits=limits) as client:
            with pytest.raises(RegistryUnavailable):
                await client.upload_blob_stream(repo, digest, len(data), stream(data, 4096))
            assert await client.has_blob(repo, digest) is None
    kinds = [s.kind for s in proxy.requests() if s.kind.startswith("upload")]
    assert kinds == ["upload_post", "upload_patch", "upload_patch", "upload_patch", "upload_delete"]


async def test_invalid_repository_names_in_the_catalog_are_dropped(
    source_registry: LocalRegistry,
) -> None:
    """A catalog listing traversing or malformed names yields only the valid ones."""
    body = json.dumps({"repositories": ["good/app", "../etc", "Bad/Name", "a//b", "ok"]})
    with fault_proxy(source_registry.url) as proxy:
        proxy.add(Fault.respond(200, body.encode(), {"Content-Type": "application/json"}))
        async with open_client(proxy.url, retry=RETRY) as client:
            assert await client.catalog() == ["good/app", "ok"]


async def test_a_registry_without_the_referrers_api_is_remembered(
    source_registry: LocalRegistry, repo: str
) -> None:
    """After one 404 from /referrers, later lookups go straight to the fallback tag."""
    image = make_image(repo)
    await push_image(source_registry, repo, image, "v1")
    with fault_proxy(source_registry.url) as proxy:
        async with open_client(proxy.url, retry=RETRY) as client:
            for _ in range(3):
                assert await client.referrers(repo, image.digest) == []
    assert proxy.calls("referrers") == 1
    assert proxy.calls("manifest_get") == 3
