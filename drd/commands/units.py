"""
How text output writes sizes, digests and attached tags: IEC units, short digests, and
signature/referrer tags folded under their image. JSON keeps bytes and full digests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from drd.oci.referrers import subject_of_tag
from drd.progress import iec

__all__ = ["Listed", "abbreviate", "fold_attached", "iec", "short"]

# "sha256:" and 12 hex digits, as `docker images` and `skopeo` abbreviate.
SHORT_DIGEST = len("sha256:") + 12


def short(digest: object) -> str:
    """A digest for people: ``sha256:`` and its first 12 hex digits ("" stays "")."""
    return str(digest or "")[:SHORT_DIGEST]


# A full sha256 digest inside free text (a reason, a finding's evidence): its 12 first
# hex digits are kept. "sha256-<hex>" (a signature tag's name) is a tag, not matched.
_FULL_DIGEST = re.compile(r"\b(sha256:[0-9a-f]{12})[0-9a-f]{52}\b")


def abbreviate(text: str) -> str:
    """*text* with every full sha256 digest in it cut to `short`'s length."""
    return _FULL_DIGEST.sub(r"\1", text)


@dataclass(frozen=True)
class Listed:
    """One tag of a listing, with how many attached tags (signatures, referrers) it hides."""

    tag: str
    digest: str
    attached: int = 0


def fold_attached(tags: Mapping[str, str], *, all_tags: bool = False) -> list[Listed]:
    """
    *tags* (tag → digest) for a listing, sorted: each signature, attestation, SBOM or
    referrers tag counted under the tag of the digest it hangs off, not listed itself;
    one whose image has no tag here stays listed. With *all_tags*, everything is listed.
    """
    counts: dict[str, int] = {}
    hidden: set[str] = set()
    digests = set(tags.values())
    if not all_tags:
        for tag in tags:
            subject = subject_of_tag(tag)
            if subject is not None and str(subject) in digests:
                counts[str(subject)] = counts.get(str(subject), 0) + 1
                hidden.add(tag)
    listed: list[Listed] = []
    shown: set[str] = set()
    for tag, digest in sorted(tags.items()):
        if tag in hidden:
            continue
        # The count goes on the first tag of the image only.
        extra = counts.get(digest, 0) if digest not in shown else 0
        shown.add(digest)
        listed.append(Listed(tag, digest, extra))
    return listed
