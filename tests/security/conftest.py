"""The security suite's tally: every hostile input tried is counted and reported."""

from __future__ import annotations

import pytest

# One entry per hostile input a test tried, printed as a count at the end of the run.
HOSTILE_INPUTS: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print how many hostile inputs were tried."""
    if HOSTILE_INPUTS:
        terminalreporter.write_sep("=", "security figures")
        terminalreporter.write_line(f"hostile inputs tried: {len(HOSTILE_INPUTS)}")
