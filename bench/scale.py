"""
``python -m bench.scale``: drd's cost per tag at 5,000, 20,000 and 50,000 tags.

The corpus is generated once and cached: 500 repositories of 100 tags, each tag its
own small OCI manifest over one of 16 shared base layers, its repository's layer and
its repository's config. Pushing 50,000 manifests through the API would take longer
than the benchmark, so the generator writes distribution's filesystem layout
directly (blob data under ``blobs/``, the repository's layer, revision and tag links
under ``repositories/``), which is what a push leaves on disk. A size of N tags is
the first N/100 repositories of the same registry.

The target starts as a hard-linked copy of the source's storage (a no-op pass writes
nothing, and distribution replaces files rather than writing into them), so every
pass measured is a no-op over an up-to-date target. Per size, each measured command
runs ``--repeat`` times (the first, unmeasured daemon pass fills the known-tags cache
and the state database every later command reads):

- ``daemon pass``: `bench.inprocess`, passes after the first, in one process;
- ``replicate``: the one-shot `drd replicate` no-op, whole process;
- ``status``: `drd status` over the state the daemon's passes left;
- ``snapshot create (cold)``: once, into an empty store; ``snapshot create`` again
  with nothing changed; ``snapshot diff`` of the first against the newest.

Peak RSS is `/usr/bin/time -v`'s; requests are counted in the registries' logs.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import AccessLog, Run, machine, timed
from bench.run import PYTHON, _env, drd_config
from tests.servers import REGISTRY_BINARY, LocalRegistry

TAGS_PER_REPO = 100
BASE_LAYERS = 16
SIZES = (5_000, 20_000, 50_000)
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "drd-bench"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MiB = 1024 * 1024


# ---------------------------------------------------------------------- the corpus


def repo_name(index: int) -> str:
    """The name of repository *index*: ``scale/r000`` …"""
    return f"scale/r{index:03d}"


def tag_name(index: int) -> str:
    """The name of tag *index* in every repository: ``t000`` …"""
    return f"t{index:03d}"


def _seeded(seed: str, size: int) -> bytes:
    """*size* bytes that depend only on *seed* (a sha256 chain)."""
    out, block = bytearray(), hashlib.sha256(seed.encode()).digest()
    while len(out) < size:
        out += block
        block = hashlib.sha256(block).digest()
    return bytes(out[:size])


def _descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {
        "mediaType": media_type,
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


class Layout:
    """Writes distribution's filesystem storage layout under *root* (``…/data``)."""

    def __init__(self, root: Path) -> None:
        self.v2 = root / "docker" / "registry" / "v2"
        self._blobs: set[str] = set()

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def blob(self, data: bytes) -> str:
        """Store *data* once; its hex digest."""
        hexdigest = hashlib.sha256(data).hexdigest()
        if hexdigest not in self._blobs:
            self._write(self.v2 / "blobs" / "sha256" / hexdigest[:2] / hexdigest / "data", data)
            self._blobs.add(hexdigest)
        return hexdigest

    def link_layer(self, repo: str, hexdigest: str) -> None:
        """Make blob *hexdigest* part of *repo* (what an upload or a mount leaves)."""
        link = self.v2 / "repositories" / repo / "_layers" / "sha256" / hexdigest / "link"
        self._write(link, f"sha256:{hexdigest}".encode())

    def manifest(self, repo: str, tag: str, raw: bytes) -> str:
        """Store manifest *raw* in *repo* under *tag* (a manifest PUT by tag); its digest."""
        hexdigest = self.blob(raw)
        link = f"sha256:{hexdigest}".encode()
        manifests = self.v2 / "repositories" / repo / "_manifests"
        self._write(manifests / "revisions" / "sha256" / hexdigest / "link", link)
        tag_dir = manifests / "tags" / tag
        self._write(tag_dir / "current" / "link", link)
        self._write(tag_dir / "index" / "sha256" / hexdigest / "link", link)
        return f"sha256:{hexdigest}"


