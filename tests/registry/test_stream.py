"""The checked blob stream: bytes pass unchanged, wrong content never reaches its last chunk."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import AsyncIterator

import pytest

from drd.errors import DigestMismatch, SizeMismatch
from drd.oci.digest import Digest
from drd.registry import stream
from drd.registry.stream import HASH_BATCH, verified_chunks
from tests.images import pseudo_random

KiB = 1024
MiB = 1024 * KiB
CHUNK = 256 * KiB


async def _chunks(data: bytes, size: int = CHUNK) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _consume(chunks: AsyncIterator[bytes], into: list[bytes]) -> None:
    async for chunk in chunks:
        into.append(chunk)


class _Recorder:
    """A sha256 that notes which thread fed it and how far behind the stream it is."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._lock = threading.Lock()
        self.threads: set[int] = set()
        self.hashed = 0

    def update(self, data: bytes) -> None:
        self._hash.update(data)
        with self._lock:
            self.threads.add(threading.get_ident())
            self.hashed += len(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


@pytest.mark.parametrize("size", [0, 1, CHUNK, 3 * HASH_BATCH + 5], ids=str)
async def test_a_stream_passes_through_byte_for_byte(size: int) -> None:
    """Every size, within a batch or across several: the same bytes, in order, none held."""
    data = pseudo_random(f"stream/{size}", size)
    out: list[bytes] = []
    await _consume(verified_chunks(_chunks(data), Digest.of(data), size), out)
    assert b"".join(out) == data


async def test_a_wrong_digest_keeps_the_last_chunk_back_across_batches() -> None:
    """Past several hashing batches, wrong content still stops before its last chunk."""
    data = pseudo_random("stream/wrong", 3 * HASH_BATCH + 5)
    claimed = Digest.of(b"something else")
    out: list[bytes] = []
    with pytest.raises(DigestMismatch, match=f"blob {claimed} hashes to {Digest.of(data)}"):
        await _consume(verified_chunks(_chunks(data), claimed, len(data)), out)
    assert b"".join(out) == data[:-5]


@pytest.mark.parametrize(
    ("declared", "message"),
    [(3 * HASH_BATCH, "is longer than its"), (3 * HASH_BATCH + 10, "bytes, not")],
    ids=["too-long", "too-short"],
)
async def test_a_wrong_size_keeps_the_last_chunk_back(declared: int, message: str) -> None:
    """A stream longer or shorter than declared raises before its last chunk is passed on."""
    data = pseudo_random("stream/size", 3 * HASH_BATCH + 5)
    out: list[bytes] = []
    with pytest.raises(SizeMismatch, match=message):
        await _consume(verified_chunks(_chunks(data), Digest.of(data), declared), out)
    assert len(b"".join(out)) < min(declared, len(data))


async def test_a_large_stream_is_hashed_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    Full batches are hashed in a worker thread, never on the loop's thread, and the hash
    stays within two batches (plus a chunk each) of the bytes passed on.
    """
    data = pseudo_random("stream/thread", 4 * HASH_BATCH + 7)
    recorder = _Recorder()
    monkeypatch.setattr(Digest, "hasher", lambda self: recorder)
    loop_thread = threading.get_ident()
    passed = 0
    behind = []
    async for chunk in verified_chunks(_chunks(data), Digest.of(data), len(data)):
        passed += len(chunk)
        behind.append(passed - recorder.hashed)
    assert passed == len(data)
    assert recorder.hashed == len(data)
    assert recorder.threads - {loop_thread}, "every byte was hashed on the event loop"
    assert max(behind) <= 2 * (HASH_BATCH + CHUNK)


async def test_a_small_blob_is_hashed_on_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below INLINE_HASH a blob costs no thread hop."""
    data = pseudo_random("stream/small", stream.INLINE_HASH - 1)
    recorder = _Recorder()
    monkeypatch.setattr(Digest, "hasher", lambda self: recorder)
    out: list[bytes] = []
    await _consume(verified_chunks(_chunks(data, 4 * KiB), Digest.of(data), len(data)), out)
    assert b"".join(out) == data
    assert recorder.threads == {threading.get_ident()}
