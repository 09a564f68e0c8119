"""
Transparency-log proofs checked offline: Merkle inclusion proofs and signed checkpoints. Pure.

Hand-written (RFC 9162 §2.1.3.2, and the signed-note checkpoint format) because the
library that verifies these, sigstore-python, only takes whole bundles with inclusion
proofs and online-fetched trust; the algorithm is twenty lines and tested against
real Rekor proofs in the fixtures.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from drd.oci.digest import Digest
from drd.trust.decode import fail
from drd.trust.keys import TrustKey
from drd.trust.policy import TLOG_INVALID

# A proof for a log of 2^64 entries has 64 hashes.
MAX_PROOF_HASHES = 64
_EM_DASH = "\u2014 "


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's signed statement of its size and root hash (the note body, verified)."""

    origin: str
    tree_size: int
    root_hash: bytes


def leaf_hash(entry: bytes) -> bytes:
    """RFC 6962 leaf hash: sha256(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_proof(index: int, tree_size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root hash a proof leads to from *leaf* at *index*; ValueError when it cannot."""
    if not 0 <= index < tree_size or len(proof) > MAX_PROOF_HASHES:
        raise ValueError(f"index {index} is outside a tree of {tree_size}")
    node, last, result = index, tree_size - 1, leaf
    for sibling in proof:
        if last == 0:
            raise ValueError("the proof is longer than the tree is deep")
        if node & 1 or node == last:
            result = _node(sibling, result)
            while not node & 1 and node != 0:
                node, last = node >> 1, last >> 1
        else:
            result = _node(result, sibling)
        node, last = node >> 1, last >> 1
    if last != 0:
        raise ValueError("the proof is shorter than the tree is deep")
    return result


def verify_inclusion(
    body: bytes,
    index: int,
    tree_size: int,
    proof: Sequence[bytes],
    root_hash: bytes,
    subject: Digest,
) -> None:
    """Raise ``tlog-invalid`` unless *body* is leaf *index* of the tree with *root_hash*."""
    try:
        computed = root_from_proof(index, tree_size, leaf_hash(body), proof)
    except ValueError as exc:
        raise fail(TLOG_INVALID, f"inclusion proof is unusable: {exc}", subject) from exc
    if computed != root_hash:
        raise fail(
            TLOG_INVALID, "inclusion proof leads to another root hash than the proof's", subject
        )


def verify_checkpoint(envelope: str, keys: Sequence[TrustKey], subject: Digest) -> Checkpoint:
    """
    A signed note (``origin\\nsize\\nroot\\n…\\n\\n— name <b64 keyhint+sig>``) verified.

    The signature line's 4-byte key hint selects the log key whose log ID starts with it.
    Raises ``tlog-invalid``.
    """
    text, sep, signatures = envelope.partition("\n\n")
    lines = text.split("\n")
    if not sep or len(lines) < 3:
        raise fail(TLOG_INVALID, "checkpoint is not a signed note", subject)
    signed = (text + "\n").encode()
    for line in signatures.split("\n")[:16]:
        if not line.startswith(_EM_DASH):
            continue
        _, _, b64 = line[len(_EM_DASH) :].rpartition(" ")
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            continue
        hint, signature = raw[:4], raw[4:]
        for key in keys:
            if bytes.fromhex(key.fingerprint)[:4] == hint and key.verify(signature, signed):
                return _checkpoint(lines, subject)
    raise fail(TLOG_INVALID, "checkpoint is signed by no trusted log key", subject)


def _checkpoint(lines: list[str], subject: Digest) -> Checkpoint:
    origin, size, root = lines[0], lines[1], lines[2]
    try:
        root_hash = base64.b64decode(root, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise fail(TLOG_INVALID, "checkpoint root hash is unreadable", subject) from exc
    if not (size.isascii() and size.isdigit() and len(size) <= 19):
        raise fail(TLOG_INVALID, "checkpoint tree size is unreadable", subject)
    return Checkpoint(origin, int(size), root_hash)
