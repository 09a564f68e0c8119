"""
Run history for manual runs: the state database is opened (created when absent) so a
`drd replicate` or `drd restore` from the command line is recorded like the daemon's.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from drd.errors import StateError
from drd.state import State


@contextlib.asynccontextmanager
async def open_history(state_dir: Path, what: str) -> AsyncIterator[State | None]:
    """
    The state database in *state_dir*, created when absent; None (with one line on
    stderr saying *what* is not recorded) when it cannot be opened, so the run goes on.
    """
    state: State | None
    try:
        state = await State.open(state_dir)
    except (OSError, StateError) as exc:
        sys.stderr.write(f"drd: {what} is not recorded in {state_dir}: {exc}\n")
        state = None
    try:
        yield state
    finally:
        if state is not None:
            await state.close()
