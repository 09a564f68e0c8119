"""
The snapshot store interface every store implements (`SnapshotStore`), its value types
and the limits they share.

Stores hold plain keys (``manifests/sha256/<hex>``, ``snapshots/…``). Content-addressed
puts are create-only: an object already there is left alone. Blob transfers stream;
nothing holds a whole layer in memory.

Storage failures are mapped to drd's errors inside each store and nowhere else: a
missing object is `SnapshotNotFound`, throttling, 5xx and connection failures are
`StorageUnavailable` (retried per request), anything else is `StorageError`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import structlog

from drd.errors import StorageError

if TYPE_CHECKING:
    from drd.retry import RetryPolicy


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
    @property
    def s3_object_lock_mode(self) -> str: ...  # "COMPLIANCE" or "GOVERNANCE"


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
    """One object in a store; *retain_until* is its S3 Object Lock date, from `stat` only."""

    key: str
    size: int
    modified: dt.datetime
    retain_until: dt.datetime | None = None

    def locked_at(self, now: dt.datetime) -> bool:
        """Whether the store refuses to let this object go at *now*."""
        return self.retain_until is not None and self.retain_until > now


class SnapshotStore(Protocol):
    """
    Where snapshots live. Keys are relative (``manifests/sha256/<hex>``).

    ``create_only`` puts leave an existing object alone and return False; ``lock``
    puts apply the store's retention (S3 Object Lock; a read-only file). An S3 store
    with Object Lock configured locks every create-only put (content and indexes).
    """

    @property
    def url(self) -> str:
        """Where the store is, for messages: ``file:///…`` or ``s3://bucket/prefix/``."""
        ...

    @property
    def stats(self) -> StoreStats:
        """Requests made and bytes moved so far."""
        ...

    @property
    def retry(self) -> RetryPolicy | None:
        """
        The policy the store retries its requests by, which a caller reading a whole
        stream again uses too; None where a read is not retried (a local folder).
        """
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
        lock: bool = False,
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
