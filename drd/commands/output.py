"""How commands print: one JSON document with --json, human text otherwise."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def emit(args: argparse.Namespace, document: Any, human: str) -> None:
    """Print *document* as JSON with --json, else *human*; both to stdout."""
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(human if human.endswith("\n") else human + "\n")
    sys.stdout.flush()


def add_late_common(p: argparse.ArgumentParser) -> None:
    """--config/--json/--log-level also after the action; unset ones keep the earlier value."""
    p.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="config file")
    p.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="one JSON document"
    )
    p.add_argument("--log-level", default=argparse.SUPPRESS, help="debug, info, warning, error")
