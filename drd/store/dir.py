"""The directory store: snapshots in a local folder, the embedded default."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import datetime as dt
import fcntl
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import structlog

from drd.errors import SnapshotNotFound, StorageError

if TYPE_CHECKING:
    pass

from drd.store.base import (
    _TMP_PREFIX,
    CHUNK,
    TMP_MIN_AGE,
    StoredObject,
    StoreStats,
    _check_key,
    _too_large,
)

log = structlog.get_logger(__name__)

# Where writes are staged: hidden (never listed, never a key) and small to scan on open.
TMP_DIR = f"{_TMP_PREFIX}tmp"


class DirStore:
    """
    A local folder. Writes go to a hidden temporary file in ``.tmp/``, are fsynced,
    then renamed into place (create-only puts hard-link, which fails if the name
    exists), so a crash leaves no half-written object under a real name, and what a
    crash leaves is found without walking the whole store.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = root.as_uri()
        self.stats = StoreStats()
        self.retry = None  # a local read that fails is not retried

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
        lock: bool = False,
    ) -> bool:
        """
        Stream into a locked temporary file in ``.tmp/``, then rename (*lock*: read-only);
        the temporary is removed whatever happens. A failing disk (full, quota, I/O
        error) is a `StorageError`.
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
            written = await asyncio.to_thread(self._commit, tmp, path, create_only, lock)
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
        tmp_dir = self.root / TMP_DIR
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {path.parent}: {exc}", key=str(path)) from exc
        # One folder on the same file system: rename() and link() into place stay atomic.
        return tmp_dir / f"{_TMP_PREFIX}{path.name}.{uuid.uuid4().hex}.tmp"

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
        # In chunks: read(max_size + 1) would allocate max_size bytes before reading one.
        parts: builtins.list[bytes] = []
        count = 0
        try:
            with path.open("rb") as handle:
                while count <= max_size and (chunk := handle.read(CHUNK)):
                    parts.append(chunk)
                    count += len(chunk)
        except FileNotFoundError as exc:
            raise SnapshotNotFound(f"no object {key} in the store", key=key) from exc
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc}", key=key) from exc
        if count > max_size:
            raise _too_large(key, count, max_size)
        return b"".join(parts)

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

    async def clean_temporaries(self, *, everywhere: bool = False) -> int:
        """
        Remove temporary files no writer holds (see `clean_temporaries`); how many. Only
        ``.tmp/`` is looked at unless *everywhere* (a prune): older versions of drd left
        their temporaries beside the object they were writing.
        """
        top = self.root if everywhere else self.root / TMP_DIR
        return await asyncio.to_thread(clean_temporaries, top)

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
    Remove temporary files under *root* (a missing folder has none) that no writer
    holds: left by a crash or an interrupted put. A live one is locked by its writer
    (`fcntl.flock`) and stays; *min_age* also spares one created an instant ago,
    before its writer locked it.
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
