"""
An index committed and read through a real store as a stream: a folder (staged under
``.tmp/``, read-only once committed) and moto's S3 (one part, or a multipart upload),
read back by hash, and refused when the store gives back other bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drd.errors import SnapshotCorrupt, StorageError
from drd.snapshot.catalog import load_snapshot, read_index, write_index
from drd.store.dir import TMP_DIR, DirStore
from drd.store.s3 import S3Store
from tests.snapshot.helpers import CountingStore, opened, store_config
from tests.snapshot.test_encode import large

MiB = 1024 * 1024


async def test_a_folder_index_is_staged_committed_read_only_and_read_back(tmp_path: Path) -> None:
    """The index goes through ``.tmp/``, lands read-only, and loads as the same snapshot."""
    store = DirStore(tmp_path)
    counted = CountingStore(store)
    snap = large(3_000)
    key = await write_index(counted, snap)
    path = tmp_path / key
    assert path.read_bytes() == snap.to_bytes()
    assert path.stat().st_mode & 0o222 == 0
    assert list((tmp_path / TMP_DIR).iterdir()) == []
    assert counted.puts == [key, "snapshots/primary/latest.json"]
    back = await load_snapshot(store, "primary", "latest")
    assert back == snap
    assert back.digest == snap.digest
    with pytest.raises(StorageError, match="already exists"):
        await write_index(store, snap)


async def test_an_s3_index_over_one_part_goes_up_in_parts(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    """An index larger than a part is a multipart upload, and reads back whole."""
    snap = large(50_000)
    data = snap.to_bytes()
    assert len(data) > 5 * MiB
    async with opened(store_config("s3", tmp_path, s3_endpoint, bucket)) as store:
        assert isinstance(store, S3Store)
        store._part_size = 5 * MiB
        puts = store.stats.puts
        key = await write_index(store, snap)
        # create, two parts, complete, the pointer
        assert store.stats.puts - puts == 5
        obj = await store.stat(key)
        assert obj is not None
        assert obj.size == len(data)
        back = await read_index(store, key)
    assert back.digest == snap.digest
    assert hashlib.sha256(back.to_bytes()).digest() == hashlib.sha256(data).digest()


class Flipping:
    """A store that gives back one flipped byte when an index is streamed out of it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @contextlib.asynccontextmanager
    async def open_stream(self, key: str) -> AsyncIterator[AsyncIterator[bytes]]:
        async with self.inner.open_stream(key) as chunks:

            async def flipped() -> AsyncIterator[bytes]:
                first = True
                async for chunk in chunks:
                    if first and key.endswith(".json.gz"):
                        chunk = chunk[:-1] + bytes([chunk[-1] ^ 1])
                    first = False
                    yield chunk

            yield flipped()


async def test_an_index_that_reads_back_otherwise_is_not_committed(tmp_path: Path) -> None:
    """A read-back that differs from what was written fails the commit; latest stays."""
    store = Flipping(DirStore(tmp_path))
    with pytest.raises(SnapshotCorrupt, match="did not read back as written"):
        await write_index(store, large(300))
    assert not (tmp_path / "snapshots/primary/latest.json").exists()
