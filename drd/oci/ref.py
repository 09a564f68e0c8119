"""Ref: parse, validate and format ``registry/repository[:tag][@digest]``. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

from drd.errors import InvalidReference
from drd.oci.digest import Digest

# The distribution spec's grammar (distribution/reference/regexp.go), anchored.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]{{1,5}})?$"
)
MAX_REPOSITORY_LENGTH = 255


def validate_repository(name: str) -> str:
    """Return *name* if it is a valid repository name; raise `InvalidReference` with the reason."""
    if not isinstance(name, str) or not name:
        raise InvalidReference("repository name is empty")
    if len(name) > MAX_REPOSITORY_LENGTH:
        raise InvalidReference(f"repository name is longer than {MAX_REPOSITORY_LENGTH} characters")
    if name.startswith("/") or ".." in name.split("/") or "//" in name:
        raise InvalidReference(f"repository name {name[:80]!r} is an absolute or traversing path")
    if not _REPOSITORY.fullmatch(name):
        raise InvalidReference(f"repository name {name[:80]!r} is outside the OCI name grammar")
    return name


def validate_tag(tag: str) -> str:
    """Return *tag* if it is a valid tag; raise `InvalidReference` otherwise."""
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        raise InvalidReference(f"tag {str(tag)[:80]!r} is outside the OCI tag grammar")
    return tag


@dataclass(frozen=True, slots=True)
class Ref:
    """A normalised image reference. ``str(ref)`` round-trips through `Ref.parse`."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> Ref:
        """Parse ``registry/repo[:tag][@digest]``; the registry part is required."""
        if not isinstance(text, str) or not text or len(text) > 1024:
            raise InvalidReference("reference is empty or too long")
        name, _, digest_text = text.partition("@")
        digest = Digest.parse(digest_text) if digest_text else None
        registry, slash, rest = name.partition("/")
        if not slash or not _DOMAIN.fullmatch(registry):
            raise InvalidReference(f"reference {text[:80]!r} does not start with a registry host")
        repository, tag = rest, None
        last = rest.rsplit("/", 1)[-1]
        if ":" in last:
            repository, _, tag = rest.rpartition(":")
            validate_tag(tag)
        validate_repository(repository)
        return cls(registry, repository, tag, digest)

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest when pinned, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or "latest"

    def at(self, digest: Digest) -> Ref:
        """The same repository, pinned to *digest* (tag dropped)."""
        return Ref(self.registry, self.repository, None, digest)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text
