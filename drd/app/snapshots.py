"""
Snapshots from the configuration: the ``[snapshots]`` table and its signing key, one
snapshot of an endpoint taken into the store, recorded in state and metrics the same
way for `drd snapshot create` and the daemon's scheduled job.
"""

from __future__ import annotations

import time

from drd.app.outcome import run_word
from drd.config import Settings, Snapshots
from drd.errors import ConfigError
from drd.metrics import Metrics
from drd.registry.client import RegistryClient
from drd.retry import RetryPolicy
from drd.selection.filters import RepoFilter
from drd.snapshot.collect import SnapshotReport, run_snapshot
from drd.snapshot.sign import IndexKey
from drd.state import RunRecord, StateStore
from drd.store.base import SnapshotStore


def snapshots_config(settings: Settings) -> Snapshots:
    """The ``[snapshots]`` table; `ConfigError` when it is missing."""
    if settings.snapshots is None:
        raise ConfigError(
            "snapshots are not configured", errors=[("snapshots", "add a [snapshots] table")]
        )
    return settings.snapshots


def index_key_for(config: Snapshots | None) -> IndexKey | None:
    """The configured snapshot signing key (signs, and verifies what is read), or None."""
    pem = config.signing_key() if config is not None else None
    if config is None or pem is None:
        return None
    return IndexKey.from_pem(pem, str(config.signing_key_file or "snapshots.signing_key_file"))


async def take_snapshot(
    config: Snapshots,
    client: RegistryClient,
    store: SnapshotStore,
    *,
    source: str,
    key: IndexKey | None,
    retry: RetryPolicy,
    settings: Settings,
) -> SnapshotReport:
    """One snapshot of *client* (the endpoint *source*) into *store*, as configured."""
    wanted = RepoFilter(tuple(config.repositories)) if config.repositories else None
    return await run_snapshot(
        client,
        store,
        source_name=source,
        repositories=wanted,
        blobs=config.blobs,
        signing_key=key,
        retry=retry,
        state_dir=settings.daemon.state_dir,
    )


async def record_snapshot(
    report: SnapshotReport,
    *,
    trigger: str,
    started: float,
    state: StateStore | None,
    metrics: Metrics | None = None,
) -> None:
    """Record *report* as a run of the job ``snapshot`` (state) and in the metrics."""
    finished = time.time()
    if state is not None:
        await state.record_run(
            RunRecord(
                "snapshot",
                "snapshot",
                trigger,
                started,
                finished,
                run_word(report.ok, report.snapshot is None),
                report.summary(),
                report.error,
            )
        )
    if metrics is not None:
        metrics.record_snapshot(
            report.source,
            ok=report.snapshot is not None,
            duration_s=report.duration_s,
            finished_at=finished,
            manifests=len(report.snapshot.manifests) if report.snapshot else None,
            uploaded_bytes=report.bytes_uploaded,
        )
