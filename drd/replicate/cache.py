"""
What drd knows of its targets' tags, across passes: (target, repository, tag) → digest.

A no-op pass would otherwise HEAD every tag at every target to learn what it
already knows. An entry is written only from evidence: drd pointed the tag at
that digest, or a HEAD at the target answered it. The target's tags list (one
request per repository) is still read on every pass, and the cache is only
ever used to *skip* a HEAD, never to decide a copy or a drift:

- a tag the target no longer lists is forgotten and planned as missing;
- an entry is trusted only when it names the very digest the source has now;
  any other case asks the target, and what the target answers replaces the entry;
- an entry expires between ``max_age / 2`` and ``max_age`` after it was last
  confirmed (spread per tag, so a whole target is never re-checked in one pass),
  which bounds how long a tag changed behind drd's back at the target can go
  unnoticed.

The core (`Entry`, `trusted`) is pure. `TagCache` keeps the entries in a small
SQLite file in the state directory (``target-tags.db``, WAL: the daemon and a
manual ``drd replicate`` may share it) and buffers writes until `TagCache.flush`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Set
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import structlog

from drd.errors import InvalidReference
from drd.oci.digest import Digest

log = structlog.get_logger(__name__)

CACHE_FILE = "target-tags.db"
SCHEMA_VERSION = 1
# Long enough that a pass every few minutes skips nearly every HEAD; short enough that a
# tag rewritten at the target by something other than drd is found the same day.
DEFAULT_MAX_AGE = timedelta(hours=24)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tags (
    target TEXT NOT NULL,
    repository TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    checked_at REAL NOT NULL,
    PRIMARY KEY (target, repository, tag)
) WITHOUT ROWID;
"""


# ---------------------------------------------------------------------- the pure core


@dataclass(frozen=True)
class Entry:
    """The digest a target tag was last seen or written at, and when (Unix seconds)."""

    digest: Digest
    checked_at: float


def lifetime(target: str, repository: str, tag: str, max_age: float) -> float:
    """How long this entry is trusted: between half and all of *max_age*, fixed per key."""
    key = f"{target}\0{repository}\0{tag}".encode()
    spread = int.from_bytes(hashlib.sha256(key).digest()[:4], "big") / 2**32
    return max_age * (0.5 + 0.5 * spread)


def trusted(
    target: str,
    repository: str,
    wanted: Mapping[str, Digest],
    listed: Set[str],
    known: Mapping[str, Entry],
    *,
    now: float,
    max_age: float,
) -> dict[str, Digest]:
    """
    The *wanted* tags whose target digest need not be asked for: the target lists the
    tag, and a fresh entry names the digest the source has (*wanted*'s value). Pure.
    """
    found: dict[str, Digest] = {}
    for tag, digest in wanted.items():
        entry = known.get(tag)
        if tag not in listed or entry is None or entry.digest != digest:
            continue
        age = now - entry.checked_at
        if 0 <= age < lifetime(target, repository, tag, max_age):
            found[tag] = digest
    return found


# ---------------------------------------------------------------------- storage


