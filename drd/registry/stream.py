"""
The one checked blob stream: content passes through a hasher and a counter, and the
last chunk is held back until the whole stream matches its digest and size, so a
consumer (an upload, a store write, a read-back) never commits wrong content.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

from drd.errors import DigestMismatch, SizeMismatch
from drd.oci.digest import Digest

# Bytes handed to the hashing thread at once. Hashing in a worker thread takes SHA-256
# (0.6 CPU-seconds per GiB) off the event loop, which meanwhile moves the next bytes:
# hashlib releases the GIL for buffers this large. At most two batches (and a read chunk
# each) per stream are alive beyond the socket buffers: one hashing, one filling.
HASH_BATCH = 1024 * 1024
# Smaller remainders are hashed on the loop: a thread hop costs more than they do.
INLINE_HASH = 256 * 1024


async def verified_chunks(
    chunks: AsyncIterator[bytes], digest: Digest, size: int
) -> AsyncIterator[bytes]:
    """
    Pass *chunks* through, hashing and counting them; hold the last chunk back until
    the whole stream checks out, so a consumer never commits wrong content.

    Raises `SizeMismatch` or `DigestMismatch` naming *digest*.
    """
    hasher = digest.hasher()
    hashing = _Hashing(hasher)
    count = 0
    held: bytes | None = None
    async for chunk in chunks:
        if not chunk:
            continue
        count += len(chunk)
        if count > size:
            raise SizeMismatch(
                f"blob {digest} is longer than its {size} bytes",
                expected=size,
                actual=count,
                digest=str(digest),
            )
        await hashing.add(chunk)
        if held is not None:
            yield held
        held = chunk
    if count != size:
        raise SizeMismatch(
            f"blob {digest} is {count} bytes, not {size}",
            expected=size,
            actual=count,
            digest=str(digest),
        )
    await hashing.finish()
    actual = Digest(digest.algorithm, hasher.hexdigest())
    if actual != digest:
        raise DigestMismatch(
            f"blob {digest} hashes to {actual}", expected=str(digest), actual=str(actual)
        )
    if held is not None:
        yield held


class _Hashing:
    """
    Feeds one hasher in order, a batch at a time in a worker thread.

    One batch hashes while the next fills; a full batch waits for the one before it,
    so the hash never falls more than two batches behind the stream.
    """

    def __init__(self, hasher: hashlib._Hash) -> None:
        self._hasher = hasher
        self._batch: list[bytes] = []
        self._batched = 0
        self._running: asyncio.Future[None] | None = None

    async def add(self, chunk: bytes) -> None:
        """Queue *chunk*; hand the batch to the thread once it is full."""
        self._batch.append(chunk)
        self._batched += len(chunk)
        if self._batched >= HASH_BATCH:
            await self._flush()

    async def finish(self) -> None:
        """Hash everything queued; the hasher is complete on return."""
        if self._batched >= INLINE_HASH:
            await self._flush()
        if self._running is not None:
            await self._running
            self._running = None
        _update(self._hasher, self._batch)
        self._batch, self._batched = [], 0

    async def _flush(self) -> None:
        if self._running is not None:
            await self._running
        batch, self._batch, self._batched = self._batch, [], 0
        loop = asyncio.get_running_loop()
        self._running = loop.run_in_executor(None, _update, self._hasher, batch)


def _update(hasher: hashlib._Hash, batch: list[bytes]) -> None:
    for chunk in batch:
        hasher.update(chunk)
