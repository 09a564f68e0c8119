"""
``python -m bench``: every tool, every phase, on the same corpus in the same run.

For each corpus: start a source registry and push the corpus into it; give each
tool a fresh, empty target registry; then, phase by phase (cold, warm no-op,
incremental), run each tool as a subprocess under ``/usr/bin/time -v``, count
the requests it caused in the registries' access logs, and check that every
source tag is at its target with the same digest. Last, ``drd snapshot create``
(cold, then unchanged) and ``drd drill`` against the raw pull reference. Results
go to a JSON file and a Markdown table (`bench.report`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import report
from bench.corpus import CORPORA, Change, Corpus, Pusher
from bench.measure import AccessLog, Run, machine, timed, verify
from tests.servers import REGISTRY_BINARY, LocalRegistry

ROOT = Path(__file__).resolve().parent.parent
PYTHON = Path(sys.executable)
PHASES = ("cold", "warm", "incremental", "drill")
TOOLS = ("raw", "skopeo", "skopeo-yaml", "drd")
# A second drd no-op pass without its state directory: what the cache saves.
DRD_STATELESS = "drd-stateless"
# The daemon's no-op pass, timed inside one process over open clients (bench.inprocess).
DRD_DAEMON = "drd-daemon"
# The whole-process floor of a no-op pass: tags lists and one HEAD per tag (bench.floor).
FLOOR = "floor"
# In-process passes per drd-daemon run: the first opens the connections, the rest count.
DAEMON_PASSES = 4
_SNAPSHOT_KEYS = ("tags", "manifests", "blobs", "manifests_fetched", "registry_requests")


@dataclass
class Target:
    """One tool's target registry and the counters on it."""

    registry: LocalRegistry
    log: AccessLog


