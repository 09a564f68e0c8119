"""What one replication pass must do for one repository and target. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

from drd.oci.digest import Digest
from drd.oci.referrers import subject_of_tag


@dataclass(frozen=True)
class Copy:
    """Copy *digest*'s graph and point *tag* at it. ``moved`` when the target had another digest."""

    tag: str
    digest: Digest
    moved_from: Digest | None = None
    attached: bool = False  # a signature/attestation/referrers tag riding on a copied digest


@dataclass(frozen=True)
class Skip:
    """Nothing to do for *tag*."""

    tag: str
    digest: Digest
    reason: str
    attached: bool = False


@dataclass(frozen=True)
class Drift:
    """*tag* moved at the source but the target is immutable: reported, never overwritten."""

    tag: str
    source: Digest
    target: Digest


Action = Copy | Skip | Drift


def plan_tags(
    selected: Mapping[str, Digest], target: Mapping[str, Digest], *, immutable: bool = False
) -> list[Action]:
    """
    Decide what to do for the policy's tags in one repository at one target.

    *selected* maps the policy's tags to their source digests; *target* maps the
    target's tags to its digests (only those it knows).
    """
    return [
        _decide(tag, selected[tag], target.get(tag), immutable, False) for tag in sorted(selected)
    ]


def plan_attached(
    attached: Mapping[str, Digest], target: Mapping[str, Digest], wanted: Set[Digest]
) -> list[Action]:
    """
    Decide what to do for attached tags (``sha256-<hex>.sig|.att|.sbom`` and the bare
    referrers tag): one already in place is up to date whatever its subject; any other
    only when its subject is in *wanted* (what this pass copied or found in place in the
    same repository). Signatures are re-signed in place, so their tags follow even when
    release tags are immutable (a trusted pass verifies each replacement first).
    """
    actions: list[Action] = []
    for tag in sorted(attached):
        subject = subject_of_tag(tag)
        if subject is None:
            continue
        if target.get(tag) == attached[tag] or subject in wanted:
            actions.append(_decide(tag, attached[tag], target.get(tag), False, True))
    return actions


def _decide(
    tag: str, source: Digest, target: Digest | None, immutable: bool, attached: bool
) -> Action:
    if target == source:
        return Skip(tag, source, "up to date", attached=attached)
    if target is None:
        return Copy(tag, source, attached=attached)
    if immutable:
        return Drift(tag, source, target)
    return Copy(tag, source, moved_from=target, attached=attached)
