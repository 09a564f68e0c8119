"""
Snapshot stores: a local directory (the embedded default) and S3 through aiobotocore.

Both hold plain keys (``manifests/sha256/<hex>``, ``snapshots/…``). Content-addressed
puts are create-only: an object already there is left alone. Blob transfers stream;
nothing holds a whole layer in memory (S3 holds one multipart part at a time).

Storage failures are mapped to drd's errors here and nowhere else: a missing object
is `SnapshotNotFound`, throttling, 5xx and connection failures are
`StorageUnavailable` (retried per request), anything else is `StorageError`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import datetime as dt
import fcntl
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

import aiohttp
import structlog

from drd.errors import ConfigError, SnapshotNotFound, StorageError, StorageUnavailable
from drd.retry import RetryPolicy

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

log = structlog.get_logger(__name__)

T = TypeVar("T")

CHUNK = 1024 * 1024
# S3 parts: 5 MiB is S3's floor; 8 MiB keeps part count and memory both small.
PART_SIZE = 8 * 1024 * 1024
MAX_PARTS = 10_000
# A key segment starting with "." is a temporary file of the directory store.
_TMP_PREFIX = "."
# A temporary file younger than this is never cleaned, locked or not (see clean_temporaries).
TMP_MIN_AGE = dt.timedelta(minutes=1)


class StoreSettings(Protocol):
    """The part of ``[snapshots]`` a store needs (``drd.config.Snapshots`` satisfies it)."""

    @property
    def store(self) -> str: ...  # "file:///path", "s3://bucket/prefix" or "oci://endpoint/repo"
    @property
    def s3_endpoint_url(self) -> str | None: ...
    @property
    def s3_region(self) -> str | None: ...
    @property
    def s3_sse(self) -> str | None: ...
    @property
    def s3_object_lock_days(self) -> int | None: ...


@dataclass
class StoreStats:
    """Requests a store made, by kind, and the bytes it moved."""

    puts: int = 0
    gets: int = 0
    heads: int = 0
    lists: int = 0
    deletes: int = 0
    bytes_put: int = 0
    bytes_got: int = 0
    puts_by_prefix: dict[str, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        """Every request (or file operation) made."""
        return self.puts + self.gets + self.heads + self.lists + self.deletes

    def count_put(self, key: str, size: int) -> None:
        """Count one object written under *key*."""
        self.puts += 1
        self.bytes_put += size
        top = key.split("/", 1)[0]
        self.puts_by_prefix[top] = self.puts_by_prefix.get(top, 0) + 1

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "requests": self.requests,
            "puts": self.puts,
            "gets": self.gets,
            "heads": self.heads,
            "lists": self.lists,
            "deletes": self.deletes,
            "bytes_put": self.bytes_put,
            "bytes_got": self.bytes_got,
            "puts_by_prefix": dict(sorted(self.puts_by_prefix.items())),
        }


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object in a store."""

    key: str
    size: int
    modified: dt.datetime


class SnapshotStore(Protocol):
    """
    Where snapshots live. Keys are relative (``manifests/sha256/<hex>``).

    ``create_only`` puts leave an existing object alone and return False; ``lock``
    puts apply the store's retention (S3 Object Lock; a read-only file).
    """

    @property
    def url(self) -> str:
        """Where the store is, for messages: ``file:///…`` or ``s3://bucket/prefix/``."""
        ...

    @property
    def stats(self) -> StoreStats:
        """Requests made and bytes moved so far."""
        ...

    async def put_bytes(
        self, key: str, data: bytes, *, create_only: bool = False, lock: bool = False
    ) -> bool:
        """Write *data* under *key*; False when *create_only* and it existed."""
        ...

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        size: int | None = None,
        create_only: bool = False,
    ) -> bool:
        """Write a stream under *key*; nothing is committed if *chunks* raises."""
        ...

    async def get_bytes(self, key: str, *, max_size: int) -> bytes:
        """The whole object; `SnapshotNotFound` when absent, `StorageError` past *max_size*."""
        ...

    def open_stream(self, key: str) -> contextlib.AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Stream one object in chunks; `SnapshotNotFound` when absent."""
        ...

    async def stat(self, key: str) -> StoredObject | None:
        """The object's size and time, or None when absent."""
        ...

    def list(self, prefix: str) -> AsyncIterator[StoredObject]:
        """Every committed object whose key starts with *prefix*."""
        ...

    async def delete(self, key: str) -> None:
        """Delete one object; deleting a missing object is not an error."""
        ...


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"refusing store key {key[:120]!r}", key=key)
    if any(p.startswith(_TMP_PREFIX) for p in parts) or "\\" in key or "\x00" in key:
        raise StorageError(f"refusing store key {key[:120]!r}", key=key)
    return key


