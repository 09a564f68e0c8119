"""
Read a stored snapshot index as a stream. Pure: bytes are pushed in, a `Snapshot` comes out.

An index is untrusted input. `IndexReader` inflates it chunk by chunk (refusing more
than `MAX_INDEX_BYTES` of JSON), parses the JSON as events (ijson) and turns each
entry of the large members (manifests, blobs, repositories, metadata blobs, skipped
tags) into the model as it arrives, so neither the JSON text nor a whole JSON
document is ever held: only the model, whose digests are shared (each digest one
object however often the index names it). Every name, tag, digest and
cross-reference is validated as `drd.snapshot.validate` says, and the model's
canonical body must hash to the index's ``index_digest``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

import ijson  # type: ignore[import-untyped]  # ijson ships no type information
from ijson.common import ObjectBuilder  # type: ignore[import-untyped]
from ijson.utils import sendable_list  # type: ignore[import-untyped]

from drd.errors import SnapshotCorrupt
from drd.oci.digest import Digest
from drd.snapshot import model
from drd.snapshot import validate as v
from drd.snapshot.model import ManifestRecord, RepositoryRecord, Skipped, Snapshot

# Inflated JSON is parsed this much at a time.
_STEP = 1024 * 1024

_MAPS = ("manifests", "blobs", "repositories")
_LISTS = ("metadata_blobs", "skipped")
_SMALL = ("kind", "schema_version", "id", "source", "source_url", "taken_at", "duration_s")
_FIELDS = frozenset(
    (*_MAPS, *_LISTS, *_SMALL, "blobs_stored", "settings", "signature", "index_digest")
)
_OPEN = frozenset(("start_map", "start_array"))
_CLOSE = frozenset(("end_map", "end_array"))


def parse_index(data: bytes, *, key: str = "") -> Snapshot:
    """
    Parse a stored (gzipped) index held in memory as untrusted input.

    Raises `SnapshotCorrupt` naming the offending path; see `IndexReader`.
    """
    reader = IndexReader(key=key)
    for start in range(0, len(data), _STEP):
        reader.feed(data[start : start + _STEP])
    return reader.close()


class IndexReader:
    """
    One index, pushed in as gzip chunks (`feed`), parsed as it comes; `close` checks it
    whole and returns the `Snapshot`.

    Every name, tag and digest is validated, every cross-reference is checked (tags and
    referrers point at listed manifests, children and blobs are listed), and the body
    must hash to ``index_digest``. When *key* is given, the index must name the source
    and id its key says. Raises `SnapshotCorrupt` naming the offending path. The
    signature, if any, is parsed, not verified.
    """

    def __init__(self, *, key: str = "") -> None:
        self.key = key
        self.where = key or "(unnamed)"
        self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._inflated = 0
        self._events: Any = sendable_list()
        self._parser = ijson.basic_parse_coro(self._events, use_float=True)
        self._doc = _Document()

    def feed(self, data: bytes) -> None:
        """Inflate and parse one more chunk of the stored index."""
        while data and not self._inflate.eof:
            try:
                out = self._inflate.decompress(data, _STEP)
            except zlib.error as exc:
                raise self._corrupt(f"is not gzip: {exc}") from exc
            data = self._inflate.unconsumed_tail
            self._inflated += len(out)
            if self._inflated > model.MAX_INDEX_BYTES:
                raise self._corrupt(f"inflates past {model.MAX_INDEX_BYTES} bytes")
            self._parse(out)

    def close(self) -> Snapshot:
        """The whole index, checked; raises `SnapshotCorrupt` when it is not a valid index."""
        if not self._inflate.eof:
            raise self._corrupt("is truncated")
        try:
            self._parser.close()
        except ijson.JSONError as exc:
            raise self._corrupt(f"is not JSON: {exc}") from exc
        self._drain()
        try:
            snapshot = self._doc.snapshot()
        except v.Bad as exc:
            raise SnapshotCorrupt(f"snapshot index {self.where}: {exc}", key=self.key) from None
        if self.key:
            named = model.parse_index_key(self.key)
            if named != (snapshot.source, snapshot.id):
                raise SnapshotCorrupt(
                    f"snapshot index {self.where} claims to be {snapshot.source}/{snapshot.id}",
                    key=self.key,
                )
        return snapshot

    def _parse(self, text: bytes) -> None:
        if not text:
            return
        try:
            self._parser.send(text)
        except ijson.JSONError as exc:
            raise self._corrupt(f"is not JSON: {exc}") from exc
        self._drain()

    def _drain(self) -> None:
        try:
            self._doc.events(self._events)
        except v.Bad as exc:
            raise SnapshotCorrupt(f"snapshot index {self.where}: {exc}", key=self.key) from None
        finally:
            del self._events[:]

    def _corrupt(self, what: str) -> SnapshotCorrupt:
        return SnapshotCorrupt(f"snapshot index {self.where} {what}", key=self.key)


class _Document:
    """The event handler: small members kept whole, large ones turned into the model per entry."""

    def __init__(self) -> None:
        self.state = "start"  # start, top, map, list, end
        self.top = ""  # the top-level member being read
        self.entry = ""  # the key of the current entry of a large map
        self.builder: ObjectBuilder | None = None
        self.level = 0
        self.seen: set[str] = set()
        self.head: dict[str, Any] = {}
        self.problem: v.Bad | None = None  # the first bad entry; reported after the head
        self.digests = v.Digests()
        self.manifests: dict[Digest, ManifestRecord] = {}
        self.blobs: dict[Digest, int] = {}
        self.repositories: dict[str, RepositoryRecord] = {}
        self.metadata: list[Digest] | None = None
        self.skipped: list[Skipped] = []

    def events(self, events: Iterable[tuple[str, Any]]) -> None:
        for event, value in events:
            if self.builder is not None:
                self.builder.event(event, value)
                if event in _OPEN:
                    self.level += 1
                elif event in _CLOSE:
                    self.level -= 1
                    if not self.level:
                        built, self.builder = self.builder.value, None
                        self._value(built)
            elif self.state == "map" and event == "map_key":
                self.entry = value
            elif self.state in ("map", "list") and event in _CLOSE:
                self.state = "top"
            elif self.state == "top" and event == "map_key":
                self._member(value)
            elif self.state == "top" and event == "end_map":
                self.state = "end"
            elif self.state == "top" and event == "start_map" and self.top in _MAPS:
                self.state = "map"
            elif self.state == "top" and event == "start_array" and self.top in _LISTS:
                self.state = "list"
                if self.top == "metadata_blobs":
                    self.metadata = []
            elif self.state == "start":
                if event != "start_map":
                    raise v.Bad("the document is not a JSON object")
                self.state = "top"
            elif event in _OPEN:
                self.builder = ObjectBuilder()
                self.builder.event(event, value)
                self.level = 1
            else:
                self._value(value)

    def _member(self, name: str) -> None:
        if name not in _FIELDS or name in self.seen:
            raise v.Bad(f"the body is not in canonical form (field {name[:80]!r})")
        self.seen.add(name)
        self.top = name

    def _value(self, value: Any) -> None:
        if self.state == "top":
            self.head[self.top] = value
            return
        if self.problem is not None:
            return
        try:
            self._entry(value)
        except v.Bad as exc:
            self.problem = exc

    def _entry(self, value: Any) -> None:
        top, digest = self.top, self.digests.parse
        if top == "manifests":
            found, record = v.manifest_entry(self.entry, value, digest)
            self.manifests[found] = record
        elif top == "blobs":
            path = f"blobs[{self.entry[:80]!r}]"
            self.blobs[digest(self.entry, path)] = v.size(value, path)
        elif top == "repositories":
            self.repositories[self.entry] = v.repository_entry(self.entry, value, digest)
        elif top == "metadata_blobs" and self.metadata is not None:
            self.metadata.append(digest(value, f"metadata_blobs[{len(self.metadata)}]"))
        elif top == "skipped":
            self.skipped.append(v.skipped_entry(len(self.skipped), value))

    def snapshot(self) -> Snapshot:
        head = self.head
        for name in (*_MAPS, "skipped"):
            if name not in self.seen or name in head:
                kind = "list" if name == "skipped" else "dict"
                raise v.Bad(f"{name} must be {kind}")
        if "metadata_blobs" in head:
            raise v.Bad("metadata_blobs must be a list of digests")
        fields = v.head_fields(head)
        if self.problem is not None:
            raise self.problem
        metadata = frozenset(self.metadata) if self.metadata is not None else None
        v.check_graph(self.manifests, self.blobs, metadata)
        for name, repo in self.repositories.items():
            v.check_repository(name, repo, self.manifests)
        snapshot = Snapshot(
            **fields,
            repositories=self.repositories,
            manifests=self.manifests,
            blobs=self.blobs,
            skipped=tuple(self.skipped),
            signature=v.signature(head.get("signature")),
            metadata_blobs=metadata,
            settings=v.settings(head.get("settings", []), self.digests.parse),
        )
        claimed = self.digests.parse(v.get(head, "index_digest", str, ""), "index_digest")
        if snapshot.digest != claimed:
            raise v.Bad(f"the body hashes to {snapshot.digest}, not its index_digest {claimed}")
        return snapshot