@dataclass
class Bench:
    """One corpus's run: the registries, the corpus, the figures collected."""

    corpus: Corpus
    workdir: Path
    source: LocalRegistry
    source_log: AccessLog
    tools: tuple[str, ...]
    profile: Path | None
    stack: contextlib.ExitStack
    repeat: int = 1
    warm_repeat: int = 1
    drill_repeat: int = 1
    targets: dict[str, Target] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    # ------------------------------------------------------------------ targets

    def fresh_target(self, tool: str) -> Target:
        """Start an empty registry for *tool* (its data from any earlier phase is dropped)."""
        old = self.targets.pop(tool, None)
        if old is not None and old.registry.process is not None:
            old.registry.stop()
            shutil.rmtree(old.registry.root.parent, ignore_errors=True)
        workdir = self.workdir / f"dst-{tool}"
        shutil.rmtree(workdir, ignore_errors=True)
        registry = self.stack.enter_context(LocalRegistry.start(REGISTRY_BINARY, workdir))
        target = Target(registry, AccessLog(registry, "dst"))
        self.targets[tool] = target
        return target

    # ------------------------------------------------------------------ phases

    def phase(self, phase: str, change: Change | None) -> None:
        """
        Run every tool through *phase*, each *repeat* times interleaved, each round
        starting one tool later (the incremental phase once: it changes the target);
        keep each tool's median run by wall time.
        """
        tools = list(self.tools)
        if phase == "warm":
            tools += [FLOOR, *((DRD_STATELESS, DRD_DAEMON) if "drd" in tools else ())]
        rounds = {"cold": self.repeat, "warm": self.warm_repeat}.get(phase, 1)
        runs: dict[str, list[tuple[Run, list[str]]]] = {tool: [] for tool in tools}
        for round_ in range(rounds):
            # Each round starts with the next tool: no tool always runs right after the same
            # other one (whose writes, heap or sockets the machine may still be settling).
            for tool in tools[round_ % len(tools) :] + tools[: round_ % len(tools)]:
                if phase == "cold":
                    self.fresh_target(tool)
                target = self.targets[_target_of(tool, self.targets)]
                print(f"  {self.corpus.name} {phase:11} {tool:13}", end=" ", flush=True)
                run = self.run_tool(tool, phase, target, change)
                problems = asyncio.run(verify(target.registry.url, self.corpus.tags))
                runs[tool].append((run, problems))
                print(
                    f"{run.wall_s:8.2f}s {run.rss_kib / 1024:7.1f} MiB "
                    f"{run.total_requests:6d} req {'ok' if not problems else 'MISMATCH'}"
                    + (f" FAILED {run.failed}" if run.failed else ""),
                    flush=True,
                )
        for tool, measured in runs.items():
            ordered = sorted(measured, key=lambda m: m[0].wall_s)
            run, problems = ordered[len(ordered) // 2]
            problems = sorted({p for _, found in measured for p in found}) or problems
            row = self.row(phase, tool, run, change, problems)
            row["walls"] = [round(m[0].wall_s, 3) for m in measured]
            # Per round, in run order: the registries' CPU moves as much as the wall time.
            row["registry_cpus"] = [m[0].registry_cpu_s for m in measured]
            row["loads"] = [m[0].load1 for m in measured]
            row["failed"] = next((m[0].failed for m in measured if m[0].failed), "")
            self.rows.append(row)

    def run_tool(self, tool: str, phase: str, target: Target, change: Change | None) -> Run:
        logs = [self.source_log, target.log]
        log_file = self.workdir / f"{tool}.log"
        match tool:
            case "raw":
                plan = self.workdir / f"raw-{phase}.json"
                if change is None:  # nothing to copy: the floor is one source HEAD per tag
                    plan.write_text(json.dumps(self.corpus.heads_plan(self.source.url)))
                    argv = [str(PYTHON), "-m", "bench.raw", "--heads", str(plan)]
                else:
                    plan.write_text(
                        json.dumps(change.raw_plan(self.source.url, target.registry.url))
                    )
                    argv = [str(PYTHON), "-m", "bench.raw", str(plan)]
                return timed(argv, env=_env(), logs=logs, log_file=log_file)[0]
            case "skopeo":
                total = Run()
                for repo in self.corpus.repos:
                    dest = f"{target.registry.host}/{repo.rsplit('/', 1)[0]}"
                    src = f"{self.source.host}/{repo}"
                    argv = [*_skopeo(self.workdir), "--src", "docker", "--src-tls-verify=false"]
                    argv += ["--src-no-creds", *_skopeo_dest(), src, dest]
                    total.add(timed(argv, env=_skopeo_env(self.workdir), logs=logs)[0])
                return total
            case "skopeo-yaml":
                spec = self.workdir / "skopeo-sync.yaml"
                images: dict[str, list[str]] = {repo: [] for repo in self.corpus.repos}
                # JSON is YAML: one source registry, every repository, every tag.
                spec.write_text(
                    json.dumps({self.source.host: {"tls-verify": False, "images": images}})
                )
                dest = f"{target.registry.host}/{self.corpus.repos[0].rsplit('/', 1)[0]}"
                argv = [*_skopeo(self.workdir), "--src", "yaml", *_skopeo_dest(), str(spec), dest]
                return timed(argv, env=_skopeo_env(self.workdir), logs=logs, log_file=log_file)[0]
            case "drd" | "drd-stateless":
                return self.run_drd(tool, phase, target, logs)
            case "floor":
                argv = [str(PYTHON), "-m", "bench.floor", self.source.url, *self.corpus.repos]
                run, stdout = timed(argv, env=_env(), logs=logs, log_file=log_file)
                with contextlib.suppress(ValueError):
                    run.extra = json.loads(stdout)
                return run
            case "drd-daemon":
                return self.run_daemon_pass(target, logs)
        raise ValueError(tool)

    def run_daemon_pass(self, target: Target, logs: list[AccessLog]) -> Run:
        """
        DAEMON_PASSES no-op passes in one process; the figures are one pass's: the median
        wall time of the passes after the first, and the requests divided by the passes.
        """
        config = self.workdir / "drd.toml"
        state = self.workdir / "state-drd"
        config.write_text(drd_config(self.source, target.registry, self.corpus.repos, state))
        argv = [str(PYTHON), "-m", "bench.inprocess", str(config), str(DAEMON_PASSES)]
        run, stdout = timed(argv, env=_env(), logs=logs, log_file=self.workdir / "drd.log")
        with contextlib.suppress(ValueError, KeyError, IndexError):
            document = json.loads(stdout)
            later = sorted(document["passes_s"][1:])
            run.extra = {
                "process_wall_s": round(run.wall_s, 3),
                "passes_s": document["passes_s"],
                "skipped": document["reports"][-1][0]["skipped"],
            }
            run.wall_s = later[len(later) // 2]
            run.requests = Counter(
                {k: v // DAEMON_PASSES for k, v in run.requests.items() if v >= DAEMON_PASSES}
            )
        return run

    def run_drd(self, tool: str, phase: str, target: Target, logs: list[AccessLog]) -> Run:
        state = self.workdir / "state-drd"
        if phase == "cold":
            shutil.rmtree(state, ignore_errors=True)
        state.mkdir(exist_ok=True)
        config = self.workdir / "drd.toml"
        config.write_text(drd_config(self.source, target.registry, self.corpus.repos, state))
        argv = [str(PYTHON), "-m", "drd", "replicate", "--config", str(config), "--json"]
        if tool == DRD_STATELESS:
            argv.append("--no-cache")
        if self.profile is not None:
            self.profile.mkdir(parents=True, exist_ok=True)
            out = self.profile / f"{self.corpus.name}-{phase}-{tool}.txt"
            spy = shutil.which("py-spy") or str(PYTHON.parent / "py-spy")
            argv = [spy, "record", "--format", "raw", "-r", "250", "-o", str(out), "--", *argv]
        run, stdout = timed(argv, env=_env(), logs=logs, log_file=self.workdir / f"{tool}.log")
        with contextlib.suppress(ValueError, KeyError, IndexError):
            summary = json.loads(stdout)["policies"][0]["summary"]
            keys = ("copied", "skipped", "failed", "bytes", "duration_s")
            run.extra = {k: summary[k] for k in keys if k in summary}
        return run

    # ------------------------------------------------------------------ snapshots and drills

    def snapshots_and_drill(self) -> None:
        """`drd snapshot create` cold and unchanged, then `drd drill` and the raw pull."""
        drill = self.fresh_target("drill")
        store, reports = self.workdir / "snapshots", self.workdir / "reports"
        config = self.workdir / "drd-snapshots.toml"
        config.write_text(
            drd_config(
                self.source,
                self.targets["drd"].registry if "drd" in self.targets else drill.registry,
                self.corpus.repos,
                self.workdir / "state-snapshots",
                snapshots=store,
                drill=drill.registry,
                reports=reports,
            )
        )
        for phase in ("snapshot cold", "snapshot unchanged"):
            argv = [str(PYTHON), "-m", "drd", "snapshot", "create", "--config", str(config)]
            self._measured(phase, "drd", [*argv, "--json"], [self.source_log], 0, _SNAPSHOT_KEYS)
        drill_argv = [str(PYTHON), "-m", "drd", "drill", "--config", str(config), "--json"]
        plan = self.workdir / "raw-pull.json"
        plan.write_text(json.dumps(self.corpus.pull_plan(self.source.url)))
        pull_argv = [str(PYTHON), "-m", "bench.raw", "--pull", str(plan)]
        runs: dict[str, list[dict[str, Any]]] = {"drd": [], "raw pull": []}
        for round_ in range(self.drill_repeat):
            order = [("drd", drill_argv, [self.source_log, drill.log])]
            order.append(("raw pull", pull_argv, [self.source_log]))
            # Interleaved, each round starting with the other one.
            for tool, argv, logs in order[round_ % 2 :] + order[: round_ % 2]:
                runs[tool].append(self._measured("drill", tool, argv, logs, self.corpus.bytes, ()))
        for tool, rows in runs.items():
            self.rows.append(_median_row(rows, drill=tool == "drd"))
        self.restore_against_estimate(store)

    def restore_against_estimate(self, store: Path) -> None:
        """
        What the drill's RTO estimates, measured: `drd restore` of the newest snapshot
        into an empty registry, then `drd scrub --deep` re-hashing every blob its tags reach.
        """
        fresh = self.fresh_target("restore")
        config = self.workdir / "drd-restore.toml"
        config.write_text(
            drd_config(
                self.source,
                fresh.registry,
                self.corpus.repos,
                self.workdir / "state-snapshots",
                snapshots=store,
            )
        )
        argv = [
            *(str(PYTHON), "-m", "drd", "restore", "--snapshot", "latest", "--to", "dst"),
            *("--yes", "--allow-unsigned-snapshot", "--config", str(config), "--json"),
        ]
        self._measured("restore", "drd", argv, [fresh.log], self.corpus.bytes, ())
        # drd scrub --deep, not the raw pull: the pull plan names every blob ever pushed, and
        # a restore brings back only what the snapshot's tags reach. scrub re-hashes exactly that.
        argv = [
            *(str(PYTHON), "-m", "drd", "scrub", "dst", "--deep"),
            *("--config", str(config), "--json"),
        ]
        self._measured("restore", "verify", argv, [fresh.log], self.corpus.bytes, ())

    def _measured(
        self,
        phase: str,
        tool: str,
        argv: list[str],
        logs: list[AccessLog],
        nbytes: int,
        keys: tuple[str, ...],
    ) -> dict[str, Any]:
        """Run one measured command; its row (kept in `rows` except for drill rounds)."""
        print(f"  {self.corpus.name} {phase:18} {tool:13}", end=" ", flush=True)
        run, stdout = timed(argv, env=_env(), logs=logs, log_file=self.workdir / "drd.log")
        document: dict[str, Any] = {}
        with contextlib.suppress(ValueError):
            document = json.loads(stdout) if stdout.strip() else {}
        run.extra = {k: document[k] for k in keys if k in document}
        if phase == "drill" and tool == "drd":
            run.extra["ok"] = document.get("ok")
            run.extra["phases"] = {
                p["name"]: p["duration_s"] for p in document.get("phases", []) if "name" in p
            }
            run.extra["rto"] = (document.get("judgement") or {}).get("rto") or {}
            if not document.get("ok", False) and not run.failed:
                run.failed = f"drill not ok: {str(document.get('error', ''))[:300]}"
        row = self.row(phase, tool, run, None, [])
        row["bytes"] = nbytes
        if phase != "drill":
            self.rows.append(row)
        print(
            f"{run.wall_s:8.2f}s {run.rss_kib / 1024:7.1f} MiB {run.total_requests:6d} req"
            + (f" FAILED {run.failed}" if run.failed else ""),
            flush=True,
        )
        return row

    def row(
        self, phase: str, tool: str, run: Run, change: Change | None, problems: list[str]
    ) -> dict[str, Any]:
        tags = len(self.corpus.tags)
        return {
            "corpus": self.corpus.name,
            "phase": phase,
            "tool": tool,
            "wall_s": round(run.wall_s, 3),
            "cpu_s": round(run.cpu_s, 3),
            "rss_mib": round(run.rss_kib / 1024, 1),
            "invocations": run.invocations,
            "requests": run.total_requests,
            "requests_by_method": dict(sorted(run.requests.items())),
            "registry_cpu_s": run.registry_cpu_s,
            "tags": tags,
            "changed_tags": len(change.tags) if change is not None else 0,
            "bytes": change.bytes if change is not None else 0,
            "verified": not problems,
            "problems": problems[:10],
            "failed": run.failed,
            "extra": run.extra,
            "load1": round(os.getloadavg()[0], 2),  # others' work on the machine meanwhile
        }


def _median_row(rows: list[dict[str, Any]], *, drill: bool) -> dict[str, Any]:
    """
    The median of repeated drill rounds: for drd by its pull-and-re-hash phase (what the
    drill-verify target is about), for the raw pull by wall time; every round's figures kept.
    """

    def key(row: dict[str, Any]) -> float:
        if drill:
            return float(row["extra"].get("phases", {}).get("pull and re-hash", 0.0))
        return float(row["wall_s"])

    ordered = sorted(rows, key=key)
    row = dict(ordered[len(ordered) // 2])
    row["walls"] = [r["wall_s"] for r in rows]
    row["verify_s"] = [round(key(r), 3) for r in rows]
    row["failed"] = next((r["failed"] for r in rows if r["failed"]), "")
    return row


def _target_of(tool: str, targets: dict[str, Target]) -> str:
    """The target a tool's run is checked against: its own, drd's, or any filled one."""
    if tool in (DRD_STATELESS, DRD_DAEMON):
        return "drd"
    if tool == FLOOR:
        return "raw" if "raw" in targets else next(iter(targets))
    return tool


def drd_config(
    source: LocalRegistry,
    target: LocalRegistry,
    repos: list[str],
    state: Path,
    *,
    snapshots: Path | None = None,
    drill: LocalRegistry | None = None,
    reports: Path | None = None,
) -> str:
    """One policy, source to target, the corpus's repositories by name, drd's defaults."""
    names = ", ".join(json.dumps(r) for r in repos)
    text = (
        "version = 1\n\n"
        f'[endpoints.src]\nurl = "{source.url}"\n\n'
        f'[endpoints.dst]\nurl = "{target.url}"\n\n'
        "[[replication]]\n"
        'name = "bench"\nsource = "src"\ntargets = ["dst"]\n'
        f"repositories = [{names}]\n\n"
        f'[daemon]\nstate_dir = "{state}"\n'
    )
    if snapshots is not None:
        text += (
            f'\n[snapshots]\nsource = "src"\nstore = "{snapshots.as_uri()}"\n'
            f"repositories = [{names}]\n"
        )
    if drill is not None:
        text += f'\n[endpoints.drill]\nurl = "{drill.url}"\n'
        text += f'\n[drills]\ntarget = "drill"\nsample = 0\nreport_dir = "{reports}"\n'
    return text


def _env() -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(PYTHONPATH=str(ROOT), NO_PROXY="127.0.0.1,localhost")
    return env


def _skopeo(workdir: Path) -> list[str]:
    conf = _skopeo_conf(workdir)
    return [
        "skopeo",
        "--policy",
        str(conf / "policy.json"),
        "--registries.d",
        str(conf / "registries.d"),
        "--tmpdir",
        str(conf / "tmp"),
        "sync",
        "--all",
        "--preserve-digests",
        "--retry-times",
        "0",
    ]


def _skopeo_dest() -> list[str]:
    return ["--dest", "docker", "--dest-tls-verify=false", "--dest-no-creds"]


def _skopeo_conf(workdir: Path) -> Path:
    """Empty registries.conf, no credentials, accept-anything policy: only loopback is used."""
    conf = workdir / "skopeo-conf"
    if not conf.is_dir():
        (conf / "registries.d").mkdir(parents=True)
        (conf / "tmp").mkdir()
        (conf / "registries.conf").write_text("")
        (conf / "containers.conf").write_text("")
        (conf / "auth.json").write_text('{"auths": {}}\n')
        (conf / "policy.json").write_text(
            json.dumps({"default": [{"type": "insecureAcceptAnything"}]})
        )
    return conf


def _skopeo_env(workdir: Path) -> dict[str, str]:
    conf = _skopeo_conf(workdir)
    env = _env()
    env.update(
        HOME=str(conf),
        CONTAINERS_REGISTRIES_CONF=str(conf / "registries.conf"),
        CONTAINERS_CONF=str(conf / "containers.conf"),
        REGISTRY_AUTH_FILE=str(conf / "auth.json"),
        DOCKER_CONFIG=str(conf),
        TMPDIR=str(conf / "tmp"),
    )
    return env


async def _push(url: str, change: Change) -> None:
    async with Pusher(url) as pusher:
        await pusher.push(change)


def run_corpus(
    name: str,
    scale: float,
    workdir: Path,
    tools: tuple[str, ...],
    *,
    phases: tuple[str, ...] = PHASES,
    repeat: int = 1,
    warm_repeat: int = 1,
    drill_repeat: int = 1,
    profile: Path | None = None,
) -> list[dict[str, Any]]:
    """Every phase of one corpus; returns its rows."""
    started = time.monotonic()
    corpus = Corpus(name, scale)
    print(
        f"{name} (scale {scale}): {len(corpus.repos)} repositories, {len(corpus.tags)} tags, "
        f"{corpus.initial.bytes / 2**20:.1f} MiB unique (generated in "
        f"{time.monotonic() - started:.1f}s)",
        flush=True,
    )
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(LocalRegistry.start(REGISTRY_BINARY, workdir / "src"))
        asyncio.run(_push(source.url, corpus.initial))
        problems = asyncio.run(verify(source.url, corpus.tags))
        if problems:
            raise RuntimeError(f"the source does not hold the corpus: {problems[:3]}")
        bench = Bench(
            corpus,
            workdir,
            source,
            AccessLog(source, "src"),
            tools,
            profile,
            stack,
            repeat,
            warm_repeat,
            drill_repeat,
        )
        bench.phase("cold", corpus.initial)
        if "warm" in phases:
            bench.phase("warm", None)
        if "incremental" in phases:
            change = corpus.evolve()
            asyncio.run(_push(source.url, change))
            bench.phase("incremental", change)
        if "drill" in phases and "drd" in tools:
            bench.snapshots_and_drill()
    shutil.rmtree(workdir, ignore_errors=True)
    return bench.rows


def versions() -> dict[str, str]:
    """Versions of everything measured."""

    def first_line(*argv: str) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, check=False, timeout=30)
        except OSError:
            return "?"
        return (out.stdout or out.stderr).decode(errors="replace").strip().splitlines()[0]

    import aiohttp

    import drd

    return {
        "drd": drd.__version__,
        "python": sys.version.split()[0],
        "aiohttp": aiohttp.__version__,
        "skopeo": first_line("skopeo", "--version"),
        "registry": first_line(str(REGISTRY_BINARY), "--version"),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--corpus",
        action="append",
        choices=CORPORA,
        help="corpus to run (repeatable; default: all four)",
    )
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply blob sizes (and many-tags' tags per repository, up to 1) by this",
    )
    p.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated from {TOOLS}")
    p.add_argument("--workdir", type=Path, default=None, help="scratch space (default: a tmp dir)")
    p.add_argument("--output", type=Path, default=None, help="Markdown table (default: stdout)")
    p.add_argument("--json", type=Path, default=None, help="also write every figure as JSON")
    p.add_argument(
        "--phases",
        default=",".join(PHASES),
        help="comma-separated from %(default)s (cold always runs; drill includes snapshots)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the cold and warm phases this many times, interleaved; report the median",
    )
    p.add_argument(
        "--warm-repeat",
        type=int,
        default=None,
        help="repeats of the warm phase (default: --repeat)",
    )
    p.add_argument(
        "--drill-repeat",
        type=int,
        default=None,
        help="repeats of the drill and the raw pull, interleaved (default: --repeat)",
    )
    p.add_argument("--profile", type=Path, default=None, help="run drd under py-spy, save here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tools = tuple(t for t in args.tools.split(",") if t)
    unknown = set(tools) - set(TOOLS)
    if unknown:
        sys.stderr.write(f"unknown tools: {', '.join(sorted(unknown))}\n")
        return 2
    results: dict[str, Any] = {
        "machine": machine(),
        "versions": versions(),
        "scale": args.scale,
        "repeat": max(1, args.repeat),
        "warm_repeat": max(1, args.repeat if args.warm_repeat is None else args.warm_repeat),
        "drill_repeat": max(1, args.repeat if args.drill_repeat is None else args.drill_repeat),
        "rows": [],
    }
    with _workdir(args.workdir) as work:
        for name in args.corpus or CORPORA:
            results["rows"] += run_corpus(
                name,
                args.scale,
                work / name,
                tools,
                phases=tuple(args.phases.split(",")),
                repeat=max(1, args.repeat),
                warm_repeat=max(1, args.repeat if args.warm_repeat is None else args.warm_repeat),
                drill_repeat=results["drill_repeat"],
                profile=args.profile,
            )
            if args.json is not None:
                args.json.write_text(json.dumps(results, indent=1) + "\n")
    text = report.render(results)
    if args.output is not None:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    bad = [r for r in results["rows"] if not r["verified"] or r["failed"]]
    return 1 if bad else 0


@contextlib.contextmanager
def _workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="drd-bench-") as tmp:
        yield Path(tmp)
