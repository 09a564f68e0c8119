"""
Stop signals: SIGTERM while a large blob is copied drains, cancels at the deadline and
exits 0; a second signal exits at once.

The first test is the one that sends a real SIGTERM (other daemon tests use SIGINT).
"""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import pytest

from drd.oci import mediatype
from drd.oci.digest import Digest
from tests.daemon.process import daemon_env, render_config, running_daemon, wait_for
from tests.images import MiB, RegistryWriter, get_manifest, large_blob_digest, list_tags
from tests.servers import LocalRegistry, free_port

SIZE = 200 * MiB
DRAIN_S = 1.0
# Interpreter start-up is not part of it, but closing clients and the interpreter is.
EXIT_SLACK_S = 8.0


def upload_bytes(registry: LocalRegistry, repository: str) -> int:
    """Bytes of unfinished uploads the registry holds for *repository* (distribution's layout)."""
    uploads = registry.repository_dir(repository) / "_uploads"
    if not uploads.is_dir():
        return 0
    return sum(p.stat().st_size for p in uploads.glob("*/data") if p.is_file())


async def push_big_image(registry: LocalRegistry, repository: str, tag: str) -> bytes:
    """Push an image whose one layer is a SIZE-byte blob, streamed; return the manifest bytes."""
    seed = f"{repository}/big"
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatype.OCI_MANIFEST,
            "config": {
                "mediaType": mediatype.OCI_CONFIG,
                "digest": str(Digest.of(config)),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": str(large_blob_digest(SIZE, seed)),
                    "size": SIZE,
                }
            ],
        }
    ).encode()
    async with RegistryWriter(registry) as writer:
        await writer.push_large_blob(repository, SIZE, seed)
        await writer.push_blob(repository, config)
        await writer.push_manifest(repository, tag, manifest, mediatype.OCI_MANIFEST)
    return manifest


@pytest.mark.slow
async def test_sigterm_during_a_large_copy_drains_and_leaves_no_partial_tag(
    tmp_path: Path, source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """SIGTERM mid-blob: exit 0 within the drain deadline; no target tag on incomplete content."""
    manifest = await push_big_image(source_registry, repo, "big")
    port = free_port()
    config = tmp_path / "drd.toml"
    config.write_text(
        render_config(
            {"src": {"url": source_registry.url}, "dst": {"url": target_registry.url}},
            [
                {
                    "name": "big",
                    "source": "src",
                    "targets": ["dst"],
                    "repositories": [repo],
                    "interval": "1h",
                }
            ],
            {
                "listen": f"127.0.0.1:{port}",
                "state_dir": str(tmp_path / "state"),
                "drain_timeout": f"{DRAIN_S}s",
            },
        )
    )
    with running_daemon(config, tmp_path, port, daemon_env(tmp_path / "home"), stop=None) as drd:
        # The first pass starts at once; wait until the blob is flowing into the target.
        wait_for(lambda: upload_bytes(target_registry, repo) > 0, 60, "the blob upload to start")
        sent = time.monotonic()
        drd.send(signal.SIGTERM)
        code = drd.wait(timeout=DRAIN_S + EXIT_SLACK_S + 30)
        took = time.monotonic() - sent

    stopped = drd.events("scheduler.stopped")
    print(f"\nSIGTERM to exit: {took:.2f}s; scheduler: {stopped}")
    assert code == 0, drd.describe()
    assert took < DRAIN_S + EXIT_SLACK_S
    assert [e["event"] for e in drd.logs()][-1] == "daemon.stopped"
    assert len(stopped) == 1
    # The copy was cancelled at the deadline, or finished within it: either way, one run ended.
    assert stopped[0]["cancelled"] + stopped[0]["finished"] >= 1

    tags = await list_tags(target_registry, repo)
    if tags:  # the copy beat the deadline: the tag must point at complete content
        assert tags == ["big"]
        raw, _ = await get_manifest(target_registry, repo, "big")
        assert raw == manifest
        async with RegistryWriter(target_registry) as reader:
            for layer in json.loads(manifest)["layers"]:
                assert await reader.blob_exists(repo, Digest.parse(layer["digest"]))
    else:
        assert stopped[0]["cancelled"] == 1


def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    """SIGINT starts a 60 s drain; a second SIGINT ends the process at once (exit 130)."""
    with socket.socket() as silent:
        # Accepts connections (the kernel does) and never answers: every request hangs.
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = free_port()
        config = tmp_path / "drd.toml"
        config.write_text(
            render_config(
                {"src": {"url": f"http://127.0.0.1:{silent.getsockname()[1]}"}},
                [],
                {
                    "listen": f"127.0.0.1:{port}",
                    "state_dir": str(tmp_path / "state"),
                    "drain_timeout": "60s",
                },
            )
        )
        env = daemon_env(tmp_path / "home")
        with running_daemon(config, tmp_path, port, env, stop=None) as drd:
            drd.send(signal.SIGINT)
            wait_for(lambda: drd.events("scheduler.draining"), 15, "the drain to start")
            sent = time.monotonic()
            drd.send(signal.SIGINT)
            code = drd.wait(timeout=15)
            took = time.monotonic() - sent
    assert code == 128 + signal.SIGINT.value
    assert took < 5.0
    assert drd.events("daemon.forced_exit")
    assert not drd.events("daemon.stopped")
