"""
Progress on a terminal: `drd replicate` run with stdout on a pseudo-terminal against
real registries draws a line per target (items, bytes, ETA); piped or with --json it
draws nothing and never imports tqdm.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import subprocess
from pathlib import Path

from drd.progress import Tally, iec
from tests.drill.helpers import push_signed
from tests.drill.test_command import config as drill_config
from tests.images import make_image, push_image
from tests.servers import LocalRegistry
from tests.snapshot.helpers import drd_argv, drd_env, run_drd, store_config
from tests.snapshot.helpers import write_config as snapshot_config
from tests.test_cli import imported_after, write_config

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def on_a_terminal(*args: str) -> tuple[int, str]:
    """Run drd with stdout (and stdin) on a pseudo-terminal; its exit code and screen text."""
    leader, follower = pty.openpty()
    env = {**drd_env(), "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "40"}
    proc = subprocess.Popen(
        drd_argv(*args),
        stdin=follower,
        stdout=follower,
        stderr=subprocess.DEVNULL,
        env=env,
        close_fds=True,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's last writer is gone
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    code = proc.wait(timeout=120)
    return code, ANSI.sub("", b"".join(chunks).decode(errors="replace"))


async def test_replicate_on_a_terminal_shows_items_bytes_and_an_eta(
    tmp_path: Path, source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """Three tags to one target: the line names policy and target, 3/3 items, bytes, ETA."""
    images = [make_image(f"progress-{n}", layer_size=40_000) for n in range(3)]
    for n, image in enumerate(images):
        await push_image(source_registry, repo, image, f"v{n}")
    state = f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
    config = write_config(
        tmp_path / "drd.toml", source_registry.url, target_registry.url, state, repo
    )

    code, screen = await asyncio.to_thread(on_a_terminal, "replicate", "--config", str(config))

    assert code == 0, screen
    # The bar redraws itself in place: one screen line per carriage return.
    drawn = [s.strip() for s in re.split(r"[\r\n]", screen) if s.startswith("p -> dst ")]
    assert drawn, screen
    line = drawn[-1]
    assert "3/3 items" in line, drawn
    moved = sum(len(b.data) for image in images for b in image.blobs)
    assert iec(moved) in line
    assert "ETA" in line
    assert "policy p: 3 copied" in screen


def last_drawn(screen: str, prefix: str) -> str:
    """The last state of the bar whose line starts with *prefix* (it redraws on ``\\r``)."""
    drawn = [s.strip() for s in re.split(r"[\r\n]", screen) if s.startswith(prefix)]
    assert drawn, screen
    return drawn[-1]


async def test_snapshot_create_and_restore_on_a_terminal_show_progress(
    tmp_path: Path, source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """A snapshot counts tags and stored blobs; the restore of it counts tags and bytes."""
    images = [make_image(f"progress-snap-{n}", layer_size=30_000) for n in range(2)]
    for n, image in enumerate(images):
        await push_image(source_registry, repo, image, f"v{n}")
    config = snapshot_config(
        tmp_path,
        {"primary": source_registry, "dr": target_registry},
        source="primary",
        store=store_config("dir", tmp_path),
        repositories=[repo],
        blobs=True,
    )
    blob_bytes = sum(len(b.data) for image in images for b in image.blobs)

    code, screen = await asyncio.to_thread(
        on_a_terminal, "snapshot", "create", "--config", str(config)
    )

    assert code == 0, screen
    assert "2/2 items" in last_drawn(screen, "snapshot primary: tags ")
    blobs = last_drawn(screen, "snapshot primary: blobs ")
    assert f"{2 * len(images[0].blobs)}/{2 * len(images[0].blobs)} items" in blobs
    assert iec(blob_bytes) in blobs

    code, screen = await asyncio.to_thread(
        on_a_terminal,
        "restore",
        "--snapshot",
        "latest",
        "--to",
        "dr",
        "--yes",
        "--allow-unsigned-snapshot",
        "--config",
        str(config),
    )

    assert code == 0, screen
    line = last_drawn(screen, "restore 2")
    assert "-> dr " in line
    assert "2/2 items" in line
    assert iec(blob_bytes) in line


async def test_piped_or_json_output_shows_no_progress(
    tmp_path: Path, source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """Piped stdout has the summary only; --json on a terminal is one JSON document."""
    await push_image(source_registry, repo, make_image("progress-piped"), "v1")
    config = write_config(tmp_path / "drd.toml", source_registry.url, target_registry.url, "", repo)

    piped = await run_drd("replicate", "--dry-run", "--config", str(config))
    assert piped.returncode == 0, piped.stderr
    assert "->" not in piped.stdout
    code, screen = await asyncio.to_thread(
        on_a_terminal, "replicate", "--dry-run", "--json", "--config", str(config)
    )
    assert code == 0, screen
    assert json.loads(screen)["policies"][0]["summary"]["planned"] == 1


def test_tqdm_is_not_imported_without_a_terminal(tmp_path: Path) -> None:
    """A piped pass never loads tqdm (nor rich): start-up stays as fast as before."""
    config = write_config(tmp_path / "drd.toml", "http://127.0.0.1:9", "http://127.0.0.1:9")
    config.write_text(config.read_text() + "[retry]\nattempts = 1\n")
    loaded = imported_after(
        "import json, sys\n"
        "from drd.cli import main\n"
        f"code = main(['replicate', '--config', {str(config)!r}, '--dry-run'])\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('tqdm', 'rich')))))\n"
    )
    assert loaded == []


def test_a_tally_counts_items_and_reads_bytes_live() -> None:
    """Items expected and done add up per line; a watched line reads its bytes each time."""
    tally = Tally()
    moved = [0]
    tally.expect("p -> a", 2)
    tally.watch("p -> a", lambda: moved[0])
    tally.done("p -> a")
    moved[0] = 4096
    tally.done("p -> b", 1, nbytes=10)
    a, b = tally.counts["p -> a"], tally.counts["p -> b"]
    assert (a.total, a.done, a.moved(), b.total, b.done, b.moved()) == (2, 1, 4096, 0, 1, 10)
    assert [iec(n) for n in (10, 4096, 3 * 1024**3)] == ["10 B", "4.0 KiB", "3.0 GiB"]


async def test_a_drill_on_a_terminal_shows_its_restore(
    tmp_path: Path,
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    third_registry: LocalRegistry,
    repo: str,
) -> None:
    """`drd drill` draws its restore into the drill namespace, every tag counted."""
    config = drill_config(tmp_path, source_registry, target_registry, third_registry, repo)
    await push_signed(source_registry, repo, make_image(f"{repo}/drill-progress"), "v1")
    assert (await run_drd("snapshot", "create", "--config", str(config))).returncode == 0

    code, screen = await asyncio.to_thread(on_a_terminal, "drill", "--config", str(config))

    assert code == 0, screen
    line = last_drawn(screen, "restore 2")
    assert "-> drill " in line
    assert re.search(r" 2/2 items, ", line), line  # the release tag and its signature
    assert "PASSED" in screen
