"""`drd run` as a real subprocess: config files, start, health, metrics, logs, signals."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.servers import _die_with_parent

REPO_ROOT = Path(__file__).resolve().parents[2]


def toml_value(value: Any) -> str:
    """A TOML literal for a string, number, bool or list of those."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def render_config(
    endpoints: Mapping[str, Mapping[str, Any]],
    policies: list[Mapping[str, Any]],
    daemon: Mapping[str, Any],
    *,
    extra: str = "",
) -> str:
    """A drd TOML config: ``[endpoints.*]``, ``[[replication]]`` and ``[daemon]``."""
    lines = ["version = 1", 'log_level = "debug"', ""]
    for name, table in endpoints.items():
        lines.append(f"[endpoints.{name}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
        lines.append("")
    for policy in policies:
        lines.append("[[replication]]")
        lines += [f"{key} = {toml_value(value)}" for key, value in policy.items()]
        lines.append("")
    lines.append("[daemon]")
    lines += [f"{key} = {toml_value(value)}" for key, value in daemon.items()]
    return "\n".join(lines) + "\n" + extra


def daemon_env(home: Path) -> dict[str, str]:
    """The environment of a daemon under test: no DRD_* or proxies, an empty docker config."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DRD_", "NOTIFY_SOCKET", "WATCHDOG_"))
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    (home / "docker").mkdir(parents=True, exist_ok=True)
    env["DOCKER_CONFIG"] = str(home / "docker")
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def http_get(
    url: str, timeout: float = 5.0, *, context: ssl.SSLContext | None = None
) -> tuple[int, bytes]:
    """GET *url* on loopback (https: with *context*): (status, body); (0, b"") when none answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:  # noqa: S310
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def wait_for(condition: Callable[[], Any], within: float, what: str, *, every: float = 0.05) -> Any:
    """Poll *condition* until it returns something truthy; fail saying *what* after *within* s."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        time.sleep(every)


@dataclass
class Daemon:
    """A running ``python -m drd run``; its stdout and stderr go to files."""

    proc: subprocess.Popen[bytes]
    url: str
    config: Path
    stdout: Path
    stderr: Path
    context: ssl.SSLContext | None = None  # set: the daemon serves https, trusted through it

    def output(self) -> bytes:
        """Everything the process wrote so far, stdout then stderr."""
        return self.stdout.read_bytes() + self.stderr.read_bytes()

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (logs go to stderr)."""
        events = []
        for line in self.stderr.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events

    def events(self, name: str) -> list[dict[str, Any]]:
        """The log lines whose event is *name*."""
        return [e for e in self.logs() if e.get("event") == name]

    def metrics_text(self) -> str:
        status, body = http_get(f"{self.url}/metrics", context=self.context)
        if status != 200:
            raise AssertionError(f"/metrics answered {status}")
        return body.decode()

    def sample(self, name: str, **labels: str) -> float | None:
        """One sample from /metrics, or None when absent."""
        for family in text_string_to_metric_families(self.metrics_text()):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return None

    def ready(self) -> bool:
        return http_get(f"{self.url}/readyz", context=self.context)[0] == 200

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def describe(self) -> str:
        """The tail of the daemon's logs, for failure messages."""
        return "\n".join(self.stderr.read_text(errors="replace").splitlines()[-30:])


def run_drd(
    *args: str, env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m drd ARGS`` to completion, capturing both streams."""
    return subprocess.run(
        [sys.executable, "-m", "drd", *args],
        capture_output=True,
        env=dict(env),
        cwd=REPO_ROOT,
        timeout=timeout,
        check=False,
    )


@contextmanager
def running_daemon(
    config: Path,
    workdir: Path,
    port: int,
    env: Mapping[str, str],
    *,
    stop: signal.Signals | None,
    tls: ssl.SSLContext | None = None,
) -> Iterator[Daemon]:
    """
    Start ``python -m drd run --config CONFIG`` and wait until /healthz answers (over
    https, trusting what *tls* trusts, when given).

    On exit the process is sent *stop* (None: it must have exited already) and, if
    it lingers, killed by its PID.
    """
    stdout, stderr = workdir / "drd.stdout", workdir / "drd.stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "drd", "run", "--config", str(config)],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=dict(env),
            cwd=REPO_ROOT,
            preexec_fn=_die_with_parent,  # only prctl runs between fork and exec
        )
    scheme = "http" if tls is None else "https"
    daemon = Daemon(proc, f"{scheme}://127.0.0.1:{port}", config, stdout, stderr, tls)
    try:
        wait_for(
            lambda: not daemon.alive() or http_get(f"{daemon.url}/healthz", context=tls)[0] == 200,
            30,
            "drd to answer /healthz",
        )
        if not daemon.alive():
            raise AssertionError(f"drd exited with {proc.returncode}:\n{daemon.describe()}")
        yield daemon
    finally:
        if proc.poll() is None and stop is not None:
            proc.send_signal(stop)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