class _Db:
    """The synchronous SQLite side; every call is one transaction under one lock."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, timeout=10.0, check_same_thread=False)
        try:
            with self._lock, self._conn as db:
                # WAL: a daemon pass and a manual `drd replicate` may share the file.
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
                db.executescript(_SCHEMA)
                db.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)",
                    (str(SCHEMA_VERSION),),
                )
                _check_schema(db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone())
        except BaseException:
            self._conn.close()
            raise

    def entries(self, target: str, repository: str) -> dict[str, Entry]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT tag, digest, checked_at FROM tags WHERE target = ? AND repository = ?",
                (target, repository),
            ).fetchall()
        found: dict[str, Entry] = {}
        for tag, digest, checked_at in rows:
            # A row that does not parse is as good as absent: the target is asked instead.
            with contextlib.suppress(InvalidReference, TypeError, ValueError):
                found[tag] = Entry(Digest.parse(digest), float(checked_at))
        return found

    def write(self, changes: Iterable[tuple[tuple[str, str, str], Entry | None]]) -> None:
        with self._lock, self._conn as db:
            for (target, repository, tag), entry in changes:
                if entry is None:
                    db.execute(
                        "DELETE FROM tags WHERE target = ? AND repository = ? AND tag = ?",
                        (target, repository, tag),
                    )
                else:
                    db.execute(
                        "INSERT INTO tags (target, repository, tag, digest, checked_at) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (target, repository, tag) DO UPDATE "
                        "SET digest = excluded.digest, checked_at = excluded.checked_at",
                        (target, repository, tag, str(entry.digest), entry.checked_at),
                    )

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _check_schema(row: tuple[str] | None) -> None:
    if row is None or row[0] != str(SCHEMA_VERSION):
        raise sqlite3.DatabaseError(f"unknown cache schema version {row and row[0]}")


_Key = tuple[str, str, str]  # (target base URL, repository, tag)


class TagCache:
    """
    The known target tags of one state directory.

    Reads go to SQLite in a worker thread; writes are buffered in memory and
    written by `flush` in one transaction. A target is named by its base URL, so an
    endpoint pointed at another registry starts from nothing.
    """

    def __init__(
        self,
        db: _Db,
        *,
        max_age: timedelta = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._max_age = max_age.total_seconds()
        self._clock = clock
        self._pending: dict[_Key, Entry | None] = {}
        # Changes being written right now: still newer than what a concurrent read returns.
        self._writing: list[dict[_Key, Entry | None]] = []

    @classmethod
    async def open(
        cls,
        state_dir: Path,
        *,
        max_age: timedelta = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> TagCache:
        """
        Open (creating when missing) ``state_dir/target-tags.db``.

        A file that is not a cache of this version is moved aside and replaced.
        Raises `OSError` or `sqlite3.Error` when the directory cannot hold it.
        """
        path = state_dir / CACHE_FILE

        def connect() -> _Db:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                return _Db(path)
            except sqlite3.OperationalError:
                raise  # locked or unwritable: not the file's fault, keep it
            except sqlite3.DatabaseError as exc:
                aside = path.with_name(f"{path.name}.unreadable")
                log.warning("cache.unreadable", path=str(path), error=str(exc), moved_to=str(aside))
                path.replace(aside)
                for suffix in ("-wal", "-shm"):
                    path.with_name(path.name + suffix).unlink(missing_ok=True)
                return _Db(path)

        return cls(await asyncio.to_thread(connect), max_age=max_age, clock=clock)

    async def lookup(
        self, target: str, repository: str, wanted: Mapping[str, Digest], listed: Set[str]
    ) -> dict[str, Digest]:
        """
        The *wanted* tags (tag → source digest) known to be at *target* with that digest.

        Entries for wanted tags the target no longer lists (*listed*) are forgotten.
        """
        known = await asyncio.to_thread(self._db.entries, target, repository)
        for tag in wanted:
            key = (target, repository, tag)
            for newer in (*self._writing, self._pending):
                if key in newer:
                    entry = newer[key]
                    if entry is None:
                        known.pop(tag, None)
                    else:
                        known[tag] = entry
            if tag not in listed and tag in known:
                self._pending[key] = None
        return trusted(
            target,
            repository,
            wanted,
            listed,
            known,
            now=self._clock(),
            max_age=self._max_age,
        )

    def observed(self, target: str, repository: str, tag: str, digest: Digest | None) -> None:
        """
        Note that *tag* at *target* holds *digest* (drd wrote it, or the target said so);
        None: the target does not have it, or its state is unknown after a failure.
        """
        entry = None if digest is None else Entry(digest, self._clock())
        self._pending[(target, repository, tag)] = entry

    async def flush(self) -> None:
        """
        Write what was observed since the last flush, in one transaction.

        A failed write is logged and kept for the next flush, not raised: without the
        cache a pass asks the targets again, it is never wrong.
        """
        if not self._pending:
            return
        changes, self._pending = self._pending, {}
        self._writing.append(changes)
        try:
            await asyncio.to_thread(self._db.write, list(changes.items()))
        except (OSError, sqlite3.Error) as exc:
            # Keep what was not written, unless newer observations replaced it meanwhile.
            self._pending = {**changes, **self._pending}
            log.warning("cache.write_failed", error=str(exc), entries=len(changes))
        except BaseException:
            self._pending = {**changes, **self._pending}
            raise
        finally:
            self._writing = [w for w in self._writing if w is not changes]

    async def aclose(self) -> None:
        """Flush, then close the file."""
        try:
            await self.flush()
        finally:
            await asyncio.to_thread(self._db.close)


@contextlib.asynccontextmanager
async def open_tag_cache(state_dir: Path | None) -> AsyncIterator[TagCache | None]:
    """
    The tag cache of *state_dir*, flushed and closed on exit; None when *state_dir* is
    None, or (with a warning) when the directory cannot hold it: a pass without the
    cache is slower, never wrong.
    """
    if state_dir is None:
        yield None
        return
    try:
        cache = await TagCache.open(state_dir)
    except (OSError, sqlite3.Error) as exc:
        log.warning("cache.unavailable", state_dir=str(state_dir), error=str(exc))
        yield None
        return
    try:
        yield cache
    finally:
        await cache.aclose()
