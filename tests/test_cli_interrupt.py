"""Ctrl-C during `drd replicate`: one line, exit 130, no tag on half-written content."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from drd.oci.mediatype import MANIFEST_ACCEPT
from tests.clients import open_client
from tests.faults import Fault, FaultProxy, fault_proxy
from tests.images import make_image, push_image
from tests.servers import LocalRegistry
from tests.test_cli import ROOT, drd, write_config


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
async def test_ctrl_c_mid_pass_prints_one_line_exits_130_and_a_rerun_resumes(
    tmp_path: Path,
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
    as_json: bool,
) -> None:
    """
    SIGINT while the target holds the tag write of v2: exit 130 with the one line
    counting v1 done (with --json also as the error document on stdout), v1 tagged, v2
    not; the next pass copies v2.
    """
    first, second = make_image("ctrl-c-1"), make_image("ctrl-c-2")
    await push_image(source_registry, repo, first, "v1")
    await push_image(source_registry, repo, second, "v2")
    state = f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
    with fault_proxy(target_registry.url) as proxy:
        proxy.add(Fault.delay(120), kinds="manifest_put", path=r"/manifests/v2$")
        config = write_config(tmp_path / "drd.toml", source_registry.url, proxy.url, state, repo)
        v1 = f"{target_registry.url}/v2/{repo}/manifests/v1"
        flags = ["--json"] if as_json else []
        code, out, err = await asyncio.to_thread(interrupt_at_v2, config, proxy, v1, flags)

        assert code == 130, err
        # v1's tag is at the registry before the signal, but drd may not have read the
        # answer yet: the count is what drd itself saw finish, so 0 or 1.
        line = r"interrupted: [01] items? done, re-run to resume; nothing half-written is tagged"
        assert re.fullmatch(line, err.splitlines()[-1]), err
        if as_json:
            error = json.loads(out)["error"]
            assert error["kind"] == "interrupted"
            assert error["message"] == err.splitlines()[-1]
        else:
            assert out == ""
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


def interrupt_at_v2(
    config: Path, proxy: FaultProxy, v1: str, flags: list[str]
) -> tuple[int, str, str]:
    """
    Run `drd replicate`; SIGINT it once the v2 tag write reached *proxy* and the v1 tag
    answers at *v1* (the target itself, not through the proxy); its results.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "drd", "replicate", "--config", str(config), *flags],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A child that outlives its minute is aborted: faulthandler prints where it waits.
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        # SIGINT as a terminal's Ctrl-C sends it, even when this test runs in the
        # background of a shell that ignores SIGINT (children inherit the ignore).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while not (proxy.calls("manifest_put", path=r"/manifests/v2$") and _answers(v1)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the v2 tag write never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            _, stack = proc.communicate()
            raise AssertionError(f"drd did not stop within 60 s of SIGINT:\n{stack}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()  # and close the pipes
    return proc.returncode, out, err


def _answers(url: str) -> bool:
    """Whether a manifest HEAD at *url* (a loopback registry) answers 200."""
    # S310: *url* is the test's own http registry on loopback, never a file: URL.
    headers = {"Accept": MANIFEST_ACCEPT}
    request = urllib.request.Request(url, method="HEAD", headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except urllib.error.HTTPError:
        return False
