"""
How a command or a run ended, as one category: `drd.cli` maps it to an exit code
(the only place that knows the numbers), the state database records it as a word.
"""

from __future__ import annotations

import enum

from drd.errors import TransientError


class Outcome(enum.Enum):
    """What a command achieved; `drd.cli.EXIT_CODES` gives each its exit code."""

    OK = "ok"  # everything asked for was done (or, dry, would be)
    REJECTED = "rejected"  # done, but the trust policy refused some items (none failed)
    FAILED = "failed"  # something failed or did not verify
    USAGE = "usage"  # the request cannot be carried out as asked (or was not confirmed)
    UNAVAILABLE = "unavailable"  # a registry or the store could not be reached after retries
    BUSY = "busy"  # a cluster-wide singleton (failover) is running elsewhere: try again later


def of_error(exc: BaseException | None) -> Outcome:
    """``UNAVAILABLE`` for an outage (a `TransientError`), else ``FAILED``."""
    return Outcome.UNAVAILABLE if isinstance(exc, TransientError) else Outcome.FAILED


def run_word(ok: bool, error: bool) -> str:
    """A run's outcome as the state database and the metrics record it."""
    if ok:
        return "ok"
    return "error" if error else "failed"
