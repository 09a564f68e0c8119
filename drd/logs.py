"""structlog configuration: JSON lines off a terminal, console on one; secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Keys whose values are never printed, whatever their content.
_SECRET_KEYS = re.compile(r"(password|secret|token|authorization|credential)", re.IGNORECASE)
_MASK = "********"
# The levels --log-level and the config's log_level accept.
LEVELS = ("debug", "info", "warning", "error", "critical")


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor that masks values under secret-sounding keys."""
    for key in list(event):
        if key != "event" and _SECRET_KEYS.search(key):
            event[key] = _MASK
    return event


def configure(*, json: bool | None = None, level: str = "info") -> None:
    """
    Configure structlog once, at the edge (cli).

    Logs go to stderr, not stdout: stdout carries the one JSON document of ``--json``
    commands, and journald or the container runtime collect both streams anyway.
    """
    as_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
