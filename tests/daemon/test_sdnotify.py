"""sd_notify over a real datagram socket; the watchdog interval from systemd's variables."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from drd.daemon import sdnotify


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound AF_UNIX datagram socket, as systemd's notify socket is."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(2.0)
        yield sock, str(path)


def test_messages_reach_the_notify_socket(
    listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """READY=1, STOPPING=1 and WATCHDOG=1 arrive as single datagrams."""
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    for message in ("READY=1", "STOPPING=1", "WATCHDOG=1"):
        assert sdnotify.notify(message) is True
        assert sock.recv(256) == message.encode()


def test_the_abstract_namespace_is_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    """An address starting with "@" is an abstract socket, as systemd may hand out."""
    name = f"drd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2.0)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify("READY=1") is True
        assert sock.recv(256) == b"READY=1"


@pytest.mark.parametrize(
    "value",
    [pytest.param(None, id="unset"), pytest.param("", id="empty"), pytest.param("x", id="junk")],
)
def test_without_a_supervisor_nothing_is_sent(
    value: str | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No usable NOTIFY_SOCKET, or one nobody listens on: False, and no error."""
    if value is None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert sdnotify.notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody.sock"))
    assert sdnotify.notify("READY=1") is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        pytest.param("20000000", None, 10.0, id="half-of-WatchdogSec"),
        pytest.param("20000000", "self", 10.0, id="for-this-process"),
        pytest.param("20000000", "1", None, id="for-another-process"),
        pytest.param("0", None, None, id="disabled"),
        pytest.param(None, None, None, id="unset"),
    ],
)
def test_watchdog_interval(
    usec: str | None, pid: str | None, expected: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pings go out every half WatchdogSec, only when the watchdog is meant for this process."""
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(os.getpid()) if value == "self" else value)
    assert sdnotify.watchdog_interval() == expected