def _too_large(key: str, size: int, limit: int) -> StorageError:
    return StorageError(f"object {key} is {size} bytes, over the {limit} byte limit", key=key)


# --------------------------------------------------------------------------- directory


class DirStore:
    """
    A local folder. Writes go to a hidden temporary name, are fsynced, then renamed
    (create-only puts hard-link, which fails if the name exists), so a crash leaves
    no half-written object under a real name.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = root.as_uri()
        self.stats = StoreStats()

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    async def put_bytes(
        self, key: str, data: bytes, *, create_only: bool = False, lock: bool = False
    ) -> bool:
        """Write *data* under *key* atomically; False when *create_only* and it existed."""
        path = self._path(key)
        written = await asyncio.to_thread(self._write_file, path, [data], create_only, lock)
        if written:
            self.stats.count_put(key, len(data))
        return written

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        size: int | None = None,
        create_only: bool = False,
    ) -> bool:
        """
        Stream into a locked temporary file, then rename; the temporary is removed
        whatever happens. A failing disk (full, quota, I/O error) is a `StorageError`.
        """
        path = self._path(key)
        if create_only and await asyncio.to_thread(path.exists):
            return False
        handle, tmp = await self._open_tmp_shielded(path)
        count = 0
        try:
            async for chunk in chunks:
                await asyncio.to_thread(_write, handle, chunk, path)
                count += len(chunk)
            await asyncio.to_thread(_write, handle, b"", path)
            written = await asyncio.to_thread(self._commit, tmp, path, create_only, False)
        finally:
            # Unlinked before the close releases its lock: a cleaner never sees it unlocked.
            await asyncio.to_thread(_discard, tmp, handle)
        if written:
            self.stats.count_put(key, count)
        return written

    async def _open_tmp_shielded(self, path: Path) -> tuple[BinaryIO, Path]:
        """`_open_tmp` in a thread; cancelled meanwhile, the file it made is removed."""
        # Shielded, not awaited directly: a cancel would leave the thread's file behind.
        opening = asyncio.ensure_future(asyncio.to_thread(self._open_tmp, path))
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            with contextlib.suppress(StorageError):
                handle, tmp = await opening
                await asyncio.to_thread(_discard, tmp, handle)
            raise

    def _open_tmp(self, path: Path) -> tuple[BinaryIO, Path]:
        """A new temporary file beside *path*, created exclusively and held under a lock."""
        tmp = self._tmp_for(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc}", key=str(path)) from exc
        # The lock says "being written": clean_temporaries only removes unlocked files.
        fcntl.flock(fd, fcntl.LOCK_EX)
        return os.fdopen(fd, "wb"), tmp

    def _tmp_for(self, path: Path) -> Path:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {path.parent}: {exc}", key=str(path)) from exc
        return path.parent / f"{_TMP_PREFIX}{path.name}.{uuid.uuid4().hex}.tmp"

    def _write_file(
        self, path: Path, parts: builtins.list[bytes], create_only: bool, lock: bool
    ) -> bool:
        if create_only and path.exists():
            return False
        handle, tmp = self._open_tmp(path)
        try:
            for part in parts:
                _write(handle, part, path)
            _write(handle, b"", path)
            return self._commit(tmp, path, create_only, lock)
        finally:
            _discard(tmp, handle)

    def _commit(self, tmp: Path, path: Path, create_only: bool, lock: bool) -> bool:
        if lock:
            tmp.chmod(0o444)
        try:
            if create_only:
                # link(), not rename(): it refuses to replace an object that appeared meanwhile.
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    return False
            else:
                os.replace(tmp, path)
            _fsync_dir(path.parent)
        except OSError as exc:
            raise StorageError(f"cannot commit {path}: {exc}", key=str(path)) from exc
        return True

    async def get_bytes(self, key: str, *, max_size: int) -> bytes:
        """Read the whole object."""
        path = self._path(key)
        self.stats.gets += 1
        data = await asyncio.to_thread(self._read, path, key, max_size)
        self.stats.bytes_got += len(data)
        return data

    @staticmethod
    def _read(path: Path, key: str, max_size: int) -> bytes:
        try:
            with path.open("rb") as handle:
                data = handle.read(max_size + 1)
        except FileNotFoundError as exc:
            raise SnapshotNotFound(f"no object {key} in the store", key=key) from exc
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc}", key=key) from exc
        if len(data) > max_size:
            raise _too_large(key, len(data), max_size)
        return data

    @contextlib.asynccontextmanager
    async def open_stream(self, key: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """Stream the object in 1 MiB chunks."""
        path = self._path(key)
        self.stats.gets += 1
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError as exc:
            raise SnapshotNotFound(f"no object {key} in the store", key=key) from exc
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc}", key=key) from exc

        async def chunks() -> AsyncIterator[bytes]:
            while chunk := await asyncio.to_thread(handle.read, CHUNK):
                self.stats.bytes_got += len(chunk)
                yield chunk

        try:
            yield chunks()
        finally:
            await asyncio.to_thread(handle.close)

    async def stat(self, key: str) -> StoredObject | None:
        """Size and modification time, or None."""
        path = self._path(key)
        self.stats.heads += 1
        try:
            st = await asyncio.to_thread(path.stat)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot stat {path}: {exc}", key=key) from exc
        return StoredObject(key, st.st_size, dt.datetime.fromtimestamp(st.st_mtime, dt.UTC))

    async def list(self, prefix: str) -> AsyncIterator[StoredObject]:
        """Committed objects under *prefix* (temporary files are never listed), sorted by key."""
        self.stats.lists += 1
        found = await asyncio.to_thread(self._walk, prefix)
        for obj in found:
            yield obj

    def _walk(self, prefix: str) -> builtins.list[StoredObject]:
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        top = self.root / base if base else self.root
        out: builtins.list[StoredObject] = []
        if not top.is_dir():
            return out
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if not d.startswith(_TMP_PREFIX)]
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith(_TMP_PREFIX):
                    continue
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if not key.startswith(prefix):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue
                modified = dt.datetime.fromtimestamp(st.st_mtime, dt.UTC)
                out.append(StoredObject(key, st.st_size, modified))
        out.sort(key=lambda o: o.key)
        return out

    async def clean_temporaries(self) -> int:
        """Remove temporary files no writer holds (see `clean_temporaries`); how many."""
        return await asyncio.to_thread(clean_temporaries, self.root)

    async def delete(self, key: str) -> None:
        """Remove the file; a missing file is fine."""
        path = self._path(key)
        self.stats.deletes += 1
        try:
            await asyncio.to_thread(path.unlink, True)
        except OSError as exc:
            raise StorageError(f"cannot delete {path}: {exc}", key=key) from exc

    def __repr__(self) -> str:
        return f"DirStore({self.root})"


def _write(handle: BinaryIO, data: bytes, path: Path) -> None:
    """Write *data* (or, given nothing, flush and fsync); disk errors become `StorageError`."""
    try:
        if data:
            handle.write(data)
        else:
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        # ENOSPC, EDQUOT, EFBIG, EIO: the store failed, not drd; the run records it.
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}", key=str(path)) from exc


def _discard(tmp: Path, handle: BinaryIO) -> None:
    """Remove a temporary file, then close it (which releases its lock)."""
    try:
        tmp.unlink(missing_ok=True)
    finally:
        with contextlib.suppress(OSError):
            # A close that fails to flush (disk full) has nothing left to lose: the file is gone.
            handle.close()


def _is_temporary(name: str) -> bool:
    return name.startswith(_TMP_PREFIX) and name.endswith(".tmp")


def clean_temporaries(root: Path, *, min_age: dt.timedelta = TMP_MIN_AGE) -> int:
    """
    Remove temporary files under *root* that no writer holds: left by a crash or an
    interrupted put. A live one is locked by its writer (`fcntl.flock`) and stays;
    *min_age* also spares one created an instant ago, before its writer locked it.
    Returns how many were removed; files that vanish meanwhile are skipped.
    """
    removed = 0
    cutoff = time.time() - min_age.total_seconds()
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            if not _is_temporary(name):
                continue
            path = os.path.join(dirpath, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                if os.fstat(fd).st_mtime > cutoff:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a writer holds it: live
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    removed += 1
            finally:
                os.close(fd)
    if removed:
        log.warning("store.stale_temporaries_removed", root=str(root), count=removed)
    return removed


def _fsync_dir(path: Path) -> None:
    """Make a rename durable: fsync the directory that holds it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- S3

