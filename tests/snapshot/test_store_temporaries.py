"""
The folder store's temporary files (a create-only race, a crashed writer, a live writer)
and a full disk, against real folders: a killed process, a tiny tmpfs, RLIMIT_FSIZE.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import resource
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from drd.errors import StorageError
from drd.selection.filters import RepoFilter
from drd.snapshot.catalog import list_snapshots, prune
from drd.snapshot.collect import run_snapshot
from drd.store.dir import DirStore
from tests.clients import open_client
from tests.images import make_image, push_image
from tests.servers import LocalRegistry
from tests.snapshot.helpers import (
    drd_argv,
    drd_env,
    files_under,
    json_out,
    opened,
    store_config,
    write_config,
)

OLD = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).timestamp()


def temporaries(root: Path) -> list[str]:
    """Every temporary file below *root*."""
    return [p for p in files_under(root) if p.rsplit("/", 1)[-1].startswith(".")]


async def gated(gate: asyncio.Event, data: bytes, reached: asyncio.Event) -> AsyncIterator[bytes]:
    """One chunk, then set *reached* (the temporary file exists by then), wait for *gate*."""
    yield data[:10]
    reached.set()
    await gate.wait()
    yield data[10:]


async def test_a_create_only_race_leaves_no_temporary_file(tmp_path: Path) -> None:
    """Two create-only streams of one key: one writes, the other says False; no .tmp is left."""
    store = DirStore(tmp_path / "store")
    gate = asyncio.Event()
    key = "blobs/sha256/" + "ab" * 32
    both = [asyncio.Event(), asyncio.Event()]
    first = asyncio.create_task(
        store.put_stream(key, gated(gate, b"x" * 100, both[0]), create_only=True)
    )
    second = asyncio.create_task(
        store.put_stream(key, gated(gate, b"y" * 100, both[1]), create_only=True)
    )
    await both[0].wait()
    await both[1].wait()
    assert len(temporaries(tmp_path / "store")) == 2
    gate.set()
    results = sorted([await first, await second])

    assert results == [False, True]
    assert files_under(tmp_path / "store") == [key]
    assert (tmp_path / "store" / key).read_bytes() in (b"x" * 100, b"y" * 100)


_CRASHING_WRITER = """
import asyncio, os, signal, sys
from pathlib import Path
from drd.store.dir import DirStore

async def chunks():
    yield b"partial" * 1000
    # The crash: the process dies mid-write, no finally runs.
    os.kill(os.getpid(), signal.SIGKILL)
    yield b""

