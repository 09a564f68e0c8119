"""Validation problems as a user reads them: dotted paths, short messages, env hints."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

from drd.config.fields import (
    _Invalid,
)


def _short(text: str) -> str:
    text = text if text.isprintable() else repr(text)
    return text if len(text) <= 64 else text[:61] + "..."


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _join(base: str, relative: str) -> str:
    if not base or not relative:
        return base or relative
    return base + relative if relative.startswith("[") else f"{base}.{relative}"


def _loc_path(loc: Iterable[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "[key]":  # the key itself failed: the path already ends with it
            path = _join(path, _short(part))
    return path


def _env_hint(path: str) -> str:
    """ " (from DRD_X__Y)" when an environment variable set the value at dotted *path*."""
    names = {name.upper() for name in os.environ if name.upper().startswith("DRD_")}
    variable = "DRD"
    for part in filter(None, re.split(r"[.\[\]]+", path)):
        variable += ("_" if variable == "DRD" else "__") + part.upper()
        if variable in names:
            return f" (from {variable})"
    return ""


def _explain(error: Any) -> list[tuple[str, str]]:
    """One pydantic error as (path, message) pairs; an `_Invalid` expands to its problems."""
    path = _loc_path(error["loc"])
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, _Invalid):
        return [(_join(path, rel), msg) for rel, msg in cause.problems]
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return [(path, _lower_first(message))]


def _hinted(errors: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Name the variable behind each error that the environment caused."""
    return [(path, message + _env_hint(path)) for path, message in errors]


def _summary(source: str, errors: list[tuple[str, str]]) -> str:
    count = len(errors)
    return f"{source}: {count} configuration error{'s' if count != 1 else ''}"
