"""
Snapshots from the configuration: the ``[snapshots]`` table and its signing key, one
snapshot of an endpoint taken into the store, recorded in state and metrics the same
way for `drd snapshot create` and the daemon's scheduled job.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from drd.app.outcome import run_word
from drd.config import Settings, Snapshots
from drd.config.explain import describe
from drd.errors import ConfigError, VerificationError
from drd.metrics import Metrics
from drd.progress import Tally
from drd.registry.client import RegistryClient
from drd.retry import RetryPolicy
from drd.selection.filters import RepoFilter
from drd.snapshot.catalog import LATEST
from drd.snapshot.collect import SnapshotReport, run_snapshot
from drd.snapshot.model import Snapshot
from drd.snapshot.settings import BytesSource, FileSource, SettingsSource
from drd.snapshot.sign import IndexKey
from drd.snapshot.watermark import read_watermark, record_watermark, rollback_problem
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


async def check_watermark(
    settings: Settings,
    store: SnapshotStore,
    snap: Snapshot,
    *,
    ref: str,
    verified: bool,
    action: str,
) -> None:
    """
    Refuse a ``latest`` (*ref*) that is older than this host's watermark, then move the
    watermark forward to *snap* when its signature was *verified*.

    Raises `VerificationError` (reason ``rollback``) naming *action* ("restore",
    "show", ...) when newer snapshot indexes were deleted from, or replaced in, *store*.
    """
    state_dir = settings.daemon.state_dir
    if ref == LATEST:
        mark = await asyncio.to_thread(read_watermark, state_dir, store.url, snap.source)
        if rolled_back := rollback_problem(mark, snap):
            raise VerificationError(
                f"refusing to {action} latest: {rolled_back}. Check `drd snapshot list`, "
                f"then {action} an explicit id",
                reason="rollback",
            )
    if verified:
        await asyncio.to_thread(record_watermark, state_dir, store.url, snap)


async def take_snapshot(
    config: Snapshots,
    client: RegistryClient,
    store: SnapshotStore,
    *,
    source: str,
    key: IndexKey | None,
    retry: RetryPolicy,
    settings: Settings,
    progress: Tally | None = None,
) -> SnapshotReport:
    """One snapshot of *client* (the endpoint *source*) into *store*, as configured."""
    wanted = RepoFilter(tuple(config.repositories)) if config.repositories else None
    return await run_snapshot(
        client,
        store,
        source_name=source,
        repositories=wanted,
        blobs=config.blobs,
        metadata_blob_max=config.metadata_blob_max,
        signing_key=key,
        retry=retry,
        state_dir=settings.daemon.state_dir,
        progress=progress,
        settings=settings_sources(settings, config),
    )


# Where drd's own resolved configuration is recorded (and written by `restore --settings`).
DRD_CONFIG_PATH = "drd/config.json"


def settings_sources(settings: Settings, config: Snapshots) -> list[SettingsSource]:
    """
    What a snapshot records besides the registry: the ``settings`` files (secrets per
    ``settings_exclude`` by digest only), drd's resolved configuration with every
    secret masked (as `drd config check` prints it), and the trust material (public
    keys, certificate roots, trust policies) the trust tables load.
    """
    document = json.dumps(describe(settings), indent=2, sort_keys=True).encode() + b"\n"
    return [
        FileSource(config.settings, exclude=config.settings_exclude),
        BytesSource(DRD_CONFIG_PATH, document),
        FileSource(trust_files(settings), kind="trust"),
    ]


def trust_files(settings: Settings) -> list[Path]:
    """Every trust material file the configuration loaded, absolute, in table order."""
    paths: list[str] = []
    for table in settings.trust.values():
        for loaded in (
            table.key_pems(),
            table.rekor_pems(),
            table.fulcio_pems(),
            table.ctlog_pems(),
            table.notation_root_files(),
            table.notation_tsa_root_files(),
        ):
            paths += [source for source, _ in loaded]
        if (root := table.sigstore_root_json()) is not None:
            paths.append(root[0])
        if table.notation_policy is not None:
            paths.append(str(table.notation_policy))
    return [Path(p) for p in dict.fromkeys(paths) if Path(p).is_absolute()]


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
