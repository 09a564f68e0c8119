"""
Failover and failback are cluster singletons, on SQLite (one host) and on PostgreSQL:
while one runs, a second `drd failover` or `drd failback` exits 75 naming who holds the
lock and since when, and changes nothing; two started at once switch once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drd.app.failover import FAILOVER_LOCK
from drd.app.state import open_state
from drd.cli import EXIT_BUSY
from drd.config import Settings, load_settings
from drd.errors import Busy
from drd.failover.active import read_active
from drd.state import RunRecord, StateStore
from drd.state.locks import exclusive
from tests.configs import local_daemon, signed_replication, write_toml
from tests.drill.helpers import KEY, push_signed
from tests.failover.test_failover import HOOK, replicate
from tests.faults import Fault, FaultProxy
from tests.images import make_image
from tests.servers import LocalRegistry

TTL_S = 3


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """The state backend's ``[state]`` table: none (SQLite in state_dir), or a database."""
    if request.param == "sqlite":
        return f'[state]\nlease_ttl = "{TTL_S}s"\n'
    url = request.getfixturevalue("postgres_url")
    return f'[state]\nurl = "{url}"\nlease_ttl = "{TTL_S}s"\n'


async def _setup(
    tmp_path: Path, source: LocalRegistry, standby: str, repo: str, backend: str
) -> tuple[Path, Path]:
    """A replicated, drilled primary -> standby (at *standby*); a hook that logs each switch."""
    key = tmp_path / "release.pub"
    key.write_bytes(KEY.public_pem())
    script = tmp_path / "hook.py"
    script.write_text(HOOK)
    calls = tmp_path / "calls.jsonl"
    hook = f"{sys.executable} {script} {calls} {{to}}"
    path = write_toml(
        tmp_path / "drd.toml",
        signed_replication({"primary": source.url, "dr": standby}, repo, key)
        + f"""
[drills]
target = "dr"
rpo = "1h"

[failover]
hooks = {json.dumps([hook])}
overrides_file = "{tmp_path / "overrides.json"}"
max_drill_age = "1h"
"""
        + local_daemon(tmp_path / "state")
        + backend,
    )
    settings = load_settings(path)
    await push_signed(source, repo, make_image(f"{repo}/1"), "v1")
    assert (await replicate(settings)).ok
    async with _state(settings) as state:
        now = datetime.now(UTC).timestamp()
        await state.record_run(RunRecord("drill", "drill", "manual", now - 5, now, "ok", {}))
    return path, calls


@contextlib.asynccontextmanager
async def _state(settings: Settings) -> AsyncIterator[StateStore]:
    state = await open_state(settings)
    try:
        yield state
    finally:
        await state.close()


