"""
How blobs go up: one streamed PUT by default, PATCHes of the endpoint's chunk_size when
configured, and chunked uploads from the moment a registry refuses a whole blob.

Each runs against a real docker-registry behind the fault proxy, which records what
arrived and, for the fallback, refuses large PUTs as a registry with a body limit does.
"""

from __future__ import annotations

import pytest

from drd.registry.client import FALLBACK_CHUNK_SIZE, Limits
from drd.replicate.runner import run_policy
from drd.retry import RetryPolicy
from tests.clients import open_client, policy_for
from tests.faults import Fault, FaultProxy, fault_proxy
from tests.images import RegistryWriter, make_image, push_image
from tests.servers import LocalRegistry

# No retry beyond the fallback's own restart: a refusal must not be absorbed by backoff.
NO_RETRY = RetryPolicy.no_wait(attempts=1)
KiB = 1024
LAYER = 900 * KiB  # under 1 MiB: the test writer pushes it from memory
REFUSED = 512 * KiB  # the proxy refuses PUTs carrying at least this many bytes


def _uploads(proxy: FaultProxy) -> list[tuple[str, int, int | None]]:
    """(kind, body bytes, status sent) of every upload request, in order."""
    return [
        (s.kind, s.body_size, s.status) for s in proxy.requests() if s.kind.startswith("upload")
    ]


async def _replicate(
    source: LocalRegistry, proxy: FaultProxy, repo: str, limits: Limits
) -> tuple[bool, list[str]]:
    async with open_client(source, "source") as src, open_client(proxy.url, limits=limits) as dst:
        report = await run_policy(policy_for(repo), src, {"target": dst}, NO_RETRY)
    return report.ok, [item.reason for item in report.items if item.reason]


async def _layer_at(target: LocalRegistry, repo: str, image_seed: str, size: int = LAYER) -> bytes:
    image = make_image(image_seed, layer_size=size)
    async with RegistryWriter(target) as reader:
        return await reader.get_blob(repo, image.layers[0].digest)


async def test_a_large_layer_goes_up_in_one_streamed_put_by_default(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """
    With no chunk_size, every blob is one POST then one PUT carrying all its bytes,
    framed as the raw copy frames it: a declared Content-Length, not chunked, no
    ``Expect: 100-continue``, no content coding, so the registry does no extra work.
    """
    image = make_image(repo, layer_size=LAYER)
    await push_image(source_registry, repo, image, "v1")

    with fault_proxy(target_registry.url) as proxy:
        ok, reasons = await _replicate(source_registry, proxy, repo, Limits())

    assert ok, reasons
    uploads = _uploads(proxy)
    assert not [u for u in uploads if u[0] == "upload_patch"]
    puts = sorted(size for kind, size, _ in uploads if kind == "upload_put")
    assert puts == sorted([len(image.layers[0].data), len(image.config.data)])
    for put in proxy.requests("upload_put"):
        headers = {name.lower(): value for name, value in put.headers.items()}
        assert headers["content-length"] == str(put.body_size)
        assert headers["content-type"] == "application/octet-stream"
        assert not {"transfer-encoding", "expect", "content-encoding"} & headers.keys()
    assert await _layer_at(target_registry, repo, repo) == image.layers[0].data


@pytest.mark.parametrize("status", [413, 416])
async def test_a_registry_refusing_a_whole_blob_gets_it_in_patches(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, status: int
) -> None:
    """
    A 413 or 416 to a large PUT switches the target to chunked uploads: the blob is sent
    again in a new session as PATCHes and a closing empty PUT, and arrives byte-exact;
    the refused session is cancelled. Nothing is refused twice (a PUT already under
    way may be refused too).
    """
    image = make_image(repo, layer_size=LAYER)
    second = make_image(f"{repo}/2", layer_size=LAYER)
    await push_image(source_registry, repo, image, "v1")
    await push_image(source_registry, repo, second, "v2")
    limits = Limits(concurrency=1)

    with fault_proxy(target_registry.url) as proxy:
        proxy.add(Fault.http(status), kinds="upload_put", min_body=REFUSED)
        ok, reasons = await _replicate(source_registry, proxy, repo, limits)

    assert ok, reasons
    assert limits.refuses_monolithic
    uploads = _uploads(proxy)
    sizes = [len(image.layers[0].data), len(second.layers[0].data)]
    refused = [(i, u) for i, u in enumerate(uploads) if u[2] == status]
    # A PUT already under way when the first refusal came may be refused too; none twice.
    refused_digests = [s.query for s in proxy.requests() if s.status == status]
    assert refused
    assert len(refused_digests) == len(set(refused_digests)) <= 2
    assert {u[1] for _, u in refused} <= set(sizes)
    for i, _ in refused:
        assert uploads[i + 1 :].count(("upload_delete", 0, 204)) >= 1
    patches = [size for kind, size, _ in uploads if kind == "upload_patch"]
    # Both layers went up as one PATCH each (under the fallback's chunk size).
    assert sorted(patches, reverse=True)[:2] == sorted(sizes, reverse=True), patches
    assert all(size <= FALLBACK_CHUNK_SIZE for size in patches)
    assert await _layer_at(target_registry, repo, repo) == image.layers[0].data
    assert await _layer_at(target_registry, repo, f"{repo}/2") == second.layers[0].data


async def test_a_refusal_with_chunk_size_set_uses_that_size(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """
    A blob under the configured chunk_size goes in one PUT; refused, it and every later
    blob go up in PATCHes of chunk_size.
    """
    chunk = 400 * KiB
    small = make_image(repo, layer_size=300 * KiB)
    large = make_image(f"{repo}/b", layer_size=LAYER)
    await push_image(source_registry, repo, small, "v1")
    limits = Limits(concurrency=1, chunk_size=chunk)

    with fault_proxy(target_registry.url) as proxy:
        proxy.add(Fault.http(413), kinds="upload_put", min_body=256 * KiB)
        ok, reasons = await _replicate(source_registry, proxy, repo, limits)
        assert [u[1] for u in _uploads(proxy) if u[2] == 413] == [len(small.layers[0].data)]
        await push_image(source_registry, repo, large, "v2")
        proxy.clear()
        ok_again, reasons_again = await _replicate(source_registry, proxy, repo, limits)

    assert ok, reasons
    assert ok_again, reasons_again
    patches = [size for kind, size, _ in _uploads(proxy) if kind == "upload_patch"]
    assert not [u for u in _uploads(proxy) if u[0] == "upload_put" and u[1] > 0]
    rest = len(large.layers[0].data) - 2 * chunk
    assert sorted(patches, reverse=True)[:3] == [chunk, chunk, rest], patches
    assert await _layer_at(target_registry, repo, repo, 300 * KiB) == small.layers[0].data
    assert await _layer_at(target_registry, repo, f"{repo}/b") == large.layers[0].data


async def test_a_configured_chunk_size_is_refused_on_a_patch_with_a_clear_error(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """
    A 413 to a PATCH is no fallback case (the chunks are already what was asked for):
    the item fails naming the refusal, and the target holds no tag.
    """
    image = make_image(repo, layer_size=LAYER)
    await push_image(source_registry, repo, image, "v1")

    with fault_proxy(target_registry.url) as proxy:
        proxy.add(Fault.http(413), kinds="upload_patch")
        ok, reasons = await _replicate(source_registry, proxy, repo, Limits(chunk_size=256 * KiB))

    assert not ok
    assert reasons
    assert all("413" in r for r in reasons), reasons
    async with open_client(target_registry) as client:
        assert await client.head_manifest(repo, "v1") is None