def generate(data: Path, repos: int, tags_per_repo: int = TAGS_PER_REPO) -> dict[str, str]:
    """Write the corpus under *data*; every (``repo:tag``) and its manifest digest."""
    layout = Layout(data)
    bases = [_seeded(f"base/{i}", 4096) for i in range(BASE_LAYERS)]
    base_hex = [layout.blob(b) for b in bases]
    tags: dict[str, str] = {}
    for r in range(repos):
        repo = repo_name(r)
        own = _seeded(f"{repo}/layer", 1024)
        config = json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}, "repo": repo},
            sort_keys=True,
        ).encode()
        for hexdigest in (layout.blob(own), layout.blob(config)):
            layout.link_layer(repo, hexdigest)
        for hexdigest in base_hex:
            layout.link_layer(repo, hexdigest)
        for t in range(tags_per_repo):
            base = bases[(r + t) % BASE_LAYERS]
            manifest = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": _descriptor(OCI_CONFIG, config),
                "layers": [_descriptor(OCI_LAYER, base), _descriptor(OCI_LAYER, own)],
                "annotations": {"org.opencontainers.image.version": f"{r}.{t}"},
            }
            raw = json.dumps(manifest, separators=(",", ":")).encode()
            tags[f"{repo}:{tag_name(t)}"] = layout.manifest(repo, tag_name(t), raw)
    return tags


def cached_corpus(cache: Path, repos: int) -> Path:
    """The cached corpus of *repos* repositories (generated on first use); its directory."""
    home = cache / f"scale-{repos}x{TAGS_PER_REPO}"
    if (home / "tags.json").is_file():
        return home
    shutil.rmtree(home, ignore_errors=True)
    building = cache / f".building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    started = time.monotonic()
    tags = generate(building / "data", repos)
    (building / "tags.json").write_text(json.dumps(tags))
    building.rename(home)
    print(f"generated {len(tags)} tags in {time.monotonic() - started:.1f}s: {home}", flush=True)
    return home


# ---------------------------------------------------------------------- measuring


