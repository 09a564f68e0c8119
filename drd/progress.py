"""
Progress of long work for people at a terminal: engines count into a `Tally` (plain
numbers, no output), and `shown` draws it as a live bar with an ETA while the work
runs, only when stdout is a terminal and the command does not print JSON.

tqdm draws the bars, imported only once a terminal is attached: a piped or ``--json``
run, and the daemon, never load it. (Not rich: with rich installed, structlog imports
it, and its console and traceback modules, in every process, 0.1 s of every command's
start-up.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

# How often the bars are brought up to date with the tally.
REFRESH_S = 0.2


@dataclass
class Count:
    """One line of progress: items expected and done, and bytes moved."""

    total: int = 0
    done: int = 0
    bytes: int = 0
    # Reads the bytes moved so far when set (a copier's live counter), else ``bytes``.
    measure: Callable[[], int] | None = field(default=None, repr=False)

    def moved(self) -> int:
        """Bytes moved so far."""
        return self.measure() if self.measure is not None else self.bytes


class Tally:
    """Progress lines by name, in the order they were first named."""

    def __init__(self, *, visible: bool = True) -> None:
        self.counts: dict[str, Count] = {}
        self.visible = visible  # drawn by `shown`; an invisible tally only counts

    @property
    def items_done(self) -> int:
        """Items done on every line together."""
        return sum(count.done for count in self.counts.values())

    def line(self, name: str) -> Count:
        """The line *name*, created empty on first use."""
        return self.counts.setdefault(name, Count())

    def expect(self, name: str, items: int) -> None:
        """*items* more items are to be done on line *name*."""
        self.line(name).total += items

    def done(self, name: str, items: int = 1, nbytes: int = 0) -> None:
        """*items* (and *nbytes*) more are done on line *name*."""
        count = self.line(name)
        count.done += items
        count.bytes += nbytes

    def watch(self, name: str, measure: Callable[[], int]) -> None:
        """Line *name* reads its bytes from *measure*."""
        self.line(name).measure = measure


def for_terminal(args: argparse.Namespace) -> Tally:
    """
    The command's tally: drawn when stdout is a terminal and the command prints text,
    counted always, and kept as ``args.tally`` so that `drd.cli` can say how far an
    interrupted command got.
    """
    tally = Tally(visible=not getattr(args, "json", False) and sys.stdout.isatty())
    args.tally = tally
    return tally


def iec(n: int) -> str:
    """*n* bytes in IEC units, e.g. ``1.5 MiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


# Bars: what, how far, how much, how long. tqdm fills the fields.
BAR_FORMAT = "{desc} {bar:24} {n_fmt}/{total_fmt} items{postfix} [{elapsed}, ETA {remaining}]"


@contextlib.asynccontextmanager
async def shown(tally: Tally | None) -> AsyncIterator[None]:
    """Draw *tally* on stdout while the body runs (not when None or invisible); cleared after."""
    if tally is None or not tally.visible:
        yield
        return
    from tqdm import tqdm

    bars: dict[str, Any] = {}
    screen = shutil.get_terminal_size()

    def sync() -> None:
        for position, (name, count) in enumerate(list(tally.counts.items())):
            bar = bars.get(name)
            if bar is None:
                bar = bars[name] = tqdm(
                    desc=name,
                    total=None,
                    position=position,
                    leave=False,
                    file=sys.stdout,
                    # $COLUMNS/$LINES, else the terminal's size, else 80x24: a terminal
                    # that reports 0x0 (a fresh pty) would get no bar at all.
                    ncols=screen.columns,
                    nrows=screen.lines,
                    bar_format=BAR_FORMAT,
                    mininterval=0,
                )
            bar.total = count.total or None
            done = min(count.done, count.total) if count.total else count.done
            bar.set_postfix_str(iec(count.moved()), refresh=False)
            if done > bar.n:
                bar.update(done - bar.n)  # through update: the rate (and ETA) follow
            bar.refresh()

    async def keep_up() -> None:
        while True:
            sync()
            await asyncio.sleep(REFRESH_S)

    updater = asyncio.create_task(keep_up())
    try:
        yield
    finally:
        updater.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await updater
        sync()
        for bar in bars.values():
            bar.close()
