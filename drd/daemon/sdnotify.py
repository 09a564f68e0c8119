"""systemd's notify protocol: one datagram to $NOTIFY_SOCKET, no dependency."""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """
    Send *message* (``READY=1``, ``STOPPING=1``, ``WATCHDOG=1``…) to the service manager.

    Returns False, and does nothing, when not run under a notify-aware manager or
    when the socket cannot be reached: a missing supervisor must not stop drd.
    """
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    target = "\0" + address[1:] if address[0] == "@" else address  # "@": abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), target)
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WatchdogSec``), or None when off."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000
