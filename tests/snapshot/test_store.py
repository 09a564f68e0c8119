"""The snapshot stores against a real folder and moto's S3 server: puts, streams, errors."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drd.errors import ConfigError, SnapshotNotFound, StorageError, StorageUnavailable
from drd.retry import RetryPolicy
from drd.store.base import SnapshotStore
from drd.store.dir import DirStore
from drd.store.open import open_store
from drd.store.s3 import S3Options, S3Store
from tests.faults import Fault, fault_proxy
from tests.servers import free_port, s3_client
from tests.snapshot.helpers import StoreConfig, files_under, opened, store_config

MiB = 1024 * 1024


@pytest.fixture(params=["dir", "s3"])
def kind(request: pytest.FixtureRequest) -> str:
    """Each store test runs against a folder and against S3."""
    return str(request.param)


@pytest.fixture
async def store(kind: str, tmp_path: Path, s3_endpoint: str, bucket: str) -> AsyncIterator[Any]:
    """A fresh store of *kind*."""
    async with opened(store_config(kind, tmp_path, s3_endpoint, bucket)) as s:
        yield s


async def chunks_of(data: bytes, size: int = MiB) -> AsyncIterator[bytes]:
    """*data* as an async stream of *size*-byte chunks."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def drain(store: SnapshotStore, key: str) -> bytes:
    """Stream one object to the end."""
    got = bytearray()
    async with store.open_stream(key) as chunks:
        async for chunk in chunks:
            got += chunk
    return bytes(got)


async def keys(store: SnapshotStore, prefix: str = "") -> list[str]:
    """Every key listed under *prefix*."""
    return [o.key async for o in store.list(prefix)]


async def test_create_only_put_leaves_an_existing_object_alone(store: Any) -> None:
    """The first create-only put writes; the second returns False and changes nothing."""
    assert await store.put_bytes("manifests/sha256/aa", b"first", create_only=True)
    assert not await store.put_bytes("manifests/sha256/aa", b"second", create_only=True)
    assert await store.get_bytes("manifests/sha256/aa", max_size=100) == b"first"
    assert await store.put_bytes("snapshots/p/latest.json", b"1")
    assert await store.put_bytes("snapshots/p/latest.json", b"2")
    assert await store.get_bytes("snapshots/p/latest.json", max_size=100) == b"2"


