"""A snapshot killed mid-upload (SIGKILL) leaves nothing listed; the next one succeeds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from drd.oci import mediatype
from drd.oci.digest import Digest
from tests.images import (
    OCI_LAYER_TAR,
    Blob,
    push_blob,
    push_large_blob,
    push_manifest,
)
from tests.servers import LocalRegistry, free_port
from tests.snapshot.helpers import (
    drd_argv,
    drd_env,
    drd_here,
    files_under,
    store_config,
    write_config,
)

MiB = 1024 * 1024
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "host"}


class StallingProxy:
    """
    A pass-through HTTP proxy in front of a registry that, while ``stall`` is set, sends
    the first two MiB of one blob and then holds the rest back until released.
    """

    def __init__(self, upstream: str, blob: Digest) -> None:
        self.upstream = upstream
        self.blob_path = f"/blobs/{blob}"
        self.stall = True
        self.released = asyncio.Event()
        self.stalled = asyncio.Event()
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        body = await request.read()
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method,
                self.upstream + request.path_qs,
                headers=headers,
                data=body or None,
                allow_redirects=False,
            ) as upstream,
        ):
            response = web.StreamResponse(status=upstream.status)
            for name, value in upstream.headers.items():
                if name.lower() not in _HOP:
                    response.headers[name] = value
            await response.prepare(request)
            sent = 0
            hold = self.stall and request.method == "GET" and request.path.endswith(self.blob_path)
            async for chunk in upstream.content.iter_chunked(64 * 1024):
                await response.write(chunk)
                sent += len(chunk)
                if hold and sent >= 2 * MiB:
                    self.stalled.set()
                    await self.released.wait()
                    hold = False
            await response.write_eof()
            return response

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[StallingProxy]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        try:
            yield self
        finally:
            self.released.set()
            await runner.cleanup()


async def wait_for_partial_upload(store: Path, name: str) -> list[str]:
    """Wait until a temporary file of *name* with data exists in the store's staging folder."""
    while True:
        partial = [f for f in files_under(store) if f.startswith(f".tmp/.{name}.")]
        if partial and _size(store / partial[0]) > 0:
            return partial
        await asyncio.sleep(0.02)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@pytest.mark.timeout(180)
async def test_a_killed_snapshot_is_never_listed_and_the_next_one_succeeds(
    source_registry: LocalRegistry, repo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    SIGKILL while a layer streams into the store: ``snapshot list`` shows nothing, the
    partial object exists only under a temporary name, and the next run commits a
    complete snapshot that verifies.
    """
    layer = await push_large_blob(source_registry, repo, 6 * MiB, f"{repo}/layer")
    config_blob = Blob(b'{"architecture":"amd64","os":"linux"}', mediatype.OCI_CONFIG)
    await push_blob(source_registry, repo, config_blob)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatype.OCI_MANIFEST,
            "config": config_blob.descriptor(),
            "layers": [{"mediaType": OCI_LAYER_TAR, "digest": str(layer), "size": 6 * MiB}],
        }
    ).encode()
    await push_manifest(source_registry, repo, "v1", manifest, mediatype.OCI_MANIFEST)
    proxy = StallingProxy(source_registry.url, layer)
    store = store_config("dir", tmp_path)
    root = tmp_path / "store"
    async with proxy.running():
        config = write_config(
            tmp_path,
            {"primary": proxy.url},
            source="primary",
            store=store,
            repositories=[repo],
            blobs=True,
        )
        proc = await asyncio.create_subprocess_exec(
            *drd_argv("snapshot", "create", "--json", config=config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=drd_env(),
        )
        try:
            await asyncio.wait_for(wait_for_partial_upload(root, layer.hex), 60)
            await asyncio.wait_for(proxy.stalled.wait(), 30)
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.communicate()
        assert proc.returncode == -signal.SIGKILL

        code, listed = await drd_here("snapshot", "list", config=config, capsys=capsys)
        assert code == 0
        assert listed["snapshots"] == []
        assert all(not f.startswith("snapshots/") for f in files_under(root))
        # The layer was cut off: staged only, never under its real name.
        assert not [f for f in files_under(root) if f.startswith("blobs/") and layer.hex in f]

        proxy.stall = False
        proxy.released.set()
        code, created = await drd_here("snapshot", "create", config=config, capsys=capsys)
        assert code == 0, created
        assert created["ok"] is True
        # The layer the killed run lost goes up again; its small config may have made it.
        assert created["blobs_uploaded"] >= 1
        assert created["blobs_uploaded"] + created["blobs_present"] == 2

    code, listed = await drd_here("snapshot", "list", config=config, capsys=capsys)
    assert [s["id"] for s in listed["snapshots"]] == [created["id"]]
    code, verified = await drd_here("snapshot", "verify", "latest", config=config, capsys=capsys)
    assert code == 0
    assert verified["ok"] is True
    assert verified["blobs_checked"] == 2
