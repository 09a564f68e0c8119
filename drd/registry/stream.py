"""
The one checked blob stream: content passes through a hasher and a counter, and the
last chunk is held back until the whole stream matches its digest and size, so a
consumer (an upload, a store write, a read-back) never commits wrong content.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from drd.errors import DigestMismatch, SizeMismatch
from drd.oci.digest import Digest


async def verified_chunks(
    chunks: AsyncIterator[bytes], digest: Digest, size: int
) -> AsyncIterator[bytes]:
    """
    Pass *chunks* through, hashing and counting them; hold the last chunk back until
    the whole stream checks out, so a consumer never commits wrong content.

    Raises `SizeMismatch` or `DigestMismatch` naming *digest*.
    """
    hasher = digest.hasher()
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
        hasher.update(chunk)
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
    actual = Digest(digest.algorithm, hasher.hexdigest())
    if actual != digest:
        raise DigestMismatch(
            f"blob {digest} hashes to {actual}", expected=str(digest), actual=str(actual)
        )
    if held is not None:
        yield held