async def test_objects_are_listed_stated_and_deleted(store: Any) -> None:
    """list gives keys under a prefix with sizes; stat and delete act on one key."""
    await store.put_bytes("blobs/sha256/01", b"x" * 10)
    await store.put_bytes("blobs/sha256/02", b"y" * 20)
    await store.put_bytes("manifests/sha256/03", b"z")
    listed = [(o.key, o.size) async for o in store.list("blobs/")]
    assert listed == [("blobs/sha256/01", 10), ("blobs/sha256/02", 20)]
    stat = await store.stat("blobs/sha256/02")
    assert stat is not None
    assert stat.size == 20
    assert abs(stat.modified - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
    await store.delete("blobs/sha256/01")
    await store.delete("blobs/sha256/01")  # deleting twice is fine
    assert await keys(store, "blobs/") == ["blobs/sha256/02"]
    assert await store.stat("blobs/sha256/01") is None


async def test_a_missing_object_is_snapshot_not_found(store: Any) -> None:
    """Reading or streaming an absent key raises SnapshotNotFound naming it."""
    with pytest.raises(SnapshotNotFound, match="manifests/sha256/none"):
        await store.get_bytes("manifests/sha256/none", max_size=10)
    with pytest.raises(SnapshotNotFound):
        await drain(store, "blobs/sha256/none")


async def test_oversized_objects_are_refused(store: Any) -> None:
    """get_bytes stops at max_size instead of reading a huge object into memory."""
    await store.put_bytes("manifests/sha256/big", b"x" * 100)
    with pytest.raises(StorageError, match="over the 10 byte limit"):
        await store.get_bytes("manifests/sha256/big", max_size=10)


async def test_a_stream_round_trips(store: Any) -> None:
    """put_stream then open_stream gives the same bytes back, in chunks."""
    data = hashlib.shake_256(b"stream").digest(3 * MiB + 17)
    assert await store.put_stream("blobs/sha256/s", chunks_of(data), size=len(data))
    got = bytearray()
    async with store.open_stream("blobs/sha256/s") as chunks:
        async for chunk in chunks:
            assert len(chunk) <= 2 * MiB
            got += chunk
    assert bytes(got) == data


async def test_a_failing_stream_commits_nothing(store: Any, kind: str, tmp_path: Path) -> None:
    """When the source stream raises, no object appears and no temporary is listed."""

    async def broken() -> AsyncIterator[bytes]:
        yield b"a" * MiB
        raise ValueError("source broke")

    with pytest.raises(ValueError, match="source broke"):
        await store.put_stream("blobs/sha256/broken", broken(), size=2 * MiB)
    assert await keys(store) == []
    if kind == "dir":
        assert files_under(tmp_path / "store") == []


async def test_keys_cannot_escape_the_store(store: Any) -> None:
    """A key with traversal, empty or hidden segments is refused before any I/O."""
    for key in ["../escape", "/abs", "blobs//x", "blobs/.hidden", "a/./b", "blobs\\x"]:
        with pytest.raises(StorageError, match="refusing store key"):
            await store.put_bytes(key, b"x")
        with pytest.raises(StorageError, match="refusing store key"):
            await store.get_bytes(key, max_size=1)


async def test_directory_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    """A folder store renames its temporary into place; only the object remains."""
    store = DirStore(tmp_path)
    await store.put_bytes("manifests/sha256/ab", b"data", create_only=True)
    await store.put_bytes("snapshots/p/2024/05/01/x.json.gz", b"i", lock=True)
    assert files_under(tmp_path) == ["manifests/sha256/ab", "snapshots/p/2024/05/01/x.json.gz"]
    # A locked object is read-only on disk.
    assert (tmp_path / "snapshots/p/2024/05/01/x.json.gz").stat().st_mode & 0o222 == 0


# --------------------------------------------------------------------------- S3 specifics


class Requests:
    """HTTP requests an aiobotocore client sends, by operation, with their headers."""

    def __init__(self, store: S3Store) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []
        store.client.meta.events.register("before-send.s3", self._record)

    def _record(self, request: Any, **kwargs: Any) -> None:
        op = kwargs.get("event_name", "").rpartition(".")[2]
        headers = {
            k: v.decode() if isinstance(v, bytes) else str(v) for k, v in request.headers.items()
        }
        self.sent.append((op, headers))

    def ops(self) -> list[str]:
        return [op for op, _ in self.sent]


async def test_s3_create_only_puts_send_if_none_match(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    """A content-addressed put carries ``If-None-Match: *``; S3 answers 412 the second time."""
    async with opened(store_config("s3", tmp_path, s3_endpoint, bucket)) as store:
        assert isinstance(store, S3Store)
        seen = Requests(store)
        assert await store.put_bytes("manifests/sha256/cc", b"one", create_only=True)
        assert not await store.put_bytes("manifests/sha256/cc", b"two", create_only=True)
    assert seen.ops() == ["PutObject", "PutObject"]
    assert all(h.get("If-None-Match") == "*" for _, h in seen.sent)
    obj = s3_client(s3_endpoint).get_object(Bucket=bucket, Key="snaps/manifests/sha256/cc")
    assert obj["Body"].read() == b"one"


async def test_s3_large_objects_go_up_in_parts(s3_endpoint: str, bucket: str) -> None:
    """A stream larger than a part becomes a multipart upload, one part in memory at a time."""
    data = hashlib.shake_256(b"multipart").digest(11 * MiB + 5)
    config = StoreConfig(f"s3://{bucket}", s3_endpoint_url=s3_endpoint, s3_region="us-east-1")
    async with open_store(config, RetryPolicy.no_wait()) as base:
        assert isinstance(base, S3Store)
        store = S3Store(base.client, bucket, retry=RetryPolicy.no_wait(), part_size=5 * MiB)
        seen = Requests(store)
        assert await store.put_stream("blobs/sha256/mp", chunks_of(data), size=len(data))
        assert await store.get_bytes("blobs/sha256/mp", max_size=len(data)) == data
    uploads = seen.ops()
    assert uploads[:1] == ["CreateMultipartUpload"]
    assert uploads.count("UploadPart") == 3
    assert "CompleteMultipartUpload" in uploads


async def test_s3_aborts_a_multipart_upload_whose_stream_fails(
    s3_endpoint: str, bucket: str
) -> None:
    """A failed stream aborts its multipart upload: no object, no upload left behind."""

    async def broken() -> AsyncIterator[bytes]:
        yield b"a" * (6 * MiB)
        raise ValueError("source broke")

    config = StoreConfig(f"s3://{bucket}", s3_endpoint_url=s3_endpoint, s3_region="us-east-1")
    async with open_store(config, RetryPolicy.no_wait()) as base:
        assert isinstance(base, S3Store)
        store = S3Store(base.client, bucket, retry=RetryPolicy.no_wait(), part_size=5 * MiB)
        with pytest.raises(ValueError, match="source broke"):
            await store.put_stream("blobs/sha256/ab", broken(), size=12 * MiB)
    client = s3_client(s3_endpoint)
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


async def test_s3_server_side_encryption_is_requested(s3_endpoint: str, bucket: str) -> None:
    """With ``s3_sse``, every object is written with that server-side encryption."""
    config = StoreConfig(
        f"s3://{bucket}", s3_endpoint_url=s3_endpoint, s3_region="us-east-1", s3_sse="AES256"
    )
    async with opened(config) as store:
        await store.put_bytes("manifests/sha256/dd", b"secret")
    head = s3_client(s3_endpoint).head_object(Bucket=bucket, Key="manifests/sha256/dd")
    assert head["ServerSideEncryption"] == "AES256"


async def test_s3_object_lock_protects_content_and_indexes(s3_endpoint: str) -> None:
    """
    With ``s3_object_lock_days``, every create-only put (an index, a manifest, a streamed
    blob, one part or multipart) carries the configured mode and a retention date;
    the ``latest`` pointer, overwritten on each snapshot, does not.
    """
    bucket = "locked-bucket-for-drd"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    config = StoreConfig(
        f"s3://{bucket}",
        s3_endpoint_url=s3_endpoint,
        s3_region="us-east-1",
        s3_object_lock_days=7,
        s3_object_lock_mode="GOVERNANCE",
    )
    big = b"b" * (5 * MiB + 1)
    async with opened(config) as store:
        assert isinstance(store, S3Store)
        store._part_size = 5 * MiB  # force a multipart upload
        await store.put_bytes("snapshots/p/index", b"i", create_only=True, lock=True)
        await store.put_bytes("manifests/sha256/ee", b"m", create_only=True)
        await store.put_stream("blobs/sha256/ff", chunks_of(b"small"), create_only=True)
        await store.put_stream("blobs/sha256/aa", chunks_of(big), create_only=True)
        await store.put_bytes("snapshots/p/latest", b"{}")
        stat = await store.stat("manifests/sha256/ee")
    client = s3_client(s3_endpoint)
    for key in ("snapshots/p/index", "manifests/sha256/ee", "blobs/sha256/ff", "blobs/sha256/aa"):
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ObjectLockMode"] == "GOVERNANCE", key
        until = head["ObjectLockRetainUntilDate"]
        assert dt.timedelta(days=6) < until - dt.datetime.now(dt.UTC) <= dt.timedelta(days=7)
    assert "ObjectLockMode" not in client.head_object(Bucket=bucket, Key="snapshots/p/latest")
    assert stat is not None
    assert stat.retain_until is not None
    assert stat.locked_at(dt.datetime.now(dt.UTC))
    assert not stat.locked_at(stat.retain_until)


async def test_s3_unreachable_is_storage_unavailable() -> None:
    """A closed port is StorageUnavailable after the retry budget (the CLI's exit 69)."""
    config = StoreConfig(
        "s3://bucket", s3_endpoint_url=f"http://127.0.0.1:{free_port()}", s3_region="us-east-1"
    )
    async with opened(config) as store:
        with pytest.raises(StorageUnavailable, match="cannot reach S3"):
            await store.get_bytes("manifests/sha256/ff", max_size=10)


async def test_s3_missing_bucket_is_a_storage_error(s3_endpoint: str) -> None:
    """A bucket that does not exist is named, and not retried."""
    config = StoreConfig(
        "s3://no-such-bucket-drd", s3_endpoint_url=s3_endpoint, s3_region="us-east-1"
    )
    async with opened(config) as store:
        with pytest.raises(StorageError, match="no-such-bucket-drd does not exist") as err:
            await store.put_bytes("manifests/sha256/ff", b"x")
    assert not isinstance(err.value, StorageUnavailable)


def test_s3_options_map_to_put_arguments() -> None:
    """``aws:kms:<key>`` names the KMS key; plain values name the algorithm."""
    assert S3Options(sse="AES256").encryption() == {"ServerSideEncryption": "AES256"}
    assert S3Options(sse="aws:kms:alias/drd").encryption() == {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "alias/drd",
    }


@pytest.mark.parametrize("url", ["ftp://x/y", "file://host/path", "file:relative", "s3:///x"])
async def test_unusable_store_urls_are_config_errors(url: str) -> None:
    """Only ``file:///abs`` and ``s3://bucket[/prefix]`` open."""
    with pytest.raises(ConfigError):
        async with open_store(StoreConfig(url)):
            pass


async def test_s3_throttling_is_retried_then_reported(s3_endpoint: str, bucket: str) -> None:
    """
    One 503 from S3 is retried and the put lands; a store that keeps answering 503 is
    StorageUnavailable after the retry budget, each attempt one request at the proxy.
    """
    with fault_proxy(s3_endpoint, s3=True) as proxy:
        config = StoreConfig(f"s3://{bucket}", s3_endpoint_url=proxy.url, s3_region="us-east-1")
        async with opened(config) as store:
            proxy.add(Fault.http(503), kinds="s3_put", times=1)
            assert await store.put_bytes("manifests/sha256/aa", b"x", create_only=True)
            assert proxy.calls("s3_put") == 2
            proxy.add(Fault.http(503), kinds="s3_get")
            with pytest.raises(StorageUnavailable, match="manifests/sha256/aa"):
                await store.get_bytes("manifests/sha256/aa", max_size=10)
            assert proxy.calls("s3_get") == 2  # RetryPolicy.no_wait(attempts=2)
