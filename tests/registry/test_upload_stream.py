"""Chunked blob uploads stream every PATCH body: the blob arrives whole, memory stays small."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import AsyncIterator

import pytest

from drd.oci.digest import Digest
from drd.registry.client import Limits
from tests.clients import open_client
from tests.images import RegistryWriter, pseudo_random
from tests.servers import LocalRegistry

KiB = 1024
MiB = 1024 * KiB


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _patches(registry: LocalRegistry, repo: str) -> int:
    log = (registry.root.parent / "registry.log").read_text(errors="replace")
    return sum(1 for line in log.splitlines() if f'"PATCH /v2/{repo}/blobs/uploads/' in line)


async def test_a_chunked_upload_arrives_whole_in_patches_of_chunk_size(
    target_registry: LocalRegistry, repo: str
) -> None:
    """
    Above the endpoint's chunk_size a blob goes up in PATCHes of chunk_size bytes, read
    chunks straddling their boundaries, and the registry stores exactly the bytes sent.
    """
    data = pseudo_random(f"{repo}/blob", 3 * MiB // 2 + 3)
    digest = Digest.of(data)

    async with open_client(target_registry, limits=Limits(chunk_size=128 * KiB)) as client:
        await client.upload_blob_stream(repo, digest, len(data), _chunks(data, 100 * KiB))

    async with RegistryWriter(target_registry) as writer:
        assert await writer.get_blob(repo, digest) == data
    assert _patches(target_registry, repo) == 13  # ceil(1.5 MiB + 3 / 128 KiB)


@pytest.mark.parametrize("chunk_size", [2 * MiB, None], ids=["chunked", "monolithic"])
async def test_an_upload_holds_no_body_in_memory(
    target_registry: LocalRegistry, repo: str, chunk_size: int | None
) -> None:
    """
    Python allocations during a 24 MiB upload, in 2 MiB PATCHes or in one streamed PUT,
    stay below one PATCH body: the blob streams, it is never held.
    """
    size, chunk = 24 * MiB, 256 * KiB
    hasher = hashlib.sha256()
    for start in range(0, size, chunk):
        hasher.update(pseudo_random(f"{repo}/{start}", chunk))
    digest = Digest("sha256", hasher.hexdigest())

    async def generated() -> AsyncIterator[bytes]:
        for start in range(0, size, chunk):
            yield pseudo_random(f"{repo}/{start}", chunk)

    async with open_client(target_registry, limits=Limits(chunk_size=chunk_size)) as client:
        tracemalloc.start()
        try:
            await client.upload_blob_stream(repo, digest, size, generated())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

    assert await _size_at(target_registry, repo, digest) == size
    assert peak < 2 * MiB, f"peak {peak} bytes"


async def _size_at(registry: LocalRegistry, repo: str, digest: Digest) -> int | None:
    async with open_client(registry) as client:
        return await client.has_blob(repo, digest)