@dataclass
class Scale:
    """The registries and the scratch space of one scale run."""

    source: LocalRegistry
    target: LocalRegistry
    work: Path
    repeat: int

    def measure(self, size: int) -> list[dict[str, Any]]:
        """Every command at *size* tags; one row per command."""
        repos = [repo_name(i) for i in range(size // TAGS_PER_REPO)]
        state, store = self.work / f"state-{size}", self.work / f"store-{size}"
        for path in (state, store):
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
        config = self.work / f"drd-{size}.toml"
        config.write_text(drd_config(self.source, self.target, repos, state, snapshots=store))
        logs = [AccessLog(self.source, "src"), AccessLog(self.target, "dst")]
        drd = [str(PYTHON), "-m", "drd"]
        rows = [self._daemon(size, config, logs)]
        one_shot = [*drd, "replicate", "--config", str(config), "--json"]
        rows.append(self._repeated(size, "replicate", one_shot, logs, _replicate_ok))
        status = [*drd, "status", "--config", str(config), "--json"]
        rows.append(self._repeated(size, "status", status, logs, _status_ok))
        create = [*drd, "snapshot", "create", "--config", str(config), "--json"]
        cold = self._repeated(size, "snapshot create (cold)", create, logs, _snapshot_ok, 1)
        first = cold["extra"].get("id", "")
        rows.append(cold)
        rows.append(self._repeated(size, "snapshot create", create, logs, _snapshot_ok))
        diff = [*drd, "snapshot", "diff", first, "latest", "--config", str(config), "--json"]
        rows.append(self._repeated(size, "snapshot diff", diff, logs, _diff_ok))
        return rows

    def _daemon(self, size: int, config: Path, logs: list[AccessLog]) -> dict[str, Any]:
        passes = self.repeat + 1
        argv = [str(PYTHON), "-m", "bench.inprocess", str(config), str(passes)]
        print(f"  {size:6d} daemon pass", end=" ", flush=True)
        run, stdout = timed(argv, env=_env(), logs=logs, log_file=self.work / "drd.log")
        document: dict[str, Any] = {}
        with contextlib.suppress(ValueError):
            document = json.loads(stdout)
        walls = document.get("passes_s", [0.0])[1:]
        last = (document.get("reports") or [[{}]])[-1][0]
        if not run.failed and last.get("skipped") != size:
            run.failed = f"the daemon's last pass skipped {last.get('skipped')} of {size} tags"
        first_pass = document.get("passes_s", [None])[0]
        extra = {"process_wall_s": round(run.wall_s, 2), "first_pass_s": first_pass}
        row = _row(size, "daemon pass", run, walls or [run.wall_s], extra)
        # The process's requests over its passes: one pass's worth.
        row["requests"] = run.total_requests // passes
        print(_line(row), flush=True)
        return row

    def _repeated(
        self,
        size: int,
        command: str,
        argv: list[str],
        logs: list[AccessLog],
        check: Any,
        times: int | None = None,
    ) -> dict[str, Any]:
        runs: list[Run] = []
        extra: dict[str, Any] = {}
        print(f"  {size:6d} {command}", end=" ", flush=True)
        for _ in range(times or self.repeat):
            run, stdout = timed(argv, env=_env(), logs=logs, log_file=self.work / "drd.log")
            document: dict[str, Any] = {}
            with contextlib.suppress(ValueError):
                document = json.loads(stdout) if stdout.strip() else {}
            problem = check(document, size)
            if problem and not run.failed:
                run.failed = problem
            extra = {"id": document.get("id", "")} if "id" in document else extra
            runs.append(run)
        median = sorted(runs, key=lambda r: r.wall_s)[len(runs) // 2]
        row = _row(size, command, median, [r.wall_s for r in runs], extra)
        row["rss_mib"] = round(max(r.rss_kib for r in runs) / 1024, 1)
        row["failed"] = next((r.failed for r in runs if r.failed), "")
        print(_line(row), flush=True)
        return row


def _row(
    size: int, command: str, run: Run, walls: list[float], extra: dict[str, Any]
) -> dict[str, Any]:
    ordered = sorted(walls)
    wall = ordered[len(ordered) // 2]
    return {
        "tags": size,
        "command": command,
        "wall_s": round(wall, 3),
        "walls": [round(w, 3) for w in walls],
        "per_tag_ms": round(wall / size * 1000, 4),
        "cpu_s": round(run.cpu_s, 2),
        "rss_mib": round(run.rss_kib / 1024, 1),
        "requests": run.total_requests,
        "failed": run.failed,
        "extra": extra,
        "load1": round(os.getloadavg()[0], 2),
    }


def _line(row: dict[str, Any]) -> str:
    walls = ", ".join(f"{w:.2f}" for w in row["walls"])
    failed = f" FAILED {row['failed']}" if row["failed"] else ""
    return (
        f"{row['wall_s']:8.2f}s [{walls}] {row['per_tag_ms']:.3f} ms/tag "
        f"{row['rss_mib']:6.1f} MiB {row['requests']} req load {row['load1']}{failed}"
    )


def _replicate_ok(document: dict[str, Any], size: int) -> str:
    summaries = [p.get("summary", {}) for p in document.get("policies", [])]
    skipped = sum(s.get("skipped", 0) for s in summaries)
    return "" if skipped == size else f"the no-op skipped {skipped} of {size} tags"


def _status_ok(document: dict[str, Any], size: int) -> str:
    return "" if document.get("replication") else "no replication in the status document"


def _snapshot_ok(document: dict[str, Any], size: int) -> str:
    tags = document.get("tags")
    return "" if tags == size else f"the snapshot holds {tags} tags, not {size}"


def _diff_ok(document: dict[str, Any], size: int) -> str:
    return "" if isinstance(document, dict) and document else "no diff document"


# ---------------------------------------------------------------------- the run


def run_scale(sizes: tuple[int, ...], cache: Path, work: Path, repeat: int) -> dict[str, Any]:
    """Generate (or reuse) the corpus, start the registries, measure every size."""
    repos = max(sizes) // TAGS_PER_REPO
    corpus = cached_corpus(cache, repos)
    (corpus / "registry.log").unlink(missing_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    (work / "dst").mkdir(parents=True)
    # Hard links: the copy is instant and takes no space; nothing writes during a no-op.
    subprocess.run(["cp", "-al", str(corpus / "data"), str(work / "dst" / "data")], check=True)
    rows: list[dict[str, Any]] = []
    with (
        LocalRegistry.start(REGISTRY_BINARY, corpus) as source,
        LocalRegistry.start(REGISTRY_BINARY, work / "dst") as target,
    ):
        scale = Scale(source, target, work, repeat)
        for size in sizes:
            rows += scale.measure(size)
    shutil.rmtree(work, ignore_errors=True)
    return {"machine": machine(), "repeat": repeat, "rows": rows}


def render(results: dict[str, Any]) -> str:
    """The scale table, then cost per tag against the smallest size."""
    rows = results["rows"]
    loads = [r["load1"] for r in rows]
    lines = [
        f"Runs per figure: {results['repeat']} (median, range in brackets); the cold snapshot "
        f"runs once. Load average (1 min) meanwhile: {min(loads):.1f} to {max(loads):.1f}.",
        "",
        "| command | tags | wall s | ms per tag | vs smallest size | peak RSS MiB | requests "
        "| CPU s | ok |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    smallest: dict[str, float] = {}
    for command in dict.fromkeys(r["command"] for r in rows):
        for r in sorted((r for r in rows if r["command"] == command), key=lambda r: r["tags"]):
            base = smallest.setdefault(command, r["per_tag_ms"])
            growth = r["per_tag_ms"] / base if base else 0.0
            walls = r["walls"]
            spread = f" ({min(walls):.2f}..{max(walls):.2f})" if len(walls) > 1 else ""
            lines.append(
                f"| {command} | {r['tags']} | {r['wall_s']:.2f}{spread} | {r['per_tag_ms']:.3f} "
                f"| {growth:.2f}x | {r['rss_mib']:.0f} | {r['requests']} | {r['cpu_s']:.1f} "
                f"| {'yes' if not r['failed'] else '**no**'} |"
            )
    lines += [
        "",
        "vs smallest size: the cost per tag over the same command's at the smallest size "
        "(1.00x = linear). Requests and CPU seconds are one run's (the median's).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[1])
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="tag counts, ascending")
    p.add_argument("--repeat", type=int, default=3, help="runs per measured command")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the corpus is kept")
    p.add_argument("--workdir", type=Path, default=None, help="scratch (default: a tmp dir)")
    p.add_argument("--json", type=Path, default=None, help="every figure as JSON")
    p.add_argument("--output", type=Path, default=None, help="Markdown (default: stdout)")
    args = p.parse_args(argv)
    sizes = tuple(sorted(int(s) for s in args.sizes.split(",")))
    if any(s % TAGS_PER_REPO for s in sizes):
        p.error(f"every size must be a multiple of {TAGS_PER_REPO}")
    with _workdir(args.workdir) as work:
        results = run_scale(sizes, args.cache, work / "scale", max(1, args.repeat))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    text = render(results)
    if args.output is not None:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 1 if any(r["failed"] for r in results["rows"]) else 0


@contextlib.contextmanager
def _workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="drd-scale-") as tmp:
        yield Path(tmp)


if __name__ == "__main__":
    sys.exit(main())
