"""Descriptor and Platform value types. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drd.errors import InvalidManifest, InvalidReference
from drd.oci.digest import Digest

# A descriptor's size is a non-negative int64; anything larger is a lie.
MAX_SIZE = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Platform:
    """os/architecture[/variant] of an index entry."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A typed, sized pointer to content."""

    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    artifact_type: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, where: str = "descriptor") -> Descriptor:
        """Parse one descriptor object; raise `InvalidManifest` naming *where*."""
        if not isinstance(obj, dict):
            raise InvalidManifest(f"{where} is not an object")
        media_type = obj.get("mediaType", "")
        size = obj.get("size")
        if not isinstance(media_type, str):
            raise InvalidManifest(f"{where}.mediaType is not a string")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_SIZE:
            raise InvalidManifest(f"{where}.size must be a non-negative integer")
        try:
            digest = Digest.parse(str(obj.get("digest", "")))
        except InvalidReference as exc:
            raise InvalidManifest(f"{where}.digest: {exc}") from exc
        annotations = obj.get("annotations") or {}
        if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise InvalidManifest(f"{where}.annotations must map strings to strings")
        artifact_type = obj.get("artifactType", "")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            platform=_platform(obj.get("platform"), where),
            artifact_type=artifact_type if isinstance(artifact_type, str) else "",
            annotations=annotations,
        )


def _platform(obj: Any, where: str) -> Platform | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise InvalidManifest(f"{where}.platform is not an object")
    os_, arch, variant = obj.get("os", ""), obj.get("architecture", ""), obj.get("variant", "")
    if not all(isinstance(v, str) for v in (os_, arch, variant)):
        raise InvalidManifest(f"{where}.platform fields must be strings")
    return Platform(os_, arch, variant)
