"""How commands print: one JSON document with --json, human text otherwise; errors too."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from drd.app.outcome import Outcome
from drd.manual import add_common
from drd.reporting import report_error


def emit(args: argparse.Namespace, document: Any, human: str) -> None:
    """Print *document* as JSON with --json, else *human*; both to stdout."""
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(human if human.endswith("\n") else human + "\n")
    sys.stdout.flush()


def fail(
    args: argparse.Namespace, message: str, outcome: Outcome = Outcome.USAGE, *, hint: str = ""
) -> Outcome:
    """
    Report a command's own error as `report_error` does (its kind is *outcome*'s word:
    ``usage``, ``failed``, ...) and return *outcome* for the exit code.
    """
    report_error(args, outcome.value, message, hint=hint)
    return outcome


def add_late_common(p: argparse.ArgumentParser) -> None:
    """--config/--json/--log-level also after an action (`drd.manual.add_common`)."""
    add_common(p)
