"""
Every failure drd can report, in one tree.

```
DrdError
├── ConfigError                 invalid configuration (exit 78)
├── InvalidReference            also a ValueError
├── InvalidManifest             also a ValueError: unparseable, oversized, hostile
├── IntegrityError              content is wrong; never retried, always loud
│   ├── DigestMismatch          .expected .actual
│   └── SizeMismatch            .expected .actual
├── TransientError              safe to retry (the retry predicate checks only this)
├── RegistryError               .registry .repository .status .code
│   ├── NotFound
│   ├── Unauthorized            401 and 403
│   ├── UnsupportedAPI          e.g. no referrers API: fall back to the tag schema
│   ├── RateLimited             + TransientError, .retry_after
│   ├── RegistryUnavailable     + TransientError (5xx, connect/read errors, timeouts, deadlines)
│   ├── UnsafeResponse          a token, realm or redirect drd refuses to act on
│   └── ListTooLong             a tag list or catalog over its cap; .cap
├── VerificationError           a signature did not verify; .reason
├── FailoverRefused             the switch cannot be made as asked
├── StateError                  the state database is unusable; .path
│   ├── StateCorrupt            not a database, or it fails its integrity check
│   └── LeaseLost               this node no longer holds the unit's lease: no tag write
└── StorageError                .bucket .key
    ├── SnapshotNotFound
    ├── SnapshotCorrupt         + IntegrityError
    └── StorageUnavailable      + TransientError
```

This module imports nothing from drd.
"""

from __future__ import annotations

from typing import Any


class DrdError(Exception):
    """The root of every error drd reports on purpose."""

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        for key, value in extra.items():
            setattr(self, key, value)

    def __str__(self) -> str:
        return self.message


class ConfigError(DrdError):
    """The configuration is invalid; `.errors` lists (path, message) pairs."""

    def __init__(self, message: str, *, errors: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.errors: list[tuple[str, str]] = errors or []


class InvalidReference(DrdError, ValueError):
    """A reference, repository name, tag or digest does not follow the grammar."""


class InvalidManifest(DrdError, ValueError):
    """A manifest is not valid JSON, too large, or structurally hostile."""


class IntegrityError(DrdError):
    """Content is not what its digest or size says. Never retried."""


class DigestMismatch(IntegrityError):
    """The bytes hash to another digest than the one expected."""

    def __init__(self, message: str, *, expected: str, actual: str, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.expected = expected
        self.actual = actual


class SizeMismatch(IntegrityError):
    """The byte count differs from the descriptor's size."""

    def __init__(self, message: str, *, expected: int, actual: int, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.expected = expected
        self.actual = actual


class TransientError(DrdError):
    """A failure that may go away: the only kind the retry policy retries."""


class RegistryError(DrdError):
    """A registry answered with an error, or could not be used."""

    def __init__(
        self,
        message: str,
        *,
        registry: str = "",
        repository: str = "",
        status: int | None = None,
        code: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message, **extra)
        self.registry = registry
        self.repository = repository
        self.status = status
        self.code = code


class NotFound(RegistryError):
    """The registry does not have it (404)."""


class Unauthorized(RegistryError):
    """The registry refused our credentials (401, 403)."""


class UnsupportedAPI(RegistryError):
    """The registry does not implement an optional API (e.g. referrers)."""


class RateLimited(RegistryError, TransientError):
    """The registry answered 429; `.retry_after` is seconds to wait, if it said."""

    def __init__(self, message: str, *, retry_after: float | None = None, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.retry_after = retry_after


class RegistryUnavailable(RegistryError, TransientError):
    """5xx, connection or read failures, timeouts, a request past its deadline."""


class UnsafeResponse(RegistryError):
    """
    The registry sent something drd refuses to act on; never retried.

    A token a header cannot carry (a line break), an auth realm with credentials in
    its URL, a redirect to another scheme or to an address the registry may not send
    drd to.
    """


class ListTooLong(RegistryError):
    """A tag list or catalog holds more entries than the endpoint's cap (`.cap`)."""

    def __init__(self, message: str, *, cap: int, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.cap = cap


class VerificationError(DrdError):
    """A signature or trust check failed; `.reason` is a short machine-readable word."""

    def __init__(self, message: str, *, reason: str, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.reason = reason


class StorageError(DrdError):
    """The snapshot store failed."""

    def __init__(self, message: str, *, bucket: str = "", key: str = "", **extra: Any) -> None:
        super().__init__(message, **extra)
        self.bucket = bucket
        self.key = key


class SnapshotNotFound(StorageError):
    """No snapshot (or object) under that id or key."""


class SnapshotCorrupt(StorageError, IntegrityError):
    """A stored object does not match its digest, or an index is malformed."""


class StorageUnavailable(StorageError, TransientError):
    """The store is unreachable or throttling."""


class StateError(DrdError):
    """The daemon's state database cannot be used; `.path` is the file."""

    def __init__(self, message: str, *, path: str = "", **extra: Any) -> None:
        super().__init__(message, **extra)
        self.path = path


class StateCorrupt(StateError):
    """The state database is not a database, or fails SQLite's integrity check."""


class LeaseLost(StateError):
    """This node's lease on a unit of work expired or was taken: it must not write a tag."""


class Busy(DrdError):
    """A cluster-wide singleton (failover, failback) is running elsewhere; `.holder` says who."""

    def __init__(self, message: str, *, holder: Any = None, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.holder = holder


class FailoverRefused(DrdError):
    """The switch cannot be made as asked (unknown endpoint, already active, nothing to undo)."""
