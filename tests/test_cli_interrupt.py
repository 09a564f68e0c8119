"""Ctrl-C during `drd replicate`: one line, exit 130, no tag on half-written content."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.clients import open_client
from tests.faults import Fault, FaultProxy, fault_proxy
from tests.images import make_image, push_image
from tests.servers import LocalRegistry
from tests.test_cli import ROOT, drd, write_config


async def test_ctrl_c_mid_pass_prints_one_line_exits_130_and_a_rerun_resumes(
    tmp_path: Path, source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """
    SIGINT while the target holds the tag write of v2: exit 130 with the one line
    counting v1 done, v1 tagged, v2 not; the next pass copies v2.
    """
    first, second = make_image("ctrl-c-1"), make_image("ctrl-c-2")
    await push_image(source_registry, repo, first, "v1")
    await push_image(source_registry, repo, second, "v2")
    state = f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
    with fault_proxy(target_registry.url) as proxy:
        proxy.add(Fault.delay(120), kinds="manifest_put", path=r"/manifests/v2$")
        config = write_config(tmp_path / "drd.toml", source_registry.url, proxy.url, state, repo)
        code, out, err = await asyncio.to_thread(interrupt_at_v2, config, proxy)

        assert code == 130, err
        assert out == ""
        assert err.splitlines()[-1] == (
            "interrupted: 1 item done, re-run to resume; nothing half-written is tagged"
        )
        async with open_client(target_registry) as client:
            tagged = await client.head_manifest(repo, "v1")
            assert tagged is not None
            assert tagged.digest == first.digest
            assert await client.head_manifest(repo, "v2") is None

    again = write_config(
        tmp_path / "drd.toml", source_registry.url, target_registry.url, state, repo
    )
    resumed = drd("replicate", "--config", str(again), "--json")
    assert resumed.returncode == 0, resumed.stderr
    async with open_client(target_registry) as client:
        tagged = await client.head_manifest(repo, "v2")
        assert tagged is not None
        assert tagged.digest == second.digest


def interrupt_at_v2(config: Path, proxy: FaultProxy) -> tuple[int, str, str]:
    """Run `drd replicate`, SIGINT it once the v2 tag write reached *proxy*; its results."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "drd", "replicate", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not proxy.calls("manifest_put", path=r"/manifests/v2$"):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the v2 tag write never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err
