"""
Restores from the configuration: load the snapshot, refuse one that is unsigned (unless
allowed) or older than this host has seen as ``latest``, confirm a write outside the
drill target, restore, and record the run in the state database.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable

import structlog

from drd.app.outcome import run_word
from drd.app.snapshots import check_watermark, index_key_for, snapshots_config
from drd.config import Settings
from drd.errors import VerificationError
from drd.progress import Tally
from drd.resources import Resources
from drd.restore.plan import Selection
from drd.restore.runner import RestoreReport, restore_snapshot
from drd.snapshot.catalog import load_snapshot
from drd.snapshot.model import Snapshot
from drd.snapshot.sign import signature_problem
from drd.state import RunRecord, StateStore
from drd.store.base import SnapshotStore
from drd.store.open import open_store

log = structlog.get_logger(__name__)

# Asked before writing into an endpoint that is not the drill target: True goes on.
Confirm = Callable[[Snapshot], Awaitable[bool]]


async def restore_from_settings(
    settings: Settings,
    res: Resources,
    *,
    snapshot: str,
    to: str,
    source: str | None = None,
    selection: Selection | None = None,
    prefix: str = "",
    dry_run: bool = False,
    allow_unsigned: bool = False,
    confirm: Confirm | None = None,
    state: StateStore | None = None,
    progress: Tally | None = None,
) -> RestoreReport | None:
    """
    Restore *snapshot* of *source* into the endpoint *to*; None when *confirm* said no.

    Raises `VerificationError` for an untrusted index (unless *allow_unsigned*) or a
    ``latest`` older than this host's watermark; nothing is written then.
    """
    config = snapshots_config(settings)
    source = source or config.source
    started = time.time()
    async with open_store(config, res.retry) as store:
        snap = await _trusted_snapshot(settings, store, source, snapshot, allow_unsigned)
        if confirm is not None and not await confirm(snap):
            return None
        report = await restore_snapshot(
            store,
            snap,
            res.registries[to],
            sources=res.registries,
            selection=selection or Selection(),
            repository_prefix=prefix,
            dry_run=dry_run,
            retry=res.retry,
            progress=progress,
        )
    if state is not None and not dry_run:
        await state.record_run(
            RunRecord(
                f"restore:{to}",
                "restore",
                "manual",
                started,
                time.time(),
                run_word(report.ok, False),
                report.summary(),
                "; ".join(f"{k}: {v}" for k, v in sorted(report.failures.items()))[:1000],
            )
        )
    return report


async def _trusted_snapshot(
    settings: Settings, store: SnapshotStore, source: str, ref: str, allow_unsigned: bool
) -> Snapshot:
    """The snapshot *ref*, checked against the signing key and this host's watermark."""
    snap = await load_snapshot(store, source, ref)
    problem = signature_problem(snap, index_key_for(settings.snapshots))
    if problem is not None and not allow_unsigned:
        raise VerificationError(
            f"{problem}; refusing to restore it (--allow-unsigned-snapshot restores an "
            "index that is not verified)",
            reason=problem.reason,
        )
    if problem is not None:
        # Loud on purpose: whoever can write to the store chose what is restored.
        log.warning("restore.unverified_snapshot", snapshot=snap.id, reason=str(problem))
        sys.stderr.write(f"drd: WARNING: restoring an unverified snapshot: {problem}\n")
    # "restore an explicit id" is said with --snapshot ID on this command.
    await check_watermark(
        settings, store, snap, ref=ref, verified=problem is None, action="restore"
    )
    return snap
