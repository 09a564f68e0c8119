"""Digest: a content address, ``algorithm:hex``. Pure."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from drd.errors import InvalidReference

# Algorithms drd can compute, with the hex length each produces.
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"^[a-f0-9]+$")
# One string object per algorithm name, shared by every parsed digest.
_ALGORITHM = {name: name for name in _HEX_LENGTH}


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    """A parsed, validated digest. ``str(d)`` gives ``sha256:<hex>``."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``algorithm:hex``; raise `InvalidReference` naming what is wrong."""
        if not isinstance(text, str):
            raise InvalidReference(f"digest must be a string, got {type(text).__name__}")
        algorithm, sep, hexpart = text.partition(":")
        if not sep:
            raise InvalidReference(f"digest {text[:80]!r} has no algorithm prefix")
        expected = _HEX_LENGTH.get(algorithm)
        if expected is None:
            raise InvalidReference(f"digest algorithm {algorithm[:20]!r} is not supported")
        if len(hexpart) != expected or not _HEX.fullmatch(hexpart):
            raise InvalidReference(
                f"digest {text[:80]!r} must have {expected} lower-case hex characters"
            )
        return cls(_ALGORITHM[algorithm], hexpart)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of *data*."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        """A fresh hash object of this digest's algorithm, for streaming."""
        return hashlib.new(self.algorithm)

    def matches(self, data: bytes) -> bool:
        """Whether *data* hashes to this digest."""
        return hashlib.new(self.algorithm, data).hexdigest() == self.hex

    @property
    def tag_form(self) -> str:
        """The cosign / referrers-fallback tag prefix: ``sha256-<hex>``."""
        return f"{self.algorithm}-{self.hex}"

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"
