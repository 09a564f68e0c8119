"""
The newest trusted snapshot this host has seen, per store and source, kept in the
local state directory (``state_dir/snapshot-watermarks.json``).

``latest`` is found by listing the store, so whoever can delete from the store can
roll ``latest`` back to an older (validly signed) snapshot. The watermark lives where
that person cannot write: a restore of ``latest`` older than the watermark is refused
(`rollback_problem`). Only snapshots this host committed, or whose signature it
verified, move the watermark, and only forward.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from drd.errors import InvalidReference
from drd.files import atomic_write
from drd.snapshot.model import Snapshot, parse_snapshot_id

log = structlog.get_logger(__name__)

FILE = "snapshot-watermarks.json"
_LOCK = ".snapshot-watermarks.lock"
_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Watermark:
    """The newest trusted snapshot of one source in one store, as recorded here."""

    id: str
    index_digest: str
    recorded_at: str


def _entry(store_url: str, source: str) -> str:
    return f"{store_url}#{source}"


def read_watermark(state_dir: Path, store_url: str, source: str) -> Watermark | None:
    """
    The recorded watermark, or None when nothing was recorded. An unreadable or
    malformed file is logged loudly and read as nothing: the check is then off.
    """
    doc = _read(state_dir / FILE)
    raw = doc.get(_entry(store_url, source))
    if not isinstance(raw, dict):
        return None
    try:
        parse_snapshot_id(str(raw["id"]))
        return Watermark(str(raw["id"]), str(raw["index_digest"]), str(raw["recorded_at"]))
    except (KeyError, InvalidReference):
        log.warning("snapshot.watermark_malformed", path=str(state_dir / FILE), store=store_url)
        return None


def record_watermark(state_dir: Path, store_url: str, snapshot: Snapshot) -> bool:
    """
    Move *snapshot*'s source's watermark forward to it (never back). Returns whether it
    moved. A state directory that cannot be written is logged, not raised: a restore
    or a snapshot must not fail for it.
    """
    path = state_dir / FILE
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _locked(state_dir / _LOCK):
            doc = _read(path)
            key = _entry(store_url, snapshot.source)
            old = doc.get(key)
            if isinstance(old, dict) and _newer_or_same(str(old.get("id", "")), snapshot.id):
                return False
            doc[key] = {
                "id": snapshot.id,
                "index_digest": str(snapshot.digest),
                "recorded_at": dt.datetime.now(dt.UTC).isoformat(),
            }
            atomic_write(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        log.warning("snapshot.watermark_unwritable", path=str(path), error=str(exc))
        return False
    return True


def rollback_problem(mark: Watermark | None, snapshot: Snapshot) -> str:
    """
    Why *snapshot*, the store's newest, is not the newest this host trusts ('' when it
    is): an older id means newer indexes are gone from the store; the same id with
    another index digest means the index was replaced.
    """
    if mark is None:
        return ""
    if mark.id == snapshot.id and mark.index_digest != str(snapshot.digest):
        return (
            f"snapshot {snapshot.id} of {snapshot.source} in the store has index digest "
            f"{snapshot.digest}, but this host recorded {mark.index_digest} for it: "
            "the index was replaced"
        )
    if _newer_or_same(snapshot.id, mark.id):
        return ""
    return (
        f"the store's newest snapshot of {snapshot.source} is {snapshot.id}, older than "
        f"{mark.id}, which this host recorded as committed at {mark.recorded_at}: newer "
        "snapshot indexes were deleted from the store (or this is another store)"
    )


def _newer_or_same(a: str, b: str) -> bool:
    """Whether id *a* is the same as or newer than id *b* (an unparsable *a* is not)."""
    try:
        return parse_snapshot_id(a) >= parse_snapshot_id(b)
    except InvalidReference:
        return False


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("snapshot.watermark_unreadable", path=str(path), error=str(exc))
        return {}
    try:
        doc = json.loads(data) if len(data) <= _MAX_BYTES else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        log.warning("snapshot.watermark_malformed", path=str(path))
        return {}
    return doc


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write between a daemon and a CLI run on one host."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
