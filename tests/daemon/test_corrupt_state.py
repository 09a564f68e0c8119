"""
A corrupt state.db, as the real `drd run` and `drd status` meet it.

The state database is a cache of history: the daemon moves a damaged file
aside, says so in one log line, counts it, and starts afresh, instead of
exiting 70 into a systemd restart loop. `drd status` reports it and leaves it.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.daemon.process import daemon_env, render_config, run_drd, running_daemon
from tests.servers import LocalRegistry, free_port

GARBAGE = b"\x00this is not an SQLite database\xff" * 1024


def write_config(work: Path, registry: LocalRegistry, port: int) -> Path:
    config = work / "drd.toml"
    config.write_text(
        render_config(
            {"dst": {"url": registry.url}},
            [],
            {"listen": f"127.0.0.1:{port}", "state_dir": str(work / "state"), "jitter": 0.0},
        )
    )
    return config


def test_a_corrupt_state_db_is_moved_aside_and_the_daemon_starts(
    tmp_path: Path, target_registry: LocalRegistry
) -> None:
    """Garbage in state.db: status says so and keeps it; run sets it aside, logs, counts 1."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.db").write_bytes(GARBAGE)
    port = free_port()
    config = write_config(tmp_path, target_registry, port)
    env = daemon_env(tmp_path / "home")

    status = run_drd("status", "--json", "--config", str(config), env=env)
    assert status.returncode == 1
    # Under --json the error is the document on stdout.
    error = json.loads(status.stdout)["error"]
    assert "file is not a database" in error["message"]
    assert "`drd run` moves it aside" in error["hint"]
    assert b"Traceback" not in status.stderr
    assert (state / "state.db").read_bytes() == GARBAGE

    with running_daemon(config, tmp_path, port, env, stop=signal.SIGTERM) as daemon:
        [reset] = daemon.events("state.reset")
        [aside] = state.glob("state.db.corrupt-*")
        assert aside.read_bytes() == GARBAGE
        assert reset["moved_to"] == str(aside)
        assert reset["level"] == "error"
        assert "file is not a database" in reset["reason"]
        assert daemon.sample("drd_state_reset_total") == 1.0
        after = run_drd("status", "--json", "--config", str(config), env=env)
        assert after.returncode == 0, after.stderr.decode()
        assert json.loads(after.stdout)["state_db"] == str(state / "state.db")
    assert daemon.proc.returncode == 0, daemon.describe()
    assert b"Traceback" not in daemon.output()

    # The fresh database is kept: the next start neither resets nor counts anything.
    with running_daemon(config, tmp_path, port, env, stop=signal.SIGTERM) as again:
        assert again.sample("drd_state_reset_total") == 0.0
        assert again.events("state.reset") == []
    assert list(state.glob("state.db.corrupt-*")) == [aside]
