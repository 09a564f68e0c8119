"""Run ``python -m drd`` as a subprocess, and write the small TOML configs it reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

Table = Mapping[str, Any]


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a TOML basic string


def toml(
    *,
    endpoints: Mapping[str, Table],
    replication: Sequence[Table] = (),
    tables: Mapping[str, Table] | None = None,
) -> str:
    """A drd config: ``version = 1``, the endpoints, extra tables, the policies."""
    lines = ["version = 1", ""]
    for name, endpoint in endpoints.items():
        lines.append(f"[endpoints.{name}]")
        lines += [f"{key} = {_value(value)}" for key, value in endpoint.items()]
        lines.append("")
    for section, table in (tables or {}).items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_value(value)}" for key, value in table.items()]
        lines.append("")
    for policy in replication:
        lines.append("[[replication]]")
        lines += [f"{key} = {_value(value)}" for key, value in policy.items()]
        lines.append("")
    return "\n".join(lines)


def write_config(path: Path, **parts: Any) -> Path:
    """Write `toml(**parts)` to *path*; return *path*."""
    path.write_text(toml(**parts))
    return path


# Fast, bounded retries for subprocess runs: no test sleeps through a backoff.
FAST_RETRY = {"attempts": 3, "wait_initial": 0.0, "wait_max": 0.0, "budget": "30s"}


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment (already isolated by conftest) plus *extra*."""
    env = dict(os.environ)
    env.update(extra or {})
    return env


def command(*args: str | Path) -> list[str]:
    """The argv of ``python -m drd ARGS``."""
    return [sys.executable, "-m", "drd", *map(str, args)]


def run_drd(
    *args: str | Path, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    """Run drd to completion; stdout and stderr captured as bytes."""
    return subprocess.run(
        command(*args),
        capture_output=True,
        cwd=ROOT,
        env=environment(env),
        timeout=timeout,
        check=False,
    )
