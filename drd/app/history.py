"""
Run history for manual runs: the configured state is opened (a SQLite database is
created when absent) so a `drd replicate` or `drd restore` from the command line is
recorded like the daemon's.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator

from drd.app.state import describe, open_state
from drd.config import Settings
from drd.errors import StateError
from drd.state import StateStore


@contextlib.asynccontextmanager
async def open_history(settings: Settings, what: str) -> AsyncIterator[StateStore | None]:
    """
    The configured state; None (with one line on stderr saying *what* is not recorded)
    when it cannot be opened, so the run goes on.
    """
    state: StateStore | None
    try:
        state = await open_state(settings)
    except (OSError, StateError) as exc:
        sys.stderr.write(f"drd: {what} is not recorded in {describe(settings)}: {exc}\n")
        state = None
    try:
        yield state
    finally:
        if state is not None:
            await state.close()
