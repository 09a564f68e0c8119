"""How commands print: one JSON document with --json, human text otherwise."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from drd.manual import add_common


def emit(args: argparse.Namespace, document: Any, human: str) -> None:
    """Print *document* as JSON with --json, else *human*; both to stdout."""
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(human if human.endswith("\n") else human + "\n")
    sys.stdout.flush()


def add_late_common(p: argparse.ArgumentParser) -> None:
    """--config/--json/--log-level also after an action (`drd.manual.add_common`)."""
    add_common(p)
