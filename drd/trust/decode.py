"""
Strict reading of signed evidence: base64, JSON, nested fields. Pure.

Every failure is a `VerificationError` about the subject digest, with the
reason the caller chooses (``malformed`` unless said otherwise).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from drd.errors import VerificationError
from drd.oci.digest import Digest
from drd.trust.policy import MALFORMED

# Signed payloads and bundles are small JSON documents; a megabyte is already hostile.
MAX_PAYLOAD_BYTES = 1024 * 1024
# A bundle lists one or two log entries and one or two signatures in practice.
MAX_ENTRIES = 16

_TYPE_NAMES = {str: "a string", int: "an integer", list: "a list", dict: "an object"}


def fail(reason: str, message: str, subject: Digest) -> VerificationError:
    """A `VerificationError` about *subject*."""
    return VerificationError(message, reason=reason, digest=str(subject))


def decode_b64(text: object, what: str, subject: Digest, reason: str = MALFORMED) -> bytes:
    """Strict standard base64; raise with *reason* when *text* is not that."""
    if not isinstance(text, str) or not text:
        raise fail(reason, f"{what} is missing or not a string", subject)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise fail(reason, f"{what} is not valid base64", subject) from exc
    # Canonical only, as Go's decoder demands: stray padding must not pass here and fail there.
    if base64.b64encode(data).decode() != text:
        raise fail(reason, f"{what} is not canonical base64", subject)
    return data


def load_json(
    raw: bytes | str, what: str, subject: Digest, reason: str = MALFORMED
) -> dict[str, Any]:
    """A JSON object; duplicate keys and NaN are refused, not resolved silently."""
    try:
        doc = json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise fail(reason, f"{what} is not valid JSON: {exc}", subject) from exc
    if not isinstance(doc, dict):
        raise fail(reason, f"{what} is not a JSON object", subject)
    return doc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise ValueError("duplicate key")
    return doc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def lookup(doc: object, path: str, kind: type, subject: Digest, reason: str) -> Any:
    """``doc[a][b]…`` for a dotted *path*, of type *kind*; raise with *reason* otherwise."""
    value = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        name = _TYPE_NAMES.get(kind, f"a {kind.__name__}")
        raise fail(reason, f"{path} is missing or not {name}", subject)
    return value
