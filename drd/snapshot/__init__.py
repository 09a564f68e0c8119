"""
Snapshots: point-in-time, content-addressed records of a registry's metadata.

`take_snapshot` / `run_snapshot` walk a registry into a store (`open_store`);
`load_snapshot`, `list_snapshots`, `verify_snapshot` and `prune` work on what is
stored; `drd.snapshot.model` is the pure index schema.
"""

from drd.snapshot.catalog import (
    LATEST,
    SnapshotEntry,
    list_snapshots,
    load_snapshot,
    prune,
    verify_snapshot,
)
from drd.snapshot.collect import SnapshotReport, run_snapshot, take_snapshot
from drd.snapshot.model import Snapshot, SnapshotDiff, diff, select_retention
from drd.snapshot.sign import IndexKey
from drd.snapshot.store import DirStore, S3Store, SnapshotStore, open_store

__all__ = [
    "LATEST",
    "DirStore",
    "IndexKey",
    "S3Store",
    "Snapshot",
    "SnapshotDiff",
    "SnapshotEntry",
    "SnapshotReport",
    "SnapshotStore",
    "diff",
    "list_snapshots",
    "load_snapshot",
    "open_store",
    "prune",
    "run_snapshot",
    "select_retention",
    "take_snapshot",
    "verify_snapshot",
]
