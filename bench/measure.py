"""
Measuring one tool run: wall and CPU seconds, peak RSS, and the HTTP requests it caused.

Each run is a subprocess under ``/usr/bin/time -v`` (peak RSS, CPU). Requests
are counted where they land, in each registry's access log (distribution writes
one combined-format line per request), so every tool is counted the same way and
nothing sits between the tool and the registries to slow it down.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from drd.oci import mediatype
from drd.oci.digest import Digest
from tests.servers import LocalRegistry

TIME = Path("/usr/bin/time")
_ACCESS = re.compile(rb'^\S+ - \S+ \[[^\]]*\] "([A-Z]+) ', re.MULTILINE)


@dataclass
class Run:
    """One tool's figures for one phase (sums over its invocations)."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    rss_kib: int = 0
    invocations: int = 0
    requests: Counter[str] = field(default_factory=Counter)  # "src GET", "dst PUT", …
    failed: str = ""
    extra: dict[str, object] = field(default_factory=dict)
    registry_cpu_s: dict[str, float] = field(default_factory=dict)  # "src"/"dst" → seconds
    load1: float = 0.0  # the 1-minute load average as the run ended: others' work meanwhile

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def add(self, other: Run) -> None:
        self.wall_s += other.wall_s
        self.cpu_s += other.cpu_s
        self.rss_kib = max(self.rss_kib, other.rss_kib)
        self.invocations += other.invocations
        self.requests.update(other.requests)
        self.failed = self.failed or other.failed
        self.load1 = max(self.load1, other.load1)
        for label, seconds in other.registry_cpu_s.items():
            self.registry_cpu_s[label] = round(self.registry_cpu_s.get(label, 0.0) + seconds, 2)


class AccessLog:
    """Counts requests appended to one registry's log since the last mark, and its CPU time."""

    def __init__(self, registry: LocalRegistry, label: str) -> None:
        self.path = registry.root.parent / "registry.log"
        self.label = label
        self.pid = registry.process.pid if registry.process is not None else None
        self._offset = 0
        self._cpu = 0.0

    def mark(self) -> None:
        self._offset = self.path.stat().st_size
        self._cpu = self.cpu_s()

    def since_mark(self) -> Counter[str]:
        with self.path.open("rb") as f:
            f.seek(self._offset)
            text = f.read()
        return Counter(f"{self.label} {m.decode()}" for m in _ACCESS.findall(text))

    def cpu_since_mark(self) -> float:
        return self.cpu_s() - self._cpu

    def cpu_s(self) -> float:
        """User plus system CPU seconds the registry process has used."""
        if self.pid is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    logs: Iterable[AccessLog] = (),
    log_file: Path | None = None,
    timeout: float = 3600,
) -> tuple[Run, bytes]:
    """Run *argv* under ``/usr/bin/time -v``; return its figures and its stdout."""
    logs = list(logs)
    # Earlier runs' writes reach the disk now, not in the middle of this run.
    os.sync()
    for log in logs:
        log.mark()
    started = time.monotonic()
    proc = subprocess.run(
        [str(TIME), "-v", *argv],
        capture_output=True,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )
    wall = time.monotonic() - started
    time.sleep(0.3)  # distribution logs a request just after answering it
    stats = _time_v(proc.stderr)
    if log_file is not None:
        with log_file.open("ab") as f:
            f.write(b"$ " + " ".join(argv).encode() + b"\n" + proc.stderr[-20000:] + b"\n")
    run = Run(
        wall_s=wall,
        cpu_s=stats.get("user", 0.0) + stats.get("system", 0.0),
        rss_kib=int(stats.get("rss", 0)),
        invocations=1,
        load1=round(os.getloadavg()[0], 2),
    )
    for log in logs:
        run.requests.update(log.since_mark())
        run.registry_cpu_s[log.label] = round(log.cpu_since_mark(), 2)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-30:]
        run.failed = f"exit {proc.returncode}: " + " | ".join(tail)[-600:]
    return run, proc.stdout


def _time_v(stderr: bytes) -> dict[str, float]:
    found: dict[str, float] = {}
    patterns = {
        "user": rb"User time \(seconds\): ([\d.]+)",
        "system": rb"System time \(seconds\): ([\d.]+)",
        "rss": rb"Maximum resident set size \(kbytes\): (\d+)",
    }
    for key, pattern in patterns.items():
        if m := re.search(pattern, stderr):
            found[key] = float(m.group(1))
    return found


async def verify(
    target: str, expected: Mapping[tuple[str, str], Digest], concurrency: int = 16
) -> list[str]:
    """Every expected (repository, tag) at *target* with the same digest; the problems found."""
    problems: list[str] = []
    sem = asyncio.Semaphore(concurrency)
    headers = {"Accept": mediatype.MANIFEST_ACCEPT}

    async def one(http: aiohttp.ClientSession, repo: str, tag: str, digest: Digest) -> None:
        async with sem, http.head(f"{target}/v2/{repo}/manifests/{tag}", headers=headers) as r:
            got = r.headers.get("Docker-Content-Digest", "")
            if r.status != 200:
                problems.append(f"{repo}:{tag} missing (HTTP {r.status})")
            elif got != str(digest):
                problems.append(f"{repo}:{tag} is {got}, expected {digest}")

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(one(http, r, t, d) for (r, t), d in expected.items()))
    return sorted(problems)


def machine() -> dict[str, str]:
    """The machine and software the figures were measured on."""

    def sh(*argv: str) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, check=False, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        return (out.stdout or out.stderr).decode(errors="replace").strip()

    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "cpu": f"{cpu}, {os.cpu_count()} CPUs (nproc {sh('nproc')})",
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": sh("uname", "-sr"),
        "disk": sh("df", "-hT", "/tmp").splitlines()[-1],
    }