def _env(node: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRD_")}
    return env | {"DRD_DAEMON__NODE": node}


async def _drd(path: Path, node: str, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "drd", *args, "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(node),
        check=False,
    )


@pytest.fixture
async def standby(target_registry: LocalRegistry) -> AsyncIterator[FaultProxy]:
    """The standby registry behind the fault proxy (to slow the pre-flight down)."""
    with FaultProxy(target_registry.url) as proxy:
        yield proxy


async def test_a_failover_while_another_holds_the_lock_exits_75_and_changes_nothing(
    tmp_path: Path,
    backend: str,
    source_registry: LocalRegistry,
    standby: FaultProxy,
    repo: str,
) -> None:
    """
    Node ``ops-a`` holds the failover lock: `drd failover` and `drd failback` from
    ``ops-b`` exit 75 naming ops-a, this host and since when; no switch, no hook. Once
    the lock is dropped, the same failover switches.
    """
    path, calls = await _setup(tmp_path, source_registry, standby.url, repo, backend)
    settings = load_settings(path)
    async with _state(settings) as state:
        async with exclusive(state, FAILOVER_LOCK, node="ops-a", ttl=TTL_S):
            taken = datetime.now(UTC)
            over = await _drd(path, "ops-b", "failover", "--to", "dr")
            back = await _drd(path, "ops-b", "failback")
            status = await _drd(path, "ops-b", "status", "--json")
            with pytest.raises(Busy) as raised:
                async with exclusive(state, FAILOVER_LOCK, node="ops-c", ttl=TTL_S):
                    pass
        assert read_active(settings.daemon.state_dir) is None
        assert not calls.exists()
        after = await _drd(path, "ops-b", "failover", "--to", "dr")
    if "url" in backend:  # the cluster's view names who runs the failover
        assert json.loads(status.stdout)["leaders"] == {"failover": "ops-a"}, status.stdout
    for blocked in (over, back):
        assert blocked.returncode == EXIT_BUSY, blocked.stderr
        match = re.search(
            r"failover is already running: held by node ops-a on host (\S+) \(pid (\d+)\)"
            r" since (\S+);",
            blocked.stderr,
        )
        assert match is not None, blocked.stderr
        assert match.group(1) == socket.gethostname()
        assert int(match.group(2)) == os.getpid()
        since = datetime.fromisoformat(match.group(3))
        assert abs((since - taken).total_seconds()) < 60  # the same minute, not a timing
    assert raised.value.holder.node == "ops-a"
    assert after.returncode == 0, after.stderr
    active = read_active(settings.daemon.state_dir)
    assert active is not None
    assert active.standby == "dr"
    assert [json.loads(line) for line in calls.read_text().splitlines()] == [["dr"]]


async def test_two_failovers_started_at_once_switch_once(
    tmp_path: Path,
    backend: str,
    source_registry: LocalRegistry,
    standby: FaultProxy,
    repo: str,
) -> None:
    """
    Two operators run `drd failover --to dr` at the same moment while the standby is slow
    to answer the pre-flight: one switches (exit 0), the other exits 75; the hook ran once.
    """
    path, calls = await _setup(tmp_path, source_registry, standby.url, repo, backend)
    standby.add(Fault.delay(3.0), kinds="tags_list")
    first, second = await asyncio.gather(
        _drd(path, "ops-a", "failover", "--to", "dr"),
        _drd(path, "ops-b", "failover", "--to", "dr"),
    )
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, EXIT_BUSY], (first.stderr, second.stderr)
    loser = first if first.returncode == EXIT_BUSY else second
    winner = "ops-b" if loser is first else "ops-a"
    assert f"held by node {winner} on host {socket.gethostname()}" in loser.stderr
    assert [json.loads(line) for line in calls.read_text().splitlines()] == [["dr"]]
    active = read_active(load_settings(path).daemon.state_dir)
    assert active is not None
    assert active.standby == "dr"


async def test_a_failover_paused_past_its_lock_switches_nothing(
    tmp_path: Path,
    backend: str,
    source_registry: LocalRegistry,
    standby: FaultProxy,
    repo: str,
) -> None:
    """
    `drd failover` holds the lock and is stopped (SIGSTOP) mid pre-flight for longer than
    the lock's TTL; ``ops-c`` takes the lock meanwhile. Continued, the paused failover
    checks the lock right before the switch, finds it lost, and switches nothing (no
    active primary, no hook); it fails naming the lost lock.
    """
    path, calls = await _setup(tmp_path, source_registry, standby.url, repo, backend)
    settings = load_settings(path)
    standby.add(Fault.delay(2.0), kinds="tags_list")
    before = standby.calls("tags_list")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "drd",
        "failover",
        "--to",
        "dr",
        "--config",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env("ops-b"),
    )
    try:
        # The pre-flight reads the standby's tags only once the lock is held.
        while standby.calls("tags_list") == before:
            assert proc.returncode is None, "failover ended before its pre-flight"
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(TTL_S + 1.5)
        async with (
            _state(settings) as state,
            exclusive(state, FAILOVER_LOCK, node="ops-c", ttl=TTL_S * 10),
        ):
            proc.send_signal(signal.SIGCONT)
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            await proc.wait()
    assert proc.returncode == 1, (stdout, stderr)
    assert b"the failover lock expired or was taken over: nothing switched" in stdout + stderr
    assert read_active(settings.daemon.state_dir) is None
    assert not calls.exists()
