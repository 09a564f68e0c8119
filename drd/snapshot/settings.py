"""
Registry settings recorded with a snapshot: the files that configure the registry
(access policy, auth, retention, notifications), drd's own resolved configuration and
its trust material (public keys, roots).

Each source yields `SettingsItem`s; `store_settings` writes their content
content-addressed under ``settings/sha256/<hex>`` (create-only, like every content
object) and returns the `SettingsRecord`s the index lists. An item marked secret
(a file matched by ``settings_exclude``) is recorded by path, mode, size and digest
only: its bytes never reach the store, and a restore says where it must come from.

A registry product's API is one more `SettingsSource`: it yields one item per thing it
reads (``harbor/projects.json``, ``harbor/robots.json``, …), and nothing else here changes.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from drd.errors import ConfigError, SnapshotCorrupt, SnapshotNotFound
from drd.oci.digest import Digest
from drd.store.base import SnapshotStore

# Where an item came from: a registry settings file, drd's own configuration, trust material.
KINDS = ("file", "drd", "trust")
# One settings file larger than this is not configuration.
MAX_SETTINGS_BYTES = 16 * 1024 * 1024
MAX_SETTINGS_PATH = 4096


@dataclass(frozen=True, slots=True)
class SettingsItem:
    """One piece of configuration a source read: where it lives, its mode and bytes."""

    path: str  # absolute for files; relative ("drd/config.json") for generated ones
    kind: str  # one of KINDS
    mode: int  # permission bits (0o7777 at most)
    data: bytes
    secret: bool = False  # recorded by digest only, never stored


@dataclass(frozen=True, slots=True)
class SettingsRecord:
    """One settings entry of a snapshot index; its bytes are in the store when *stored*."""

    path: str
    kind: str
    mode: int
    size: int
    digest: Digest
    stored: bool

    @property
    def key(self) -> str:
        """``settings/<algorithm>/<hex>``."""
        return settings_key(self.digest)

    def to_json(self) -> dict[str, object]:
        """The index form."""
        return {
            "path": self.path,
            "kind": self.kind,
            "mode": self.mode,
            "size": self.size,
            "digest": str(self.digest),
            "stored": self.stored,
        }


class SettingsSource(Protocol):
    """Something that reads configuration to record with a snapshot."""

    @property
    def name(self) -> str:
        """For messages: ``files``, ``drd``, ``harbor``…"""
        ...

    async def collect(self) -> list[SettingsItem]:
        """Every item this source records; `ConfigError` naming what cannot be read."""
        ...


def settings_key(digest: Digest) -> str:
    """``settings/<algorithm>/<hex>``."""
    return f"settings/{digest.algorithm}/{digest.hex}"


def check_settings_path(path: str) -> str:
    """Return *path* if it can name a settings entry (and a file under a restore folder)."""
    parts = path.lstrip("/").split("/")
    if (
        not path
        or len(path) > MAX_SETTINGS_PATH
        or any(p in ("", ".", "..") for p in parts)
        or "\\" in path
        or "\x00" in path
    ):
        raise ValueError(f"settings path {path[:120]!r} is not a plain file path")
    return path


class FileSource:
    """Files named in the configuration, read as they are; *exclude* globs mark secrets."""

    def __init__(
        self, paths: Iterable[Path], *, kind: str = "file", exclude: Sequence[str] = ()
    ) -> None:
        self.paths = list(dict.fromkeys(paths))
        self.kind = kind
        self.exclude = tuple(exclude)
        self.name = f"{kind} files"

    async def collect(self) -> list[SettingsItem]:
        """Read every file (a missing or unreadable one is a `ConfigError` naming it)."""
        return [await asyncio.to_thread(self._read, path) for path in self.paths]

    def _read(self, path: Path) -> SettingsItem:
        name = str(path)
        try:
            with path.open("rb") as f:
                info = os.fstat(f.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise ConfigError(f"settings file {name} is not a regular file")
                if info.st_size > MAX_SETTINGS_BYTES:
                    raise ConfigError(
                        f"settings file {name} is over {MAX_SETTINGS_BYTES} bytes: "
                        "not configuration"
                    )
                data = f.read(MAX_SETTINGS_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read settings file {name}: {exc.strerror}") from exc
        secret = any(fnmatch.fnmatchcase(name, glob) for glob in self.exclude)
        return SettingsItem(name, self.kind, stat.S_IMODE(info.st_mode), data, secret)


class BytesSource:
    """One generated document (drd's resolved configuration), recorded as given."""

    def __init__(self, path: str, data: bytes, *, kind: str = "drd", mode: int = 0o600) -> None:
        self.item = SettingsItem(check_settings_path(path), kind, mode, data)
        self.name = path

    async def collect(self) -> list[SettingsItem]:
        """The one document."""
        return [self.item]


async def store_settings(
    store: SnapshotStore, sources: Sequence[SettingsSource]
) -> tuple[SettingsRecord, ...]:
    """
    Collect every source and write each non-secret item's bytes to *store*
    (content-addressed, create-only); the records, sorted by path. A path named twice
    keeps its first item.
    """
    records: dict[str, SettingsRecord] = {}
    for source in sources:
        for item in await source.collect():
            if item.path in records:
                continue
            digest = Digest.of(item.data)
            if not item.secret:
                await store.put_bytes(settings_key(digest), item.data, create_only=True)
            records[item.path] = SettingsRecord(
                item.path, item.kind, item.mode, len(item.data), digest, not item.secret
            )
    return tuple(records[p] for p in sorted(records))


async def load_settings_file(store: SnapshotStore, record: SettingsRecord) -> bytes:
    """A stored entry's bytes, checked against its digest and size (`SnapshotCorrupt`)."""
    try:
        data = await store.get_bytes(record.key, max_size=MAX_SETTINGS_BYTES)
    except SnapshotNotFound:
        raise SnapshotCorrupt(
            f"settings file {record.path} ({record.digest}) is missing from the store",
            key=record.key,
        ) from None
    if len(data) != record.size or not record.digest.matches(data):
        raise SnapshotCorrupt(
            f"stored settings file {record.path} is corrupt: it is not {record.digest}",
            key=record.key,
        )
    return data


@dataclass
class SettingsRestore:
    """What `write_settings` wrote, what it would not overwrite, and the secrets it lacks."""

    snapshot: str
    folder: str
    written: list[SettingsRecord] = field(default_factory=list)
    existing: list[SettingsRecord] = field(default_factory=list)  # refused without --force
    secrets: list[SettingsRecord] = field(default_factory=list)  # recorded by digest only

    @property
    def ok(self) -> bool:
        """Nothing was refused."""
        return not self.existing

    def to_json(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "snapshot": self.snapshot,
            "folder": self.folder,
            "ok": self.ok,
            "written": [r.to_json() for r in self.written],
            "existing": [r.to_json() for r in self.existing],
            "secrets": [r.to_json() for r in self.secrets],
        }


async def write_settings(
    store: SnapshotStore,
    snapshot_id: str,
    records: Sequence[SettingsRecord],
    folder: Path,
    *,
    force: bool = False,
) -> SettingsRestore:
    """
    Write every stored settings entry under *folder* (``/etc/x.yml`` becomes
    ``<folder>/etc/x.yml``) with its recorded mode, each checked against its digest.

    Nothing is written when a target exists, unless *force*: the report lists them.
    Entries recorded by digest only (secrets) are listed, not written. Writes go to a
    temporary file renamed into place, so a target is whole or untouched.
    """
    report = SettingsRestore(snapshot_id, str(folder))
    targets = await asyncio.to_thread(_targets, records, folder, force, report)
    if report.existing:
        return report
    for record, target in targets:
        data = await load_settings_file(store, record)
        await asyncio.to_thread(_write_file, target, data, record.mode)
        report.written.append(record)
    return report


def _targets(
    records: Sequence[SettingsRecord], folder: Path, force: bool, report: SettingsRestore
) -> list[tuple[SettingsRecord, Path]]:
    """Where each stored entry goes; secrets and (without *force*) existing files noted."""
    root = folder.resolve()
    targets: list[tuple[SettingsRecord, Path]] = []
    for record in records:
        if not record.stored:
            report.secrets.append(record)
            continue
        target = root / check_settings_path(record.path).lstrip("/")
        # The index was checked, but a symlink already in the folder could still lead out.
        if not target.resolve().is_relative_to(root):
            raise SnapshotCorrupt(f"settings path {record.path} leads out of {root}")
        targets.append((record, target))
        if not force and (target.exists() or target.is_symlink()):
            report.existing.append(record)
    return targets


def _write_file(target: Path, data: bytes, mode: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.drd-restore")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # the recorded mode, whatever the umask
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
