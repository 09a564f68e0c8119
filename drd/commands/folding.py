"""
Result listings with attached tags folded under their image: one line for ``app:v1``
and its signature, attestation, SBOM and referrers tags when they ended the same way
(``copied  app:v1 ... (+ signature)``). Pure. `drd.oci.referrers` says which tags those are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from drd.oci import referrers
from drd.oci.referrers import kind_noun, parse_attached

# An SBOM's signature hangs off the SBOM, which hangs off the image: chains stop here.
MAX_DEPTH = 4
# The order attached kinds are named in: what verifies an image before what describes it.
_RANK = {
    kind_noun(kind): rank
    for rank, kind in enumerate((referrers.SIGNATURE, referrers.ATTESTATION, referrers.SBOM))
}


class Tagged(Protocol):
    """An item of a listing: a tag of a repository and the digest it names."""

    @property
    def repository(self) -> str: ...

    @property
    def tag(self) -> str: ...

    @property
    def digest(self) -> str: ...


T = TypeVar("T", bound=Tagged)


@dataclass(frozen=True)
class Line(Generic[T]):
    """
    One line of a listing. *item* heads it: an image's item with the attached items that
    ended like it folded in (*attached*, their nouns), or, with *alone*, the attached
    items of *item*'s image that ended otherwise (*item* is then the image's item too,
    and *first* the first of those attached items, whose ending the line shows).
    """

    item: T
    attached: tuple[str, ...] = ()
    first: T | None = None

    @property
    def alone(self) -> bool:
        """The line lists attached items only, not the image they belong to."""
        return self.first is not None

    @property
    def ending(self) -> T:
        """The item whose outcome and reason the line shows."""
        return self.first if self.first is not None else self.item

    def note(self) -> str:
        """`` (+ signature, attestation)``, `` (signature only)``, or "" with nothing folded."""
        if not self.attached:
            return ""
        return f" ({self.nouns()} only)" if self.alone else f" (+ {self.nouns()})"

    def nouns(self) -> str:
        """The attached kinds, counted, signatures first: ``2 signatures, SBOM``."""
        counts = Counter(self.attached)
        ranked = sorted(counts.items(), key=lambda kv: (_RANK.get(kv[0], len(_RANK)), kv[0]))
        return ", ".join(f"{n} {noun}s" if n > 1 else noun for noun, n in ranked)


def fold_items(
    items: Sequence[T],
    *,
    scope: Callable[[T], Hashable],
    ending: Callable[[T], Hashable],
    all_tags: bool = False,
) -> list[Line[T]]:
    """
    *items* as listing lines, in their order: each attached item (signature, attestation,
    SBOM, referrers index) folded into the line of the image it belongs to within its
    *scope* (a repository, at one target), when its *ending* (outcome, reason) is the
    image's; attached items of one image that ended otherwise share a line of their own.
    An attached item whose image is not among *items* keeps its own line, as every item
    does with *all_tags*.
    """
    if all_tags:
        return [Line(item) for item in items]
    images: dict[tuple[Hashable, str], T] = {}
    by_digest: dict[tuple[Hashable, str], T] = {}
    for item in items:
        key = (scope(item), item.digest)
        if parse_attached(item.tag) is None:
            if key not in images or item.tag < images[key].tag:
                images[key] = item
        else:
            by_digest.setdefault(key, item)
    folded: dict[int, list[T]] = {}  # id of the image's item -> attached items like it
    alone: dict[tuple[int, Hashable], list[T]] = {}
    # The lines in order: the head item, and for a line of attached items alone, their ending.
    order: list[tuple[T, tuple[Hashable] | None]] = []
    for item in items:
        image = _image_of(item, scope(item), images, by_digest)
        if image is None or image is item:
            order.append((item, None))
        elif ending(item) == ending(image):
            folded.setdefault(id(image), []).append(item)
        else:
            group_key = (id(image), ending(item))
            if group_key not in alone:
                order.append((image, (ending(item),)))
            alone.setdefault(group_key, []).append(item)
    lines: list[Line[T]] = []
    for head, other in order:
        if other is None:
            lines.append(Line(head, _nouns(folded.get(id(head), []))))
        else:
            group = alone[(id(head), other[0])]
            lines.append(Line(head, _nouns(group), group[0]))
    return lines


def _image_of(
    item: T,
    scope: Hashable,
    images: dict[tuple[Hashable, str], T],
    by_digest: dict[tuple[Hashable, str], T],
) -> T | None:
    """The image item *item* belongs to: itself for an image, None for an orphan."""
    current = item
    for _ in range(MAX_DEPTH):
        attached = parse_attached(current.tag)
        if attached is None:
            return current if images.get((scope, current.digest)) is current else None
        subject = (scope, str(attached.subject))
        if subject in images:
            return images[subject]
        if subject not in by_digest:
            return None
        current = by_digest[subject]
    return None


def _nouns(items: Sequence[Tagged]) -> tuple[str, ...]:
    nouns = []
    for item in items:
        attached = parse_attached(item.tag)
        if attached is not None:
            nouns.append(kind_noun(attached.kind))
    return tuple(nouns)
