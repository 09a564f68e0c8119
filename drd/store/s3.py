"""The S3 store, through aiobotocore: one multipart part in memory at a time."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog

from drd.errors import SnapshotNotFound, StorageError, StorageUnavailable
from drd.retry import RetryPolicy

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

from drd.store.base import (
    CHUNK,
    MAX_PARTS,
    PART_SIZE,
    StoredObject,
    StoreStats,
    T,
    _check_key,
    _too_large,
)

log = structlog.get_logger(__name__)


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

    @property
    def retry(self) -> RetryPolicy:
        """The policy every request is retried by; a caller reading a whole stream uses it too."""
        return self._retry

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
        """Object Lock retention for one new object: every content object and index."""
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
        """
        PutObject; ``If-None-Match: *`` when *create_only*. Object Lock retention (when
        configured) goes on every *create_only* put, which is every content object and
        index, and on any put asked to *lock*; pointers and leases stay unlocked.
        """
        full = self._key(key)
        if create_only and not self._conditional_puts and await self.stat(key) is not None:
            return False
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": full, "Body": data}
        args.update(self._options.encryption())
        if lock or create_only:
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
        lock: bool = False,
    ) -> bool:
        """
        Stream an object: one PutObject when it fits a part, else a multipart upload.
        Object Lock goes on as `put_bytes` says (every *create_only* put, and *lock*).

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
            return await self.put_bytes(key, bytes(buffer), create_only=create_only, lock=lock)
        if create_only and await self.stat(key) is not None:
            return False
        return await self._multipart(key, iterator, buffer, part_size, lock=create_only or lock)

    async def _multipart(
        self,
        key: str,
        iterator: AsyncIterator[bytes],
        buffer: bytearray,
        part_size: int,
        *,
        lock: bool,
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
        if lock and (retention := self._lock_args()):
            await self._retain(key, full, retention)
        return True

    async def _retain(self, key: str, full: str, retention: dict[str, Any]) -> None:
        """
        PutObjectRetention on a completed multipart object: S3-compatible stores differ on
        whether CreateMultipartUpload takes retention, every one takes this.
        """

        async def go() -> None:
            self.stats.puts += 1
            await self.client.put_object_retention(
                Bucket=self.bucket,
                Key=full,
                Retention={
                    "Mode": retention["ObjectLockMode"],
                    "RetainUntilDate": retention["ObjectLockRetainUntilDate"],
                },
            )

        await self._call("retain", key, go)

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
        """HeadObject, with the Object Lock retention date when one is set; None when absent."""
        full = self._key(key)

        async def go() -> StoredObject | None:
            self.stats.heads += 1
            resp = await self.client.head_object(Bucket=self.bucket, Key=full)
            until = resp.get("ObjectLockRetainUntilDate") if resp.get("ObjectLockMode") else None
            return StoredObject(key, int(resp.get("ContentLength", 0)), resp["LastModified"], until)

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