asyncio.run(DirStore(Path(sys.argv[1])).put_stream(sys.argv[2], chunks()))
"""


def crash_a_writer(root: Path, key: str) -> str:
    """Run a writer that is killed mid-stream; return the temporary file it left (aged)."""
    before = set(temporaries(root)) if root.exists() else set()
    proc = subprocess.run(
        [sys.executable, "-c", _CRASHING_WRITER, str(root), key], check=False, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL
    [left] = set(temporaries(root)) - before
    os.utime(root / left, (OLD, OLD))
    return left


async def test_stale_temporaries_are_cleaned_on_open_and_prune_but_never_a_live_one(
    tmp_path: Path,
) -> None:
    """
    A killed writer's temporary file is removed when the store is opened, and another
    one by a prune; a live writer's (aged just the same) stays and still commits.
    """
    root = tmp_path / "store"
    config = store_config("dir", tmp_path)
    crashed = crash_a_writer(root, "blobs/sha256/" + "01" * 32)

    gate = asyncio.Event()
    live_key = "blobs/sha256/" + "02" * 32
    writer = DirStore(root)
    reached = asyncio.Event()
    live = asyncio.create_task(writer.put_stream(live_key, gated(gate, b"z" * 50, reached)))
    await reached.wait()
    [live_tmp] = set(temporaries(root)) - {crashed}
    os.utime(root / live_tmp, (OLD, OLD))

    async with opened(config):
        pass
    assert temporaries(root) == [live_tmp]

    async with opened(config) as store:
        # Left after the store was opened: the prune must find it.
        crash_a_writer(root, "manifests/sha256/" + "03" * 32)
        assert len(temporaries(root)) == 2
        await prune(store, "primary", keep_last=1)
    assert temporaries(root) == [live_tmp]

    gate.set()
    assert await live is True
    assert files_under(root) == [live_key]
    assert (root / live_key).read_bytes() == b"z" * 50


async def test_open_scans_only_the_staging_folder_and_a_prune_walks_everything(
    tmp_path: Path,
) -> None:
    """
    Writes are staged in ``.tmp/``, so opening a store scans that folder alone: a stale
    temporary an older drd left beside its object survives the open and is removed by
    the next prune, which walks the whole store.
    """
    root = tmp_path / "store"
    config = store_config("dir", tmp_path)
    async with opened(config) as store:
        assert await store.put_bytes("manifests/sha256/" + "04" * 32, b"{}") is True
    assert temporaries(root) == []
    legacy = root / "manifests/sha256" / f".{'05' * 32}.{uuid.uuid4().hex}.tmp"
    legacy.write_bytes(b"half")
    os.utime(legacy, (OLD, OLD))
    left = legacy.relative_to(root).as_posix()

    async with opened(config):
        pass
    assert temporaries(root) == [left]

    async with opened(config) as store:
        await prune(store, "primary", keep_last=1)
    assert temporaries(root) == []
    assert files_under(root) == ["manifests/sha256/" + "04" * 32]


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of *size* mounted at *path* (root only; skipped where mounting is refused)."""
    path.mkdir(parents=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the RLIMIT_FSIZE test covers a full disk")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


async def test_a_full_disk_records_a_failed_snapshot(
    source_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    Blobs into a 256 KiB tmpfs, one layer of 600 KiB: ENOSPC is a StorageError recorded as
    the run's failure (no index, no temporary file left), not an exception out of the job.
    """
    image = make_image(f"{repo}/big", layer_size=600 * 1024)
    await push_image(source_registry, repo, image, "v1")
    with tiny_tmpfs(tmp_path / "disk", "256k") as disk:
        config = store_config("dir", disk)
        async with opened(config) as store, open_client(source_registry) as client:
            report = await run_snapshot(
                client,
                store,
                source_name="primary",
                repositories=RepoFilter((repo,)),
                blobs=True,
            )
            listed = await list_snapshots(store, "primary")
        assert report.snapshot is None
        assert isinstance(report.exception, StorageError)
        assert "No space left on device" in report.error
        assert str(image.layers[0].digest.hex) in report.error
        assert listed == []
        assert temporaries(disk / "store") == []


def _limit_file_size() -> None:
    # A write past the limit fails with EFBIG instead of killing the process (SIGXFSZ).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))


async def test_snapshot_create_under_a_file_size_limit_fails_with_exit_1(
    source_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    `drd snapshot create` in a process that may not write a file over 256 KiB, a 600 KiB layer:
    exit 1 with the storage error in the JSON report, not a traceback and exit 70.
    """
    image = make_image(f"{repo}/{uuid.uuid4().hex[:6]}", layer_size=600 * 1024)
    await push_image(source_registry, repo, image, "v1")
    store = store_config("dir", tmp_path)
    config = write_config(
        tmp_path,
        {"primary": source_registry},
        source="primary",
        store=store,
        repositories=[repo],
        blobs=True,
    )
    proc = await asyncio.to_thread(
        subprocess.run,
        drd_argv("snapshot", "create", "--json", config=config),
        capture_output=True,
        text=True,
        timeout=120,
        env=drd_env(),
        check=False,
        preexec_fn=_limit_file_size,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    report = json_out(proc)
    assert report["ok"] is False
    assert report["error"].startswith("StorageError: cannot write")
    assert "File too large" in report["error"]
    assert temporaries(tmp_path / "store") == []
    assert not [p for p in files_under(tmp_path / "store") if p.startswith("snapshots/")]
