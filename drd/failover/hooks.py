"""
Failover hooks: each ``[failover] hooks`` command split like a shell would, ``{to}`` and
``{from}`` filled in per argument, run without a shell, under a timeout, its output
captured.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from drd.errors import InvalidReference

log = structlog.get_logger(__name__)

# A hook that has not finished after this long is killed and recorded as timed out.
HOOK_TIMEOUT_S = 300.0
# Output kept per hook stream; the rest is cut (the hook's own logs have it all).
MAX_HOOK_OUTPUT = 16 * 1024


@dataclass(frozen=True)
class HookResult:
    """One hook command: what ran, how it ended, how long it took, what it printed."""

    command: tuple[str, ...]
    exit_code: int | None
    duration_s: float
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        """Exited 0 in time."""
        return self.exit_code == 0 and not self.timed_out and not self.error

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "command": list(self.command),
            "ok": self.ok,
            "exit_code": self.exit_code,
            "duration_s": round(self.duration_s, 3),
            "timed_out": self.timed_out,
            "error": self.error,
            "stdout": self.stdout,
            "stderr": self.stderr,
        }


def hook_argv(hook: str, values: Mapping[str, str]) -> list[str]:
    """
    Split *hook* like a POSIX shell would, then fill ``{name}`` placeholders in each
    argument: a value with spaces stays one argument, and is never parsed by a shell.

    Raises `InvalidReference` for an unknown placeholder or an unbalanced quote.
    """
    try:
        parts = shlex.split(hook)
    except ValueError as exc:
        raise InvalidReference(f"hook {hook[:80]!r} cannot be split: {exc}") from exc
    try:
        argv = [part.format_map(values) for part in parts]
    except (KeyError, ValueError, IndexError) as exc:
        known = ", ".join("{" + k + "}" for k in sorted(values))
        raise InvalidReference(f"hook {hook[:80]!r}: unknown placeholder {exc} ({known})") from exc
    if not argv:
        raise InvalidReference("hook is empty")
    return argv


def _text(data: bytes | bytearray) -> str:
    cut = bytes(data[:MAX_HOOK_OUTPUT])
    text = cut.decode("utf-8", errors="replace")
    return text + ("\n[output cut]" if len(data) > MAX_HOOK_OUTPUT else "")


async def _drain(stream: asyncio.StreamReader | None, sink: bytearray) -> None:
    """Read *stream* to its end, keeping the first MAX_HOOK_OUTPUT bytes (and one more)."""
    if stream is None:
        return
    while chunk := await stream.read(64 * 1024):
        room = MAX_HOOK_OUTPUT + 1 - len(sink)
        if room > 0:
            sink.extend(chunk[:room])


async def run_hook(hook: str, values: Mapping[str, str], timeout_s: float) -> HookResult:
    """Run one hook without a shell; kill it (by its PID) when it outlives *timeout_s*."""
    started = time.monotonic()
    try:
        argv = hook_argv(hook, values)
    except InvalidReference as exc:
        return HookResult((hook,), None, 0.0, error=str(exc))
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        return HookResult(
            tuple(argv), None, time.monotonic() - started, error=f"cannot start: {exc}"
        )
    out, err = bytearray(), bytearray()
    readers = [
        asyncio.create_task(_drain(proc.stdout, out)),
        asyncio.create_task(_drain(proc.stderr, err)),
    ]
    timed_out = False
    try:
        async with asyncio.timeout(timeout_s):
            await proc.wait()
    except TimeoutError:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
    # A grandchild may hold the pipes open after the hook exited: stop reading soon after.
    _, pending = await asyncio.wait(readers, timeout=5.0)
    for task in pending:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return HookResult(
        tuple(argv),
        proc.returncode,
        time.monotonic() - started,
        _text(out),
        _text(err),
        timed_out=timed_out,
        error=f"timed out after {timeout_s:g}s" if timed_out else "",
    )
