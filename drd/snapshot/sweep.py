"""
PURE. Which stored objects a prune deletes: those no remaining snapshot references,
older than the grace period, and none at all while a snapshot holds a lease.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from drd.snapshot.model import object_digest
from drd.store.base import StoredObject


@dataclass(frozen=True)
class Sweep:
    """The objects to delete, how many unreferenced ones stay for being young, and why none."""

    delete: list[StoredObject] = field(default_factory=list)
    kept_young: int = 0
    deferred: list[str] = field(default_factory=list)  # live snapshot leases

    @property
    def bytes_freed(self) -> int:
        """The bytes the deletions free."""
        return sum(o.size for o in self.delete)


def plan_sweep(
    objects: Iterable[StoredObject],
    referenced: set[str],
    *,
    now: dt.datetime,
    grace: dt.timedelta,
    leases: Sequence[str] = (),
) -> Sweep:
    """
    The content objects (``manifests/…``, ``blobs/…`` by digest) among *objects* that
    no key in *referenced* names and that are older than *grace*; none while *leases*
    (a snapshot being taken, here or elsewhere) are live. Other keys are never swept.
    """
    doomed: list[StoredObject] = []
    young = 0
    for obj in objects:
        if object_digest(obj.key) is None or obj.key in referenced:
            continue
        if now - obj.modified < grace:
            young += 1
            continue
        doomed.append(obj)
    return Sweep([] if leases else doomed, young, list(leases))
