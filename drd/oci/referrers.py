"""Referrers and cosign tag schemas: the ``sha256-<hex>[.suffix]`` tag names. Pure."""

from __future__ import annotations

import re

from drd.oci.digest import Digest

_DIGEST_TAG = re.compile(r"^(sha256|sha512)-([a-f0-9]{64}|[a-f0-9]{128})(?:\.(\w+))?$")


def fallback_tag(digest: Digest) -> str:
    """The referrers-API fallback tag for *digest*: ``sha256-<hex>``."""
    return digest.tag_form


def subject_of_tag(tag: str) -> Digest | None:
    """The digest a ``sha256-<hex>[.suffix]`` tag hangs off, or None for an ordinary tag."""
    match = _DIGEST_TAG.fullmatch(tag)
    if match is None:
        return None
    algorithm, hexpart = match.group(1), match.group(2)
    if len(hexpart) != (64 if algorithm == "sha256" else 128):
        return None
    return Digest(algorithm, hexpart)


def is_attached_tag(tag: str) -> bool:
    """Whether *tag* is a cosign or referrers-fallback tag rather than a release tag."""
    return subject_of_tag(tag) is not None
