"""Shared pieces of the reliability suite: corpora to copy, and S3 stores to judge with."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from drd.errors import DrdError
from drd.oci import mediatype
from drd.oci.digest import Digest
from drd.retry import RetryPolicy
from drd.snapshot.catalog import load_snapshot, verify_snapshot
from drd.store.s3 import S3Store
from tests.images import OCI_LAYER_TAR, Blob, MiB, RegistryWriter
from tests.servers import LocalRegistry

LAYERS = (20 * MiB, 30 * MiB, 40 * MiB)
# One botocore session for every store: a session loads the S3 service model once, and
# loading it takes a good part of a second.
_SESSION = get_session()


def compact_json(document: object) -> bytes:
    """*document* as compact JSON bytes: how the test manifests are written."""
    return json.dumps(document, separators=(",", ":")).encode()


async def push_large_corpus(
    registry: LocalRegistry, repo: str, layers: tuple[int, ...] = LAYERS
) -> dict[str, Digest]:
    """One image per size in *layers*, each with one large seeded layer, tagged v1, v2, …."""
    tags: dict[str, Digest] = {}
    async with RegistryWriter(registry) as writer:
        for number, size in enumerate(layers, start=1):
            seed = f"{repo}/layer/{number}"
            layer = await writer.push_large_blob(repo, size, seed)
            config = Blob(
                compact_json({"architecture": "amd64", "os": "linux", "seed": seed}),
                mediatype.OCI_CONFIG,
            )
            await writer.push_blob(repo, config)
            raw = compact_json(
                {
                    "schemaVersion": 2,
                    "mediaType": mediatype.OCI_MANIFEST,
                    "config": config.descriptor(),
                    "layers": [{"mediaType": OCI_LAYER_TAR, "digest": str(layer), "size": size}],
                }
            )
            tags[f"v{number}"] = await writer.push_manifest(
                repo, f"v{number}", raw, mediatype.OCI_MANIFEST
            )
    return tags


@contextlib.asynccontextmanager
async def s3_store(
    endpoint: str,
    bucket: str,
    prefix: str,
    *,
    read_timeout: float = 5.0,
    retry: RetryPolicy | None = None,
) -> AsyncIterator[S3Store]:
    """An S3Store on *bucket*/*prefix* at *endpoint*; botocore's own retries off."""
    config = AioConfig(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=read_timeout,
        read_timeout=read_timeout,
        s3={"addressing_style": "path"},
    )
    async with _SESSION.create_client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", config=config
    ) as client:
        yield S3Store(client, bucket, prefix, retry=retry or RetryPolicy.no_wait(3))


async def read_back(store: S3Store, snapshot_id: str) -> str:
    """Load and verify one snapshot: "" when it all checks out, else what went wrong."""
    try:
        snapshot = await load_snapshot(store, "src", snapshot_id)
        verified = await verify_snapshot(store, snapshot)
    except DrdError as exc:
        return f"read back failed: {type(exc).__name__}: {exc}"
    if not verified.ok:
        return f"read back found: {verified.problems[0].reason}"
    return ""
