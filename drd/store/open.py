"""Open the snapshot store a ``[snapshots] store`` URL names: file://, s3:// or oci://."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import structlog

from drd.errors import ConfigError, StorageError
from drd.retry import RetryPolicy

if TYPE_CHECKING:
    pass

from drd.store.base import (
    SnapshotStore,
    StoreSettings,
)
from drd.store.dir import DirStore
from drd.store.s3 import S3Options, S3Store

log = structlog.get_logger(__name__)


def parse_store_url(url: str) -> tuple[str, str, str]:
    """``("file", "", path)`` or ``("s3", bucket, prefix)``; `ConfigError` otherwise."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(
                "a file:// store must be a local path",
                errors=[("snapshots.store", f"{url!r} names host {parts.netloc!r}")],
            )
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ConfigError(
                "a file:// store needs an absolute path",
                errors=[("snapshots.store", f"{url!r} is not absolute")],
            )
        return "file", "", path
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ConfigError(
                "an s3:// store needs a bucket",
                errors=[("snapshots.store", f"{url!r} has no bucket")],
            )
        return "s3", parts.netloc, parts.path.strip("/")
    raise ConfigError(
        "snapshots.store must be file:///path or s3://bucket/prefix",
        errors=[("snapshots.store", f"{url[:100]!r} has neither scheme")],
    )


_LOADER: list[Any] = []


def _share_loader(session: Any) -> None:
    """
    Reuse one botocore data loader: parsing the S3 service model costs about half a
    second per session, and the loader only caches files read from disk.
    """
    if _LOADER:
        session.register_component("data_loader", _LOADER[0])
    else:
        _LOADER.append(session.get_component("data_loader"))


@contextlib.asynccontextmanager
async def open_store(
    config: StoreSettings, retry: RetryPolicy | None = None
) -> AsyncIterator[SnapshotStore]:
    """
    The store ``[snapshots]`` names, opened for the duration of the block.

    ``file:///path`` gives a `DirStore` (the folder is created, and temporary files a
    crashed or interrupted writer left are removed). ``s3://bucket/prefix``
    gives an `S3Store` whose aiobotocore client lives exactly as long as the block;
    credentials come from the usual AWS environment and files. ``oci://endpoint/repo``
    gives an `OciStore` (drd.store.oci) on that configured endpoint. botocore's own
    retries are off: *retry* retries each request, and nested retries multiply.
    """
    if config.store.startswith("oci://"):
        # Its own module (oras, requests) loaded only for an oci:// store.
        from drd.store.oci import OciStoreSettings, open_oci_store

        if not isinstance(config, OciStoreSettings):
            raise ConfigError(
                "an oci:// store needs its endpoint",
                errors=[("snapshots.store", "no endpoint was resolved for the OCI store")],
            )
        async with open_oci_store(config, retry) as oci:
            yield oci
        return
    kind, bucket, path = parse_store_url(config.store)
    if kind == "file":
        root = Path(path)
        try:
            await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the snapshot folder {root}: {exc}") from exc
        store = DirStore(root)
        # On open, not only on prune: a crashed writer's temporaries are dead weight now.
        await store.clean_temporaries()
        yield store
        return
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    endpoint = config.s3_endpoint_url
    client_config = AioConfig(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=15,
        read_timeout=60,
        # Path-style for custom endpoints: MinIO, Ceph and moto rarely have bucket DNS.
        s3={"addressing_style": "path"} if endpoint else None,
    )
    session = get_session()
    _share_loader(session)
    async with session.create_client(
        "s3", endpoint_url=endpoint, region_name=config.s3_region, config=client_config
    ) as client:
        yield S3Store(
            client,
            bucket,
            path,
            retry=retry,
            options=S3Options(
                sse=config.s3_sse,
                object_lock_days=config.s3_object_lock_days,
                object_lock_mode=config.s3_object_lock_mode,
            ),
        )