_NOT_FOUND = frozenset({"NoSuchKey", "NotFound", "404"})
_TRANSIENT = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "503",
        "500",
    }
)
_PRECONDITION = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})


def storage_error(exc: BaseException, *, bucket: str, key: str, op: str) -> StorageError:
    """Map a botocore, aiohttp or socket failure to drd's storage errors."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError,
        HTTPClientError,
    )

    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code == "NoSuchBucket":
            return StorageError(f"bucket {bucket} does not exist", bucket=bucket, key=key)
        if code in _NOT_FOUND or status == 404:
            return SnapshotNotFound(f"no object {where}", bucket=bucket, key=key)
        if code in _TRANSIENT or status >= 500 or status == 429:
            return StorageUnavailable(
                f"S3 {op} {where} failed: {code or status}", bucket=bucket, key=key
            )
        return StorageError(
            f"S3 {op} {where} failed: {code or status} {err.get('Message', '')}".rstrip(),
            bucket=bucket,
            key=key,
            code=code,
            status=status,
        )
    if isinstance(exc, ConnectionError | HTTPClientError):
        return StorageUnavailable(f"cannot reach S3 for {where}: {exc}", bucket=bucket, key=key)
    if isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError | OSError):
        return StorageUnavailable(f"cannot reach S3 for {where}: {exc}", bucket=bucket, key=key)
    if isinstance(exc, BotoCoreError):
        return StorageError(f"S3 {op} {where} failed: {exc}", bucket=bucket, key=key)
    return StorageError(f"S3 {op} {where} failed: {exc!r}", bucket=bucket, key=key)


def _is_precondition(exc: StorageError) -> bool:
    return getattr(exc, "code", "") in _PRECONDITION or getattr(exc, "status", 0) == 412


@dataclass(frozen=True)
class S3Options:
    """Server-side encryption and Object Lock for one bucket."""

    sse: str | None = None  # "AES256", "aws:kms" or "aws:kms:<key id>"
    object_lock_days: int | None = None
    object_lock_mode: str = "COMPLIANCE"

    def encryption(self) -> dict[str, str]:
        """PutObject / CreateMultipartUpload arguments for server-side encryption."""
        if not self.sse:
            return {}
        if self.sse.startswith("aws:kms:"):
            return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.sse[len("aws:kms:") :]}
        return {"ServerSideEncryption": self.sse}


class S3Store:
    """
    An S3 bucket (any S3-compatible store), under an optional key prefix.

    Content-addressed puts send ``If-None-Match: *``; an S3 that does not implement
    it is detected once and answered with a HEAD before each put instead. Objects
    over one part go up as multipart uploads, one part in memory at a time. Every
    request is retried on `StorageUnavailable` by *retry*; streams are not replayed.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str = "",
        *,
        retry: RetryPolicy | None = None,
        options: S3Options | None = None,
        part_size: int = PART_SIZE,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        self.stats = StoreStats()
        self._retry = retry or RetryPolicy()
        self._options = options or S3Options()
        self._part_size = max(part_size, 5 * 1024 * 1024)
        self._conditional_puts = True

    def _key(self, key: str) -> str:
        return self.prefix + _check_key(key)

    async def _call(self, op: str, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        """One S3 request, retried on `StorageUnavailable`, errors mapped."""

        async def mapped() -> T:
            try:
                return await fn()
            except (StorageError, asyncio.CancelledError):
                raise
            except Exception as exc:
                raise storage_error(exc, bucket=self.bucket, key=key, op=op) from exc

        return await self._retry.call(f"store.{op}", mapped)

    def _lock_args(self) -> dict[str, Any]:
        days = self._options.object_lock_days
        if not days:
            return {}
        until = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
        return {
            "ObjectLockMode": self._options.object_lock_mode,
            "ObjectLockRetainUntilDate": until,
        }

    async def put_bytes(
        self, key: str, data: bytes, *, create_only: bool = False, lock: bool = False
    ) -> bool:
        """PutObject; ``If-None-Match: *`` when *create_only*; Object Lock when *lock*."""
        full = self._key(key)
        if create_only and not self._conditional_puts and await self.stat(key) is not None:
            return False
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": full, "Body": data}
        args.update(self._options.encryption())
        if lock:
            args.update(self._lock_args())
        if create_only and self._conditional_puts:
            args["IfNoneMatch"] = "*"

        async def go() -> None:
            self.stats.count_put(key, len(data))
            await self.client.put_object(**args)

        try:
            await self._call("put", key, go)
        except StorageError as exc:
            if create_only and _is_precondition(exc):
                return False
            if (
                create_only
                and self._conditional_puts
                and getattr(exc, "code", "")
                in (
                    "NotImplemented",
                    "501",
                )
            ):
                log.warning("store.conditional_put_unsupported", bucket=self.bucket)
                self._conditional_puts = False
                return await self.put_bytes(key, data, create_only=True, lock=lock)
            raise
        return True

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        size: int | None = None,
        create_only: bool = False,
    ) -> bool:
        """
        Stream an object: one PutObject when it fits a part, else a multipart upload.

        With *create_only*, a one-part object is put with ``If-None-Match: *``; before
        a multipart upload (too costly to find out about at the end) a HEAD checks
        first. If *chunks* raises, the multipart upload is aborted and nothing is
        committed.
        """
        part_size = self._part_size
        if size is not None and size > part_size * (MAX_PARTS - 1):
            part_size = -(-size // (MAX_PARTS - 1))
        buffer = bytearray()
        iterator = chunks.__aiter__()
        exhausted = False
        while len(buffer) < part_size:
            try:
                buffer += await iterator.__anext__()
            except StopAsyncIteration:
                exhausted = True
                break
        if exhausted:
            return await self.put_bytes(key, bytes(buffer), create_only=create_only)
        if create_only and await self.stat(key) is not None:
            return False
        return await self._multipart(key, iterator, buffer, part_size)

    async def _multipart(
        self, key: str, iterator: AsyncIterator[bytes], buffer: bytearray, part_size: int
    ) -> bool:
        full = self._key(key)
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": full}
        args.update(self._options.encryption())

        async def create() -> str:
            self.stats.puts += 1
            resp = await self.client.create_multipart_upload(**args)
            return str(resp["UploadId"])

        upload_id = await self._call("create_multipart", key, create)
        parts: builtins.list[dict[str, Any]] = []
        total = 0
        try:
            exhausted = False
            while True:
                while len(buffer) < part_size and not exhausted:
                    try:
                        buffer += await iterator.__anext__()
                    except StopAsyncIteration:
                        exhausted = True
                if not buffer:
                    break
                body = bytes(buffer[:part_size])
                del buffer[:part_size]
                number = len(parts) + 1
                parts.append(await self._upload_part(key, full, upload_id, number, body))
                total += len(body)
                if exhausted and not buffer:
                    break

            async def complete() -> None:
                self.stats.count_put(key, total)
                await self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=full,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                )

            await self._call("complete_multipart", key, complete)
        except BaseException:
            await asyncio.shield(self._abort(key, full, upload_id))
            raise
        return True

    async def _upload_part(
        self, key: str, full: str, upload_id: str, number: int, body: bytes
    ) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            self.stats.puts += 1
            self.stats.bytes_put += len(body)
            resp = await self.client.upload_part(
                Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=body
            )
            return {"PartNumber": number, "ETag": resp["ETag"]}

        return await self._call("upload_part", key, go)

    async def _abort(self, key: str, full: str, upload_id: str) -> None:
        async def go() -> None:
            self.stats.deletes += 1
            await self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=full, UploadId=upload_id
            )

        try:
            await self._call("abort_multipart", key, go)
        except StorageError as exc:
            # A dangling upload costs storage until a lifecycle rule removes it; say so.
            log.warning("store.abort_failed", key=key, error=str(exc))

    async def get_bytes(self, key: str, *, max_size: int) -> bytes:
        """GetObject, refusing objects larger than *max_size*."""
        full = self._key(key)

        async def go() -> bytes:
            self.stats.gets += 1
            resp = await self.client.get_object(Bucket=self.bucket, Key=full)
            async with resp["Body"] as body:
                length = int(resp.get("ContentLength", 0) or 0)
                if length > max_size:
                    raise _too_large(key, length, max_size)
                data = bytearray()
                # read(n) returns what is buffered, not n bytes: loop to the end.
                while len(data) <= max_size:
                    chunk = await body.read(min(CHUNK, max_size + 1 - len(data)))
                    if not chunk:
                        break
                    data += chunk
            if len(data) > max_size:
                raise _too_large(key, len(data), max_size)
            self.stats.bytes_got += len(data)
            return bytes(data)

        return await self._call("get", key, go)

    @contextlib.asynccontextmanager
    async def open_stream(self, key: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """GetObject as a stream of chunks; only the request itself is retried."""
        full = self._key(key)

        async def go() -> Any:
            self.stats.gets += 1
            return await self.client.get_object(Bucket=self.bucket, Key=full)

        resp = await self._call("get", key, go)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in resp["Body"].iter_chunks(CHUNK):
                    self.stats.bytes_got += len(chunk)
                    yield chunk
            except StorageError:
                raise
            except Exception as exc:
                raise storage_error(exc, bucket=self.bucket, key=key, op="get") from exc

        async with resp["Body"]:
            yield chunks()

    async def stat(self, key: str) -> StoredObject | None:
        """HeadObject; None when absent."""
        full = self._key(key)

        async def go() -> StoredObject | None:
            self.stats.heads += 1
            resp = await self.client.head_object(Bucket=self.bucket, Key=full)
            return StoredObject(key, int(resp.get("ContentLength", 0)), resp["LastModified"])

        try:
            return await self._call("head", key, go)
        except SnapshotNotFound:
            return None

    async def list(self, prefix: str) -> AsyncIterator[StoredObject]:
        """ListObjectsV2 page by page, each page one retried request."""
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
            if token:
                args["ContinuationToken"] = token

            async def go(args: dict[str, Any] = args) -> Any:
                self.stats.lists += 1
                return await self.client.list_objects_v2(**args)

            page = await self._call("list", prefix, go)
            for item in page.get("Contents", []):
                key = str(item["Key"])[len(self.prefix) :]
                yield StoredObject(key, int(item.get("Size", 0)), item["LastModified"])
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                return

    async def delete(self, key: str) -> None:
        """DeleteObject (a versioned bucket keeps the version behind a delete marker)."""
        full = self._key(key)

        async def go() -> None:
            self.stats.deletes += 1
            await self.client.delete_object(Bucket=self.bucket, Key=full)

        with contextlib.suppress(SnapshotNotFound):
            await self._call("delete", key, go)

    def __repr__(self) -> str:
        return f"S3Store({self.url})"


# --------------------------------------------------------------------------- opening


def parse_store_url(url: str) -> tuple[str, str, str]:
    """``("file", "", path)`` or ``("s3", bucket, prefix)``; `ConfigError` otherwise."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(
                "a file:// store must be a local path",
                errors=[("snapshots.store", f"{url!r} names host {parts.netloc!r}")],
            )
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ConfigError(
                "a file:// store needs an absolute path",
                errors=[("snapshots.store", f"{url!r} is not absolute")],
            )
        return "file", "", path
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ConfigError(
                "an s3:// store needs a bucket",
                errors=[("snapshots.store", f"{url!r} has no bucket")],
            )
        return "s3", parts.netloc, parts.path.strip("/")
    raise ConfigError(
        "snapshots.store must be file:///path or s3://bucket/prefix",
        errors=[("snapshots.store", f"{url[:100]!r} has neither scheme")],
    )


_LOADER: list[Any] = []


def _share_loader(session: Any) -> None:
    """
    Reuse one botocore data loader: parsing the S3 service model costs about half a
    second per session, and the loader only caches files read from disk.
    """
    if _LOADER:
        session.register_component("data_loader", _LOADER[0])
    else:
        _LOADER.append(session.get_component("data_loader"))


@contextlib.asynccontextmanager
async def open_store(
    config: StoreSettings, retry: RetryPolicy | None = None
) -> AsyncIterator[SnapshotStore]:
    """
    The store ``[snapshots]`` names, opened for the duration of the block.

    ``file:///path`` gives a `DirStore` (the folder is created, and temporary files a
    crashed or interrupted writer left are removed). ``s3://bucket/prefix``
    gives an `S3Store` whose aiobotocore client lives exactly as long as the block;
    credentials come from the usual AWS environment and files. ``oci://endpoint/repo``
    gives an `OciStore` (drd.snapshot.oci_store) on that configured endpoint. botocore's own
    retries are off: *retry* retries each request, and nested retries multiply.
    """
    if config.store.startswith("oci://"):
        # Its own module (oras, requests) loaded only for an oci:// store.
        from drd.snapshot.oci_store import OciStoreSettings, open_oci_store

        if not isinstance(config, OciStoreSettings):
            raise ConfigError(
                "an oci:// store needs its endpoint",
                errors=[("snapshots.store", "no endpoint was resolved for the OCI store")],
            )
        async with open_oci_store(config, retry) as oci:
            yield oci
        return
    kind, bucket, path = parse_store_url(config.store)
    if kind == "file":
        root = Path(path)
        try:
            await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the snapshot folder {root}: {exc}") from exc
        store = DirStore(root)
        # On open, not only on prune: a crashed writer's temporaries are dead weight now.
        await store.clean_temporaries()
        yield store
        return
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    endpoint = config.s3_endpoint_url
    client_config = AioConfig(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=15,
        read_timeout=60,
        # Path-style for custom endpoints: MinIO, Ceph and moto rarely have bucket DNS.
        s3={"addressing_style": "path"} if endpoint else None,
    )
    session = get_session()
    _share_loader(session)
    async with session.create_client(
        "s3", endpoint_url=endpoint, region_name=config.s3_region, config=client_config
    ) as client:
        yield S3Store(
            client,
            bucket,
            path,
            retry=retry,
            options=S3Options(sse=config.s3_sse, object_lock_days=config.s3_object_lock_days),
        )
