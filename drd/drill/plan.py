"""
Choose what a drill restores from a snapshot, and where. Pure: no I/O, no clock.

A drill restores either every tag of the snapshot or a sample of ``sample``
release tags (signature, attestation and referrers tags ride along with their
subjects). The sample is drawn with a generator seeded by the snapshot id, so a
drill of the same snapshot with the same sample size picks the same tags: a failed
drill can be replayed exactly. Everything is restored under the namespace
``drill-<run id>/``, never under a production repository name.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drd.errors import InvalidReference
from drd.oci.digest import Digest
from drd.oci.referrers import subject_of_tag
from drd.restore.plan import RestorePlan, Selection, plan_restore, select
from drd.snapshot.model import Snapshot

NAMESPACE_PREFIX = "drill-"
_RUN_ID = re.compile(r"^[a-z0-9]{1,32}$")


@dataclass(frozen=True, slots=True)
class Volume:
    """How much a restore writes and a drill reads back: repositories, tags, manifests, blobs."""

    repositories: int = 0
    tags: int = 0
    manifests: int = 0
    blobs: int = 0
    bytes: int = 0  # manifest bytes plus blob bytes

    @property
    def objects(self) -> int:
        """Manifests plus blobs: the requests a restore and its read-back make per object."""
        return self.manifests + self.blobs

    def to_json(self) -> dict[str, int]:
        """A JSON-ready view."""
        return {
            "repositories": self.repositories,
            "tags": self.tags,
            "manifests": self.manifests,
            "blobs": self.blobs,
            "objects": self.objects,
            "bytes": self.bytes,
        }


@dataclass(frozen=True)
class DrillPlan:
    """
    One drill of one snapshot: the tags chosen, the restore plan into the drill
    namespace, the tags expected there afterwards, and the drill's share of the whole.
    """

    snapshot: str
    run_id: str
    namespace: str  # "drill-<run id>/"
    seed: int
    sample: int  # the requested sample size; 0 means every tag
    release_tags: int  # release tags in the snapshot (the population sampled from)
    chosen: tuple[tuple[str, str], ...]  # (repository, release tag) restored
    selection: Selection
    restore: RestorePlan
    expected: Mapping[str, Mapping[str, Digest]]  # drill repository -> tag -> digest
    scope: Volume  # what this drill restores and reads back
    whole: Volume  # what restoring the whole snapshot would

    @property
    def sampled(self) -> bool:
        """Whether the drill covers a sample rather than every tag."""
        return self.selection.only is not None

    def source_repository(self, target: str) -> str:
        """The snapshot's repository name for drill repository *target*."""
        return target.removeprefix(self.namespace)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view (without the full restore plan)."""
        return {
            "snapshot": self.snapshot,
            "run_id": self.run_id,
            "namespace": self.namespace,
            "seed": self.seed,
            "sample": self.sample,
            "sampled": self.sampled,
            "release_tags": self.release_tags,
            "chosen": [{"repository": r, "tag": t} for r, t in self.chosen],
            "scope": self.scope.to_json(),
            "whole": self.whole.to_json(),
        }


def seed_for(snapshot_id: str) -> int:
    """The sampling seed of a snapshot: the first 8 bytes of the sha256 of its id."""
    return int.from_bytes(hashlib.sha256(snapshot_id.encode()).digest()[:8], "big")


def namespace_for(run_id: str) -> str:
    """``drill-<run id>/``; raise `InvalidReference` for a run id outside ``[a-z0-9]{1,32}``."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise InvalidReference(f"drill run id {str(run_id)[:40]!r} must match {_RUN_ID.pattern}")
    return f"{NAMESPACE_PREFIX}{run_id}/"


def release_tags(snapshot: Snapshot) -> list[tuple[str, str]]:
    """Every (repository, tag) of *snapshot* that is not a signature or referrers tag, sorted."""
    return sorted(
        (name, tag)
        for name, repo in snapshot.repositories.items()
        for tag in repo.tags
        if subject_of_tag(tag) is None
    )


def sample_tags(snapshot: Snapshot, sample: int) -> tuple[tuple[str, str], ...]:
    """
    The release tags a drill of *sample* tags restores: all of them when *sample* is 0
    or covers the population, else a sample seeded by the snapshot id (sorted).
    """
    population = release_tags(snapshot)
    if sample <= 0 or sample >= len(population):
        return tuple(population)
    chosen = random.Random(seed_for(snapshot.id)).sample(population, sample)  # noqa: S311 - a reproducible sample, not a secret
    return tuple(sorted(chosen))


def volume(snapshot: Snapshot, plan: RestorePlan) -> Volume:
    """
    What *plan* writes and a drill reads back, counted per repository (a blob two
    repositories share is linked, and pulled, once in each).
    """
    manifests = blobs = size = tags = 0
    for repo in plan.repositories:
        tags += len(repo.tags)
        manifests += len(repo.manifests)
        blobs += len(repo.blobs)
        size += sum(snapshot.manifests[d].size for d in repo.manifests)
        size += sum(snapshot.blobs[b] for b in repo.blobs)
    return Volume(len(plan.repositories), tags, manifests, blobs, size)


def plan_drill(snapshot: Snapshot, *, sample: int, run_id: str) -> DrillPlan:
    """
    Decide what a drill of *snapshot* restores, into ``drill-<run_id>/``.

    Raises `InvalidReference` for a bad run id or when a repository name under the
    namespace would break the name grammar.
    """
    namespace = namespace_for(run_id)
    chosen = sample_tags(snapshot, sample)
    population = release_tags(snapshot)
    every = len(chosen) == len(population)
    selection = Selection() if every else Selection(only=frozenset(chosen))
    restore = plan_restore(snapshot, selection, {}, repository_prefix=namespace)
    expected = {
        f"{namespace}{name}": dict(tags) for name, tags in select(snapshot, selection).items()
    }
    whole = plan_restore(snapshot, Selection(), {})
    return DrillPlan(
        snapshot=snapshot.id,
        run_id=run_id,
        namespace=namespace,
        seed=seed_for(snapshot.id),
        sample=sample,
        release_tags=len(population),
        chosen=chosen,
        selection=selection,
        restore=restore,
        expected=expected,
        scope=volume(snapshot, restore),
        whole=volume(snapshot, whole),
    )
