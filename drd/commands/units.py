"""
How text output writes sizes and digests: IEC units and short digests (attached tags are
folded by `drd.commands.folding`). JSON keeps bytes and full digests.
"""

from __future__ import annotations

import re

from drd.progress import iec

__all__ = ["abbreviate", "iec", "short"]

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
