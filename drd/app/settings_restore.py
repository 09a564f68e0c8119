"""
`drd restore --settings DIR`: the registry settings a snapshot recorded, written out for
the operator. Needs the snapshot store only, no registry; the index is trusted exactly
as for a registry restore (signature, ``latest`` watermark).
"""

from __future__ import annotations

from pathlib import Path

from drd.app.restore import _trusted_snapshot
from drd.app.snapshots import snapshots_config
from drd.config import Settings
from drd.resources import retry_policy
from drd.snapshot.settings import SettingsRestore, write_settings
from drd.store.open import open_store


async def restore_settings(
    settings: Settings,
    *,
    snapshot: str,
    folder: Path,
    source: str | None = None,
    force: bool = False,
    allow_unsigned: bool = False,
) -> SettingsRestore:
    """
    Write *snapshot*'s stored settings files under *folder*; existing files are left
    alone (and reported) unless *force*. Raises `VerificationError` for an untrusted
    index, as `restore_from_settings` does.
    """
    config = snapshots_config(settings)
    async with open_store(config, retry_policy(settings.retry)) as store:
        snap = await _trusted_snapshot(
            settings, store, source or config.source, snapshot, allow_unsigned
        )
        return await write_settings(store, snap.id, snap.settings, folder, force=force)
