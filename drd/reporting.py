"""
How an error reaches whoever ran drd: ``drd: message`` on stderr, or with --json one
JSON document on stdout, where a script reads the command's answer. Used by `drd.cli`
(for what it catches) and by the commands (for what they refuse); imports nothing
heavy, so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import json
import sys


def report_error(
    args: argparse.Namespace | None, kind: str, message: str, *, hint: str = ""
) -> None:
    """
    One error: ``drd: message`` on stderr (and the *hint* on the next line), or with
    --json one document ``{"error": {"kind", "message"[, "hint"]}}`` on stdout, where a
    script reads the command's answer.
    """
    if getattr(args, "json", False):
        error = {"kind": kind, "message": message, **({"hint": hint} if hint else {})}
        sys.stdout.write(json.dumps({"error": error}, indent=2) + "\n")
        sys.stdout.flush()
        return
    sys.stderr.write(f"drd: {message}\n" + (f"  {hint}\n" if hint else ""))
