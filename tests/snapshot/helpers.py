"""Helpers for snapshot and restore tests: stores on a folder or moto, configs, `python -m drd`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drd.config import Endpoint
from drd.retry import RetryPolicy
from drd.store.base import SnapshotStore, StoredObject
from drd.store.open import open_store
from tests.servers import LocalRegistry

RETRY = RetryPolicy.no_wait(attempts=2)


@dataclass(frozen=True)
class StoreConfig:
    """What `open_store` reads from ``[snapshots]``."""

    store: str
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_sse: str | None = None
    s3_object_lock_days: int | None = None
    s3_object_lock_mode: str = "COMPLIANCE"
    endpoint: Endpoint | None = None  # an oci:// store's endpoint

    def store_endpoint(self) -> Endpoint | None:
        """The endpoint of an oci:// store (`drd.config.Snapshots` resolves it from the config)."""
        return self.endpoint


def oci_store_config(
    registry: LocalRegistry | str, repository: str, name: str = "vault"
) -> StoreConfig:
    """An oci:// store in *repository* of *registry* (or a URL), named as endpoint *name*."""
    url = registry if isinstance(registry, str) else registry.url
    endpoint = Endpoint(name=name, url=url)
    return StoreConfig(store=f"oci://{name}/{repository}", endpoint=endpoint)


def store_config(kind: str, tmp_path: Path, s3_endpoint: str = "", bucket: str = "") -> StoreConfig:
    """A folder store under *tmp_path*, or an S3 store in *bucket* under the prefix ``snaps``."""
    if kind == "dir":
        return StoreConfig(store=(tmp_path / "store").as_uri())
    return StoreConfig(
        store=f"s3://{bucket}/snaps", s3_endpoint_url=s3_endpoint, s3_region="us-east-1"
    )


@contextlib.asynccontextmanager
async def opened(config: StoreConfig) -> AsyncIterator[SnapshotStore]:
    """`open_store` with the no-wait test retry policy."""
    async with open_store(config, RETRY) as store:
        yield store


@dataclass
class CountingStore:
    """
    A SnapshotStore that records every put it is asked for (whatever the answer), then
    passes the call through: the count of writes a caller attempted, at the store.
    """

    inner: SnapshotStore
    puts: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def stats(self) -> Any:
        return self.inner.stats

    @property
    def retry(self) -> RetryPolicy | None:
        return self.inner.retry

    def puts_under(self, prefix: str) -> list[str]:
        """The keys put under *prefix*."""
        return [k for k in self.puts if k.startswith(prefix)]

    async def put_bytes(
        self, key: str, data: bytes, *, create_only: bool = False, lock: bool = False
    ) -> bool:
        self.puts.append(key)
        return await self.inner.put_bytes(key, data, create_only=create_only, lock=lock)

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        size: int | None = None,
        create_only: bool = False,
        lock: bool = False,
    ) -> bool:
        self.puts.append(key)
        return await self.inner.put_stream(
            key, chunks, size=size, create_only=create_only, lock=lock
        )

    async def get_bytes(self, key: str, *, max_size: int) -> bytes:
        return await self.inner.get_bytes(key, max_size=max_size)

    def open_stream(self, key: str) -> Any:
        return self.inner.open_stream(key)

    async def stat(self, key: str) -> StoredObject | None:
        return await self.inner.stat(key)

    def list(self, prefix: str) -> AsyncIterator[StoredObject]:
        return self.inner.list(prefix)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)


def write_config(
    tmp_path: Path,
    endpoints: Mapping[str, LocalRegistry | str],
    *,
    source: str,
    store: StoreConfig,
    **snapshots: Any,
) -> Path:
    """A drd.toml with *endpoints* and a ``[snapshots]`` table; returns its path."""
    lines = ["version = 1", ""]
    for name, registry in endpoints.items():
        url = registry if isinstance(registry, str) else registry.url
        lines += [f"[endpoints.{name}]", f"url = {json.dumps(url)}", ""]
    lines += ["[snapshots]", f"source = {json.dumps(source)}", f"store = {json.dumps(store.store)}"]
    if store.s3_endpoint_url:
        lines.append(f"s3_endpoint_url = {json.dumps(store.s3_endpoint_url)}")
    if store.s3_region:
        lines.append(f"s3_region = {json.dumps(store.s3_region)}")
    for key, value in snapshots.items():
        lines.append(f"{key} = {json.dumps(value)}")
    # A state folder per test: the watermark of the newest snapshot is kept there.
    lines += ["", "[daemon]", f"state_dir = {json.dumps(str(tmp_path / 'state'))}"]
    lines += ["", "[retry]", "attempts = 2", 'budget = "10s"', "wait_initial = 0.0"]
    lines.append("wait_max = 0.0")
    path = tmp_path / "drd.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def drd_argv(*args: str, config: Path | None = None) -> list[str]:
    """``python -m drd ARGS --config CONFIG``."""
    argv = [sys.executable, "-m", "drd", *args]
    if config is not None:
        argv += ["--config", str(config)]
    return argv


def drd_env() -> dict[str, str]:
    """The test's environment (moto credentials, isolated HOME files), no DRD_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("DRD_")}


async def run_drd(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m drd` to completion off the event loop; capture text output."""
    return await asyncio.to_thread(
        subprocess.run,
        drd_argv(*args, config=config),
        capture_output=True,
        text=True,
        timeout=120,
        env=drd_env(),
        check=False,
    )


def json_out(proc: subprocess.CompletedProcess[str]) -> Any:
    """The one JSON document a ``--json`` command printed; fails with its stderr otherwise."""
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(
            f"not JSON (exit {proc.returncode}): {proc.stdout[-500:]!r}\n{proc.stderr[-2000:]}"
        ) from exc


async def drd_here(*args: str, config: Path, capsys: Any) -> tuple[int, Any]:
    """
    Run one drd command in this process (the parser and handler `python -m drd` runs,
    without a new interpreter); return its exit code and its ``--json`` document.
    Exceptions propagate: `drd.cli.main` would map them to exit codes.
    """
    from drd import logs
    from drd.cli import EXIT_CODES, build_parser

    logs.configure(json=True)  # log lines to stderr, as `python -m drd` does
    capsys.readouterr()
    parsed = build_parser().parse_args([*args, "--json", "--config", str(config)])
    outcome = await parsed.handler(parsed)
    return EXIT_CODES[outcome], json.loads(capsys.readouterr().out)


def files_under(root: Path) -> list[str]:
    """Every file below *root*, as sorted relative paths (temporary files included)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
